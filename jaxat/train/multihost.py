"""Several JAX processes training one model: start-up, who writes, and agreeing to stop.

Every process runs the same program on the same data and holds the same replicated
values; only process 0 writes the run's files (`is_main_process`). A SIGTERM reaches one
process (or some), so before acting on it the processes agree (`StopAgreement`): all of
them checkpoint the same step and exit, none is left waiting in a collective.
The evaluation suite's attacks run per process on a share of the test set (`batch_shares`,
`local_copy`) and the per-example results are joined on every process (`gather_shares`).
See docs/scaling.md#multi-host-training.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxat.errors import UsageError
from jaxat.train.distributed import DistributedSetup

# How often (in steps) the processes compare their stop flags: each comparison is a host
# round-trip that waits for the step before it, so it is not paid every step.
STOP_CHECK_EVERY = 4


def initialize(setup: DistributedSetup) -> None:
  """jax.distributed.initialize for `setup` (nothing for one process). Must run before
  anything touches a device. CPU processes need a cross-process collectives backend
  (gloo); the setting is inert on GPU and TPU."""
  if setup.source == "single":
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(coordinator_address=setup.coordinator_address,
                               num_processes=setup.num_processes, process_id=setup.process_id,
                               heartbeat_timeout_seconds=setup.heartbeat_timeout_seconds)
  except (RuntimeError, ValueError) as error:
    # JAX's message spans pages (a gRPC status); the first line says what failed.
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise UsageError(f"jax.distributed.initialize failed ({setup.source}: coordinator "
                     f"{setup.coordinator_address or 'auto'}, {setup.num_processes or 'auto'} "
                     f"processes): {first}") from None


# How long a process that met a user error (UsageError, RunStateError) waits for the other
# processes to meet it too before leaving alone (leave_together).
USER_ERROR_WAIT_SECONDS = 60


def leave_together(timeout_seconds: float = USER_ERROR_WAIT_SECONDS) -> bool:
  """Waits at the coordination service's barrier for every process to arrive here too, then
  disconnects cleanly (`jax.distributed.shutdown`); True when that happened. Called by a
  process that is about to exit over an error that every process meets alike (a bad
  config): without it the first process to exit, if it is process 0, takes the coordination
  service down with it and JAX aborts the processes still on their way to the same error
  (a core dump instead of the one-line error). False, at once or after `timeout_seconds`,
  when the error is this process's alone (the others never arrive) or there is no
  distributed client; the caller then exits anyway, as before."""
  # JAX has no public barrier with a timeout; the client is what multihost_utils uses.
  from jax._src import distributed  # pylint: disable=import-outside-toplevel
  client = getattr(distributed.global_state, "client", None)
  if client is None:
    return False
  try:
    client.wait_at_barrier("jaxat_leave_together", int(timeout_seconds * 1000))
    jax.distributed.shutdown()
  except Exception:  # pylint: disable=broad-except
    return False  # a timed-out or failed barrier: the caller exits as if alone
  return True


def is_main_process() -> bool:
  """True on process 0, the one process that writes files, logs progress and reports."""
  return jax.process_index() == 0


def from_every_process(value: np.ndarray) -> np.ndarray:
  """(process_count, *value.shape): every process's `value`, in process order, on every
  process (a collective: every process must call it at the same point; no communication
  for one process)."""
  value = np.asarray(value)
  if jax.process_count() == 1:
    return value[None]
  return np.asarray(multihost_utils.process_allgather(value)).reshape((-1,) + value.shape)


def local_copy(tree):
  """A host (numpy) copy of a pytree of fully replicated arrays, read from this process's
  first device: with several processes a jitted function of the global arrays would be a
  computation of every process, while one of the copy runs on this process's devices alone."""
  def leaf_copy(leaf):
    if isinstance(leaf, jax.Array):
      if not leaf.is_fully_replicated:
        raise ValueError(f"local_copy needs fully replicated arrays, got sharding {leaf.sharding}")
      return np.asarray(leaf.addressable_data(0))
    return np.asarray(leaf)
  return jax.tree.map(leaf_copy, tree)


def batch_shares(num_examples: int, batch_size: int, process_count: int) -> list[tuple[int, int]]:
  """[start, stop) of every process's contiguous share of `num_examples` examples, in process
  order: whole batches of `batch_size` (the last batch may be short), as even as whole batches
  allow; a process beyond the last batch gets an empty share. On batch boundaries so that every
  non-empty share but the last holds at least a full batch, and is attacked in the same padded
  shapes as the whole set in one process."""
  num_batches = -(-num_examples // batch_size)
  per_process = -(-num_batches // process_count)
  bounds = [min(k * per_process * batch_size, num_examples) for k in range(process_count + 1)]
  return list(zip(bounds[:-1], bounds[1:]))


def gather_shares(values: np.ndarray, shares: list[tuple[int, int]]) -> np.ndarray:
  """(*lead, num_examples): every process's `values` (*lead, its share's length), joined along
  the last axis in process order, on every process (a collective, as `from_every_process`).
  Shares are padded to the longest for the all-gather, which needs equal shapes."""
  values = np.asarray(values)
  # Sent as uint8: the collectives backends do not all carry bool.
  sent = values.astype(np.uint8) if values.dtype == np.bool_ else values
  longest = max(stop - start for start, stop in shares)
  padding = [(0, 0)] * (values.ndim - 1) + [(0, longest - values.shape[-1])]
  everyone = from_every_process(np.pad(sent, padding))
  joined = np.concatenate([everyone[k][..., :stop - start] for k, (start, stop) in enumerate(shares)],
                          axis=-1)
  return joined.astype(values.dtype)


def any_process(flag: bool) -> bool:
  """True on every process when `flag` is True on at least one (a collective: every
  process must call it at the same point); just `flag` for one process."""
  return bool(np.any(from_every_process(np.asarray(bool(flag), np.int32))))


class StopAgreement:
  """Turns a process-local stop request (SIGTERM) into one every process acts on at the
  same step. One process: the local flag, checked every step (unchanged behaviour).
  Several: compared every STOP_CHECK_EVERY steps and at the end of each epoch, so the
  step at which all stop is the same everywhere."""

  def __init__(self, local_flag):
    self._local = local_flag  # anything with a `.raised` bool (train._SigtermFlag)
    self._several = jax.process_count() > 1

  def stop_now(self, step: int, epoch_end: bool) -> bool:
    if not self._several:
      return self._local.raised
    if step % STOP_CHECK_EVERY and not epoch_end:
      return False
    return any_process(self._local.raised)
