"""Multi-process (multi-host) data-parallel training on one machine: N local JAX processes
(loopback coordinator, gloo CPU collectives) each driving its own CPU devices, as
`python -m jaxat.main --coordinator_address=... --num_processes=N --process_id=I` would on
N hosts (docs/scaling.md#multi-host-training).

- 2 processes x 2 devices train bit for bit what 1 process x 4 devices trains when that one
  process uses the same (gloo) collectives, i.e. is started as a 1-process distributed run
  (`--num_processes=1`): the collectives add the four partial sums in one order whatever
  the process layout. (Plain in-process collectives add them in another order: float32
  reassociation, docs/scaling.md#numerics.) The uninterrupted 2-process run reads its
  input on the hosts (dataset.placement='host', each process its own rows); the SIGTERM
  test's runs place the data set on the devices; all three end with the same bits, so
  one run of processes serves both placements.
- Process 0 alone writes the run's files, each record once.
- SIGTERM to one of the 2 processes: both checkpoint the same step and exit with the
  preemption status; the rerun resumes and ends bit-identical to the uninterrupted run.
- Bad input is one line with status 2 on every process (2 x 2 devices), before anything is
  written, also when one process meets it seconds after the other.
- An error on one process alone ends that process at once (status 1, its traceback) and the
  other within the heartbeat timeout, instead of leaving it waiting in a collective.
- The evaluation suite's items of eval.final_attacks (here cw20) run on every process, each
  attacking its own share of the test set, and report what one process reports.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tiny_runs import REPO_ROOT, UIAT_MOMENTUM_ARGS

pytestmark = pytest.mark.slow

# UIAT with momentum from epoch 1 of 2: a per-example buffer (sharded by example over the
# global mesh) lives through the run and across the resume. 128 examples / 16 = 8 steps an epoch.
# The final evaluation adds CW-20 from the evaluation suite; eval batches of 8 make the 32 test
# examples 4 batches, so each of 2 processes attacks a share of 2 batches.
SUITE_ARGS = {"--config.eval_batch_size": "8", "--config.eval.final_attacks": "pgd20,cw20"}
ARGS = [a for a in UIAT_MOMENTUM_ARGS if a.split("=")[0] not in SUITE_ARGS] + [
    f"{flag}={value}" for flag, value in SUITE_ARGS.items()]
TOTAL_STEPS = 2 * 128 // 16
PREEMPTED = 143
WRITTEN_BY_PROCESS_0 = ("config.json", "environment.json", "metrics.jsonl", "results.json")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  # The session's compilation cache (tests/conftest.py) comes with os.environ: the
  # interrupted and resumed runs load the executables the straight runs compiled.
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


class _Process:
  """A `python <args>` child whose stdout and stderr go to files (pipes left unread could
  fill up and stall a process in the middle of a collective)."""

  def __init__(self, args: list[str], devices: int, logs: str):
    self.out_path, self.err_path = logs + ".out", logs + ".err"
    with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
      self.popen = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=_env(devices),
                                    stdout=out, stderr=err, text=True)

  def stderr_so_far(self) -> str:
    with open(self.err_path) as f:
      return f.read()

  def finish(self) -> tuple[int, str, str]:
    returncode = self.popen.wait(timeout=300)
    with open(self.out_path) as out, open(self.err_path) as err:
      return returncode, out.read(), err.read()


def _start(args: list[str], devices: int, logs) -> _Process:
  return _Process(args, devices, str(logs))


def _start_processes(workdir, devices: int, num_processes: int = 2, extra=()) -> list[_Process]:
  port = _free_port()
  return [_start([*ARGS, *extra, f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}",
                  f"--num_processes={num_processes}", f"--process_id={i}"], devices,
                 f"{workdir}-p{i}") for i in range(num_processes)]


def _finish(procs: list[_Process]) -> list[tuple[int, str, str]]:
  return [p.finish() for p in procs]


def _wait_for(proc: _Process, text: str, timeout: float = 300) -> None:
  deadline = time.monotonic() + timeout
  while text not in proc.stderr_so_far():
    assert proc.popen.poll() is None and time.monotonic() < deadline, proc.stderr_so_far()[-3000:]
    time.sleep(0.2)


def _read_jsonl(path) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]


def _read_json(path) -> dict:
  with open(path) as f:
    return json.load(f)


def _without_timings(records):
  return [{k: v for k, v in r.items() if k not in ("images_per_sec", "train_seconds")} for r in records]


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory):
  """(workdir of 1 process x 4 devices, workdir of 2 processes x 2 devices, their outcomes),
  both with gloo collectives; the 2-process run reads its input on the hosts
  (dataset.placement='host'). The SIGTERM test compares its resumed run, whose data set is
  placed on the devices, with them too."""
  root = tmp_path_factory.mktemp("straight")
  single, multi = root / "one_process", root / "two_processes"
  reference = _finish(_start_processes(single, devices=4, num_processes=1))
  outcomes = _finish(_start_processes(multi, devices=2, extra=["--config.dataset.placement=host"]))
  for returncode, _, stderr in reference + outcomes:
    assert returncode == 0, stderr[-3000:]
  return single, multi, outcomes


def test_two_processes_train_what_one_process_trains_and_process_0_alone_writes(straight_runs):
  single, multi, outcomes = straight_runs
  a, b = _read_json(single / "results.json"), _read_json(multi / "results.json")
  assert b["fingerprint"] == a["fingerprint"]
  assert (b["clean_acc"], b["pgd20_acc"]) == (a["clean_acc"], a["pgd20_acc"])
  records = _read_jsonl(multi / "metrics.jsonl")
  assert [r["epoch"] for r in records] == [1, 2]  # one line per epoch, none twice
  assert _without_timings(records) == _without_timings(_read_jsonl(single / "metrics.jsonl"))
  # Process 0 reports; process 1 prints no summary (gloo's own connection lines aside).
  assert "results (" in outcomes[0][1] and "results (" not in outcomes[1][1]
  for name in WRITTEN_BY_PROCESS_0:
    assert (multi / name).is_file(), name
  sessions = _read_json(multi / "environment.json")["sessions"]
  assert len(sessions) == 1 and sessions[0]["process_count"] == 2
  assert len([f for f in os.listdir(multi) if f.startswith("events.out.tfevents")]) == 1
  assert not [f for f in os.listdir(multi) if f.endswith(".tmp")]


def test_suite_attacks_run_on_every_process_and_report_what_one_process_reports(straight_runs):
  """eval.final_attacks=pgd20,cw20 (docs/scaling.md#multi-host-training): each process
  attacks its own share of the test set with the per-example draws of the whole set, so the
  2-process run's CW-20 accuracy (and every per-example result) is the 1-process run's."""
  single, multi, _ = straight_runs
  a, b = _read_json(single / "results.json"), _read_json(multi / "results.json")
  assert b["cw20_acc"] == a["cw20_acc"]
  assert b["last"] == a["last"]
  assert set(b["last"]["raw"]) == {"clean_acc", "pgd20_acc", "cw20_acc"}
  assert 0 <= b["cw20_acc"] <= b["clean_acc"]


def test_sigterm_to_one_process_stops_both_at_one_step_and_the_rerun_is_bit_identical(
    tmp_path, straight_runs):
  _, straight, _ = straight_runs
  interrupted = tmp_path / "interrupted"
  procs = _start_processes(interrupted, devices=2)
  # Process 0 says when the step has compiled; the signal goes to process 1 only.
  _wait_for(procs[0], "compiled the training step")
  procs[1].popen.send_signal(signal.SIGTERM)
  outcomes = _finish(procs)
  for returncode, _, stderr in outcomes:
    assert returncode == PREEMPTED, stderr[-3000:]
  saved = [int(s) for s in os.listdir(interrupted / "checkpoints" / "last")]
  assert len(saved) == 1 and 0 < saved[0] < TOTAL_STEPS, saved
  # Both processes saved that same step (each reports it; process 1 logs warnings only).
  assert f"saved a checkpoint at step {saved[0]}" in outcomes[1][2]
  assert not (interrupted / "results.json").exists()

  resumed = _finish(_start_processes(interrupted, devices=2))
  for returncode, _, stderr in resumed:
    assert returncode == 0, stderr[-3000:]
  assert f"resumed from step {saved[0]}" in resumed[0][2]

  a, b = _read_json(interrupted / "results.json"), _read_json(straight / "results.json")
  assert a["fingerprint"] == b["fingerprint"]
  assert (a["clean_acc"], a["pgd20_acc"]) == (b["clean_acc"], b["pgd20_acc"])
  records = _read_jsonl(interrupted / "metrics.jsonl")
  assert [r["epoch"] for r in records] == [1, 2]
  assert _without_timings(records) == _without_timings(_read_jsonl(straight / "metrics.jsonl"))


# Process 1 reaches the bad input 5 s after process 0, as a slower host would. (The sleep
# follows the first question to the backend, whose start-up waits for every process.)
_SLOW_PROCESS = """
import time
from jaxat.train import multihost
is_main_process = multihost.is_main_process
def slow_is_main_process():
  answer = is_main_process()
  time.sleep(5)
  return answer
multihost.is_main_process = slow_is_main_process
from jaxat import main
main.run()
"""


def test_bad_input_is_one_line_on_every_process_before_writing(tmp_path):
  workdir, port = tmp_path / "bad", _free_port()
  # 2 processes x 2 devices: batch_size 6 does not divide over the 4 devices of the mesh.
  common = ["--config.batch_size=6", f"--workdir={workdir}",
            f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
  # Process 0 meets the error first; were it to exit at once, it would take the coordination
  # service with it and JAX would abort process 1 (status -6) before its one line.
  procs = [_start([*ARGS, *common, "--process_id=0"], 2, f"{workdir}-p0"),
           _start(["-c", _SLOW_PROCESS, *ARGS[2:], *common, "--process_id=1"], 2, f"{workdir}-p1")]
  for index, (returncode, _, stderr) in enumerate(_finish(procs)):
    assert returncode == 2, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(
        f"error: process {index} of 2: batch_size=6 is not divisible by the device count 4"), stderr
    assert "Traceback" not in stderr and "Fatal" not in stderr, stderr[-3000:]
  assert not workdir.exists()


def test_host_placement_each_process_reads_its_own_rows(straight_runs):
  """dataset.placement='host' (docs/scaling.md#host-streamed-input-and-extra-data): each of
  the 2 processes of the uninterrupted run gathers the half of every global batch that
  lands on its devices (counted by the batcher, reported in results.json); that run equals
  the device-placement run of 1 process x 4 devices bit for bit (the first test)."""
  single, multi, _ = straight_runs
  a = _read_json(multi / "results.json")
  half = 16 // 2  # batch_size 16 over 4 devices, two per process
  assert a["host_input"] == {"rows_read_by_process": [half * TOTAL_STEPS] * 2,
                             "steps": TOTAL_STEPS}
  assert "host_input" not in _read_json(single / "results.json")


# Process 1 of a 2-process run, failing alone at step 5 of 16: an error the other process
# cannot see (the test's stand-in for a bad disk or an out-of-memory error on one host).
_FAILING_PROCESS = """
import sys
from jaxat.train import multihost
agree = multihost.StopAgreement.stop_now
def failing(self, step, epoch_end):
  if step == 5:
    raise RuntimeError("injected failure on this process only")
  return agree(self, step, epoch_end)
multihost.StopAgreement.stop_now = failing
from jaxat import main
main.run()
"""


def test_a_failure_on_one_process_ends_every_process_instead_of_hanging(tmp_path):
  workdir, port = tmp_path / "failing", _free_port()
  common = [f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2", "--heartbeat_timeout_seconds=10"]
  healthy = _start([*ARGS, *common, "--process_id=0"], 2, f"{workdir}-p0")
  failing = _start(["-c", _FAILING_PROCESS, *ARGS[2:], *common, "--process_id=1"], 2,
                   f"{workdir}-p1")
  returncode, _, stderr = failing.finish()
  assert returncode == 1, stderr[-3000:]
  assert "error: process 1 of 2 failed" in stderr and "injected failure" in stderr
  failed_at = time.monotonic()
  # Without the immediate exit, process 1 would wait at jax.distributed.shutdown's barrier
  # and process 0 in the step's collective, both for minutes. Now process 0 learns of it
  # either from the collective (gloo sees the connection closed: process 0 then fails too,
  # status 1) or from JAX's coordination service once process 1's heartbeat has been
  # missing for 10 s (an abort: what NCCL collectives on GPUs rely on).
  returncode, _, stderr = healthy.finish()
  assert returncode != 0 and time.monotonic() - failed_at < 90, stderr[-3000:]
  assert ("error: process 0 of 2 failed" in stderr or "another task died" in stderr), stderr[-3000:]
  assert not (workdir / "results.json").exists()
