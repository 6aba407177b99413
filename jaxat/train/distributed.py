"""Multi-host set-up: which JAX process this is and how to reach the coordinator.

`resolve_setup` turns flags (`--coordinator_address`, `--num_processes`, `--process_id`) or
the environment (SLURM's `SLURM_*` variables) into a `DistributedSetup`; TPU VM pods need
neither, `jax.distributed.initialize()` detects them (`auto=True`). `initialize` must run
before anything touches a device. See docs/scaling.md#multi-host-set-up.

Pure functions of their inputs (no JAX import at module level), so that bad flags are
reported as one line (UsageError) before JAX starts.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

from jaxat.errors import UsageError


class DistributedFlags(NamedTuple):
  """What the user typed; empty/negative values mean "not given"."""
  coordinator_address: str = ""
  num_processes: int = 0
  process_id: int = -1
  auto: bool = False  # TPU VM pod: let jax.distributed.initialize() detect everything
  heartbeat_timeout_seconds: int = 100  # JAX's default


class DistributedSetup(NamedTuple):
  """Arguments of jax.distributed.initialize; `None` fields are left to JAX's detection."""
  coordinator_address: str | None
  num_processes: int | None
  process_id: int | None
  source: str  # 'flags', 'slurm', 'auto' or 'single' (one process, nothing to initialise)
  # A process silent this long is taken for dead and JAX's coordination service stops the
  # others (docs/scaling.md#multi-host-training).
  heartbeat_timeout_seconds: int = 100


SLURM_COORDINATOR_PORT = 12345


def _slurm_first_host(nodelist: str) -> str:
  """First host of a SLURM nodelist: 'gpu[03-05,07],cpu1' -> 'gpu03', 'node7' -> 'node7'."""
  head = nodelist.split(",")[0] if "[" not in nodelist.split(",")[0] else nodelist
  if "[" not in head:
    return head
  prefix, _, rest = head.partition("[")
  first = rest.split(",")[0].split("-")[0].rstrip("]")
  return prefix + first


def resolve_setup(flags: DistributedFlags, environ: Mapping[str, str]) -> DistributedSetup:
  """Flags win; otherwise SLURM (one task per process, SLURM_NTASKS > 1); otherwise one process.

  Raises UsageError (one line, naming the flag and value) on an incomplete or inconsistent set.
  """
  if flags.heartbeat_timeout_seconds <= 0:
    raise UsageError(f"--heartbeat_timeout_seconds={flags.heartbeat_timeout_seconds}: expected a "
                     "positive number of seconds (JAX's default is 100)")
  return _resolve(flags, environ)._replace(heartbeat_timeout_seconds=flags.heartbeat_timeout_seconds)


def _resolve(flags: DistributedFlags, environ: Mapping[str, str]) -> DistributedSetup:
  given = [bool(flags.coordinator_address), flags.num_processes > 0, flags.process_id >= 0]
  if flags.auto:
    if any(given):
      raise UsageError("--distributed_auto=True detects the TPU pod itself; drop --coordinator_address, "
                       "--num_processes and --process_id")
    return DistributedSetup(None, None, None, "auto")
  if any(given):
    if not all(given):
      raise UsageError("multi-host flags must be given together: --coordinator_address=HOST:PORT, "
                       f"--num_processes=N, --process_id=I (got coordinator_address="
                       f"{flags.coordinator_address!r}, num_processes={flags.num_processes}, "
                       f"process_id={flags.process_id})")
    host, _, port = flags.coordinator_address.rpartition(":")
    if not host or not port.isdigit():
      raise UsageError(f"--coordinator_address={flags.coordinator_address!r}: expected HOST:PORT, "
                       "e.g. 10.0.0.2:12345")
    if flags.process_id >= flags.num_processes:
      raise UsageError(f"--process_id={flags.process_id} must be in [0, {flags.num_processes - 1}] "
                       f"for --num_processes={flags.num_processes}")
    return DistributedSetup(flags.coordinator_address, flags.num_processes, flags.process_id, "flags")
  ntasks = int(environ.get("SLURM_NTASKS", "1") or 1)
  if ntasks > 1 and "SLURM_PROCID" in environ:
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST", "")
    if not nodelist:
      raise UsageError("SLURM_NTASKS > 1 but neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST is "
                       "set; pass --coordinator_address explicitly")
    port = environ.get("JAXAT_COORDINATOR_PORT", str(SLURM_COORDINATOR_PORT))
    return DistributedSetup(f"{_slurm_first_host(nodelist)}:{port}", ntasks,
                            int(environ["SLURM_PROCID"]), "slurm")
  return DistributedSetup(None, None, None, "single")
