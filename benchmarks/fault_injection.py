"""Randomised SIGKILL fault injection: a killed and rerun training ends bit-identical.

  python benchmarks/fault_injection.py [--trials=20] [--seed=0] [--epochs=3] [--max_delay=0.3]
      [--output=benchmarks/results/fault_injection.json]

The run is configs/pgd_at.py:digits,smoke for --epochs epochs (checkpoint.keep 2). It is
trained once without interruption (the reference). Each trial then starts the same run in
a fresh workdir in a child process, SIGKILLs it at a random moment, reruns the same run
to completion in a fresh process and checks:
- bit-identical: results.json's `fingerprint` equals the reference's;
- clean metrics: metrics.jsonl has exactly one line per epoch, every line parses, and each
  line's `fingerprint` equals the reference's of that epoch.
A kill inside a write is what breaks run directories, and writes are short, so the child
is slowed where it writes: it prints `FAULT-POINT <event>` and then sleeps a random
[0, max_delay] s at each event (`metrics_line`: an epoch line was appended, its checkpoint
not yet saved; `checkpoint_start`: a `last` checkpoint write begins; `checkpoint_rename`:
orbax has written the temporary directory and is about to rename it; `checkpoint_done`).
Half of the trials kill at the k-th occurrence of a random event plus a random [0,
max_delay] s (so inside or right after the sleep), the others at a uniform random time
after the first event, up to the reference child's end (a trial whose child finished
first is marked `finished_first`). The delays change no number.

tests/test_crash_safety.py runs three trials of the same harness (`start_child`,
`kill_child`, `check_run`), rerunning in its own process. Writes benchmarks/results/fault_injection.json with the
machine described: per trial the kill plan, the kill time after the start, what the
killed process left (checkpoint steps, unfinished temporary directories, epoch lines) and
the verdicts.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import random
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
EVENTS = ("metrics_line", "checkpoint_start", "checkpoint_rename", "checkpoint_done")
MARKER = "FAULT-POINT "


def build_config(spec: dict):
  """configs/<spec['config']>.py:get_config(spec['arg']) with spec['overrides'] (dotted)."""
  path = os.path.join(REPO_ROOT, "configs", f"{spec['config']}.py")
  module_spec = importlib.util.spec_from_file_location(f"config_{spec['config']}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(spec["arg"])
  config.update_from_flattened_dict(dict(spec.get("overrides", {})))
  return config


def default_spec(epochs: int) -> dict:
  return {"config": "pgd_at", "arg": "digits,smoke",
          "overrides": {"num_epochs": epochs, "log.progress": "none", "checkpoint.keep": 2}}


def _install_fault_points(seed: int, max_delay: float) -> None:
  """Makes the writes of this process announce themselves and linger (child side)."""
  import asyncio
  from orbax.checkpoint._src.path import atomicity
  from jaxat.train import checkpoint, reporting
  rng = random.Random(seed)

  def point(event):
    print(MARKER + event, file=sys.stderr, flush=True)
    return rng.uniform(0.0, max_delay)

  write = reporting.MetricsWriter.write

  def write_and_linger(self, record):
    write(self, record)
    time.sleep(point("metrics_line"))

  save_last = checkpoint.Checkpointer.save_last

  def save_last_and_linger(self, *args, **kwargs):
    time.sleep(point("checkpoint_start"))
    save_last(self, *args, **kwargs)
    time.sleep(point("checkpoint_done"))

  finalize = atomicity.AtomicRenameTemporaryPath.finalize

  async def finalize_and_linger(self, *args, **kwargs):
    # The step directory of a `last` checkpoint (its items are finalised inside it first).
    if os.path.basename(os.path.dirname(str(self.get()))) == "last":
      await asyncio.sleep(point("checkpoint_rename"))
    return await finalize(self, *args, **kwargs)

  reporting.MetricsWriter.write = write_and_linger
  checkpoint.Checkpointer.save_last = save_last_and_linger
  atomicity.AtomicRenameTemporaryPath.finalize = finalize_and_linger


def child_main(spec: dict, workdir: str, seed: int, max_delay: float) -> None:
  """The child: the run of `spec` in `workdir`, with fault points when max_delay > 0."""
  sys.path.insert(0, REPO_ROOT)
  if max_delay > 0:
    _install_fault_points(seed, max_delay)
  from jaxat.train.train import train_and_evaluate
  results = train_and_evaluate(build_config(spec), workdir)
  print(json.dumps({"fingerprint": results["fingerprint"]}), flush=True)


def child_env() -> dict:
  env = dict(os.environ)
  env.setdefault("JAX_PLATFORMS", "cpu")
  env.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
  env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  return env


def start_child(spec: dict, workdir: str, seed: int, max_delay: float) -> subprocess.Popen:
  command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec),
             f"--workdir={workdir}", f"--seed={seed}", f"--max_delay={max_delay}"]
  return subprocess.Popen(command, cwd=REPO_ROOT, env=child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def run_child(spec: dict, workdir: str, seed: int = 0, max_delay: float = 0.0) -> dict:
  """Runs the child to completion: {'fingerprint', 'seconds', 'events': [(event, t)]}."""
  start = time.monotonic()
  proc = start_child(spec, workdir, seed, max_delay)
  events = []
  for line in proc.stderr:
    if line.startswith(MARKER):
      events.append((line[len(MARKER):].strip(), time.monotonic() - start))
  stdout, stderr = proc.communicate()
  if proc.returncode != 0:
    raise RuntimeError(f"the run in {workdir} failed ({proc.returncode}):\n{stderr[-3000:]}")
  return {"fingerprint": json.loads(stdout.strip().splitlines()[-1])["fingerprint"],
          "seconds": time.monotonic() - start, "events": events}


def kill_child(proc: subprocess.Popen, plan: dict) -> dict:
  """SIGKILLs `proc` as `plan` says ({'kind': 'event', 'event', 'occurrence', 'extra'} or
  {'kind': 'time', 'at'}, seconds after the start or, with 'since_first_event', after the
  first fault point); returns {'killed_at', 'finished_first', 'events_seen'}."""
  start = time.monotonic()
  seen: dict[str, int] = {}
  deadline = None
  if plan["kind"] == "time" and not plan.get("since_first_event"):
    deadline = start + plan["at"]
  killed = False
  fd = proc.stderr.fileno()
  buffer = b""
  while proc.poll() is None:
    if deadline is not None and time.monotonic() >= deadline:
      break
    if not select.select([fd], [], [], 0.002)[0]:
      continue
    chunk = os.read(fd, 1 << 16)
    if not chunk:  # stderr closed: the child is exiting by itself.
      proc.wait()
      break
    buffer += chunk
    *lines, buffer = buffer.split(b"\n")
    events = [line.decode()[len(MARKER):].strip() for line in lines
              if line.startswith(MARKER.encode())]
    if events and plan["kind"] == "time" and deadline is None:
      deadline = time.monotonic() + plan["at"]
    hit = False
    for event in events:
      seen[event] = seen.get(event, 0) + 1
      hit = hit or (plan["kind"] == "event" and event == plan["event"]
                    and seen[event] == plan["occurrence"])
    if hit:
      time.sleep(plan["extra"])
      break
  if proc.poll() is None:
    proc.send_signal(signal.SIGKILL)
    killed = True
  killed_at = time.monotonic() - start
  proc.wait()
  proc.stdout.close()
  proc.stderr.close()
  return {"killed_at": round(killed_at, 3), "finished_first": not killed, "events_seen": seen}


def describe_leftovers(workdir: str, steps_per_epoch: int) -> dict:
  """What a killed run left: finished `last` steps, unfinished temporary directories, the
  lines of metrics.jsonl and how many of them are ahead of the newest checkpoint (the
  hazard of a kill between an epoch's line and its checkpoint)."""
  last = os.path.join(workdir, "checkpoints", "last")
  names = sorted(os.listdir(last)) if os.path.isdir(last) else []
  steps = sorted(int(n) for n in names if n.isdigit())
  lines = 0
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      lines = sum(1 for line in f if line.strip())
  checkpointed = max(steps) // steps_per_epoch if steps else 0
  return {"steps": steps, "tmp_dirs": [n for n in names if "tmp" in n], "metrics_lines": lines,
          "metrics_lines_ahead": lines - checkpointed}


def check_run(workdir: str, reference: dict, fingerprint: str) -> dict:
  """The verdicts of a finished run against the reference {'fingerprint', 'epoch_fingerprints'}."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [line for line in f if line.strip()]
  try:
    records = [json.loads(line) for line in lines]
  except ValueError:
    records = None
  epochs = None if records is None else [r.get("epoch") for r in records]
  expected = list(range(1, len(reference["epoch_fingerprints"]) + 1))
  return {"bit_identical": fingerprint == reference["fingerprint"],
          "metrics_clean": epochs == expected,
          "epoch_fingerprints_match": (records is not None and
                                       [r.get("fingerprint") for r in records]
                                       == reference["epoch_fingerprints"]),
          "metrics_epochs": epochs}


def read_reference(workdir: str, fingerprint: str) -> dict:
  """{'fingerprint', 'epoch_fingerprints', 'steps_per_epoch'} of an uninterrupted run."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return {"fingerprint": fingerprint, "epoch_fingerprints": [r["fingerprint"] for r in records],
          "steps_per_epoch": records[0]["step"]}


def random_plan(rng: random.Random, trial: int, reference_run: dict, max_delay: float) -> dict:
  """Even trials: an event kill (random event, occurrence and extra delay); odd trials: a
  uniform time after the first event (the end of epoch 1's training) up to the reference
  child's end. Timed from the first event rather than the start, whose import and
  compilation times vary by seconds on a shared machine."""
  if trial % 2 == 0:
    event = rng.choice(EVENTS)
    count = sum(1 for name, _ in reference_run["events"] if name == event)
    return {"kind": "event", "event": event, "occurrence": rng.randint(1, max(count, 1)),
            "extra": round(rng.uniform(0.0, max_delay), 3)}
  first = reference_run["events"][0][1] if reference_run["events"] else 0.0
  return {"kind": "time", "at": round(rng.uniform(0.0, reference_run["seconds"] - first), 3),
          "since_first_event": True}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--trials", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--max_delay", type=float, default=0.3)
  parser.add_argument("--output", default=os.path.join(HERE, "results", "fault_injection.json"))
  parser.add_argument("--keep_workdirs", action="store_true",
                      help="keep the trial workdirs (under a printed temporary folder)")
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)  # JSON spec: child mode
  parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child_main(json.loads(args.child), args.workdir, args.seed, args.max_delay)
    return

  sys.path.insert(0, HERE)
  from machine import describe_machine
  spec = default_spec(args.epochs)
  rng = random.Random(args.seed)
  root = tempfile.mkdtemp(prefix="jaxat_faults_")
  reference_dir = os.path.join(root, "reference")
  # The reference child lingers like the killed ones, so its events time the random kills.
  reference_run = run_child(spec, reference_dir, seed=args.seed, max_delay=args.max_delay)
  reference = read_reference(reference_dir, reference_run["fingerprint"])
  print(f"reference: fingerprint {reference['fingerprint']}, {reference_run['seconds']:.1f}s "
        f"with delays, {len(reference_run['events'])} fault points", flush=True)
  trials = []
  for trial in range(args.trials):
    workdir = os.path.join(root, f"trial{trial}")
    plan = random_plan(rng, trial, reference_run, args.max_delay)
    child_seed = rng.randrange(2**31)
    kill = kill_child(start_child(spec, workdir, child_seed, args.max_delay), plan)
    leftovers = describe_leftovers(workdir, reference["steps_per_epoch"])
    rerun_start = time.monotonic()
    try:
      rerun = run_child(spec, workdir)
      verdict = check_run(workdir, reference, rerun["fingerprint"])
      error = None
    except RuntimeError as failure:
      verdict, error = {"bit_identical": False, "metrics_clean": False,
                        "epoch_fingerprints_match": False}, str(failure)[-2000:]
    record = {"trial": trial, "child_seed": child_seed, "plan": plan, **kill,
              "left_by_kill": leftovers, "rerun_seconds": round(time.monotonic() - rerun_start, 1),
              **verdict, "rerun_error": error}
    trials.append(record)
    print(f"trial {trial}: {plan} killed at {kill['killed_at']}s "
          f"{'(had finished)' if kill['finished_first'] else ''} left {leftovers} -> "
          f"bit_identical={verdict['bit_identical']} metrics_clean={verdict['metrics_clean']}",
          flush=True)
  summary = {
      "trials": len(trials),
      "killed": sum(not t["finished_first"] for t in trials),
      "bit_identical": sum(t["bit_identical"] for t in trials),
      "metrics_clean": sum(t["metrics_clean"] and t["epoch_fingerprints_match"] for t in trials),
      "killed_with_metrics_ahead_of_checkpoint": sum(
          t["left_by_kill"]["metrics_lines_ahead"] > 0 for t in trials),
      "killed_with_unfinished_tmp_dir": sum(bool(t["left_by_kill"]["tmp_dirs"]) for t in trials),
      "killed_before_first_checkpoint": sum(
          not t["finished_first"] and not t["left_by_kill"]["steps"] for t in trials),
  }
  payload = {"benchmark": "fault_injection",
             "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "command": shlex.join(["python", "benchmarks/fault_injection.py", *sys.argv[1:]]),
             "machine": describe_machine(), "spec": spec, "max_delay": args.max_delay,
             "reference": {**reference, "seconds_with_delays": round(reference_run["seconds"], 1)},
             "summary": summary, "results": trials}
  os.makedirs(os.path.dirname(args.output), exist_ok=True)
  with open(args.output, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"summary: {summary}\nwritten to {args.output}")
  if args.keep_workdirs:
    print(f"trial workdirs kept in {root}")
  else:
    shutil.rmtree(root)


if __name__ == "__main__":
  main()
