"""Multi-host set-up: flags and SLURM variables -> jax.distributed.initialize arguments."""

import pytest

from jaxat.errors import UsageError
from jaxat.train.distributed import DistributedFlags, DistributedSetup, resolve_setup


def test_one_process_without_flags_or_slurm():
  assert resolve_setup(DistributedFlags(), {}).source == "single"
  # A one-task SLURM job is one process too.
  assert resolve_setup(DistributedFlags(), {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}).source == "single"


def test_explicit_flags():
  setup = resolve_setup(DistributedFlags("127.0.0.1:4321", 2, 1), {"SLURM_NTASKS": "8"})
  assert setup == DistributedSetup("127.0.0.1:4321", 2, 1, "flags")


def test_slurm_environment_first_node_is_coordinator():
  env = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_JOB_NODELIST": "gpu[03-04,07],cpu1"}
  assert resolve_setup(DistributedFlags(), env) == DistributedSetup("gpu03:12345", 8, 5, "slurm")
  env = {"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_STEP_NODELIST": "node7,node9",
         "JAXAT_COORDINATOR_PORT": "999"}
  assert resolve_setup(DistributedFlags(), env) == DistributedSetup("node7:999", 2, 0, "slurm")


def test_heartbeat_timeout_reaches_every_kind_of_setup():
  assert resolve_setup(DistributedFlags(heartbeat_timeout_seconds=7), {}).heartbeat_timeout_seconds == 7
  setup = resolve_setup(DistributedFlags("127.0.0.1:4321", 2, 1, heartbeat_timeout_seconds=30), {})
  assert setup == DistributedSetup("127.0.0.1:4321", 2, 1, "flags", 30)
  assert resolve_setup(DistributedFlags(auto=True), {}).heartbeat_timeout_seconds == 100


def test_tpu_pod_auto_detection():
  assert resolve_setup(DistributedFlags(auto=True), {}).source == "auto"


@pytest.mark.parametrize("flags, needle", [
    (DistributedFlags("127.0.0.1:1", 2), "--process_id"),
    (DistributedFlags("127.0.0.1", 2, 0), "HOST:PORT"),
    (DistributedFlags("127.0.0.1:1", 2, 2), "--process_id=2 must be in [0, 1]"),
    (DistributedFlags("127.0.0.1:1", 2, 0, auto=True), "--distributed_auto"),
    (DistributedFlags("127.0.0.1:1", 2, 0, heartbeat_timeout_seconds=0),
     "--heartbeat_timeout_seconds=0"),
])
def test_bad_flags_are_one_line(flags, needle):
  with pytest.raises(UsageError) as error:
    resolve_setup(flags, {})
  assert needle in str(error.value) and "\n" not in str(error.value)


def test_cli_reports_incomplete_multi_host_flags_before_jax(tmp_path):
  """Bad multi-host flags are one line with status 2, before anything is written. (Complete
  sets run: tests/test_multihost.py.)"""
  from tiny_runs import run_cli
  workdir = tmp_path / "run"
  base = ["-m", "jaxat.main", "--config=configs/uiat.py:smoke", f"--workdir={workdir}"]
  partial = run_cli(base + ["--coordinator_address=127.0.0.1:1", "--num_processes=2"])
  assert partial.returncode == 2 and "--process_id=I" in partial.stderr
  assert len(partial.stderr.strip().splitlines()) == 1
  assert not workdir.exists()
