"""Checkpoints with orbax: the last N by step, and the best by validation robust accuracy.

Layout under `workdir/checkpoints/`:
  last/<step>/   the newest `keep` checkpoints (end of epochs and preemption points)
  best/<step>/   one checkpoint, the best validation PGD accuracy so far (only when a
                 validation split exists: "best" is never chosen on the test set)
Each checkpoint holds the whole TrainState, the epoch's on-device metric sums (so a run
resumed mid-epoch logs the same epoch metrics) and a JSON of loop metadata. Orbax writes
to a temporary directory and renames it when complete, and deletes an old checkpoint only
after the new one is finalised, so a finished checkpoint is never lost. Temporary
directories left by a killed write (`<step>.orbax-checkpoint-tmp`) are never checkpoints;
orbax removes them when the training run opens its checkpointer.

Restoring falls back on damaged files (a truncated or overwritten file inside a finished
checkpoint: disk errors, a copy cut short): the newest step is tried first, then each older
one; every step that fails is reported as one warning line (path, error class and message)
and nothing is deleted. When resuming training (`restore_last`), a step newer than the one
restored is renamed aside to `<step>.corrupt-<n>`, so that the run can save that step again
(orbax refuses to save a step whose directory exists) and the files stay for inspection.
The other restores (`restore_best`; `restore_state_only`, evaluation's) rename nothing.
When no step restores, `RunStateError` names the directory and changes nothing.
The guarantees together: docs/architecture.md#run-directories-resume-and-crash-safety.
"""

from __future__ import annotations

import contextlib
import gc
import logging as std_logging
import os
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from absl import logging

from jaxat.errors import RunStateError
from jaxat.train import reporting


def _manager(directory: str, keep: int, read_only: bool) -> ocp.CheckpointManager:
  # The training run owns its directory and clears the temporary directories its killed
  # writes left; a reader (evaluation) may look at a run in progress and must not.
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=False,
                                         cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=("state", "sums", "meta"))


def _abstract(tree: Any) -> Any:
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
  """Saves and restores (state, sums, meta) in `workdir/checkpoints/{last,best}`;
  `read_only` for readers (evaluation), which leave a run's temporary directories alone."""

  def __init__(self, workdir: str, keep: int, read_only: bool = False):
    root = os.path.join(workdir, "checkpoints")
    self._last = _manager(os.path.join(root, "last"), keep, read_only)
    self._best = _manager(os.path.join(root, "best"), 1, read_only)

  @staticmethod
  def _args_save(state, sums, meta):
    return ocp.args.Composite(state=ocp.args.StandardSave(state), sums=ocp.args.StandardSave(sums),
                              meta=ocp.args.JsonSave(meta))

  @staticmethod
  def _args_restore(state_like, sums_like):
    return ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(state_like)),
                              sums=ocp.args.StandardRestore(_abstract(sums_like)),
                              meta=ocp.args.JsonRestore())

  def save_last(self, step: int, state: Any, sums: Any, meta: dict) -> None:
    if step in self._last.all_steps():
      return
    self._last.save(step, args=self._args_save(state, sums, meta))
    self._last.wait_until_finished()

  def save_best(self, step: int, state: Any, sums: Any, meta: dict) -> None:
    if step in self._best.all_steps():
      return
    self._best.save(step, args=self._args_save(state, sums, meta))
    self._best.wait_until_finished()

  def latest_step(self) -> int | None:
    return self._last.latest_step()

  def best_step(self) -> int | None:
    return self._best.latest_step()

  def restore_last(self, state_like: Any, sums_like: Any) -> tuple[Any, Any, dict]:
    """The newest restorable 'last' checkpoint; newer unreadable steps are renamed aside."""
    restored, _ = _restore_newest_readable(self._last, "last",
                                           self._args_restore(state_like, sums_like),
                                           set_aside=True)
    return restored.state, restored.sums, dict(restored.meta)

  def restore_best(self, state_like: Any, sums_like: Any) -> tuple[Any, Any, dict]:
    restored, _ = _restore_newest_readable(self._best, "best",
                                           self._args_restore(state_like, sums_like),
                                           set_aside=False)
    return restored.state, restored.sums, dict(restored.meta)

  def restore_state_only(self, which: str, state_like: Any) -> tuple[Any, int]:
    """(state, step) of the newest restorable 'last' or the 'best' checkpoint, without the
    loop items; read-only (evaluation must not change a run directory)."""
    manager = self._last if which == "last" else self._best
    restored, step = _restore_newest_readable(
        manager, which, ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(state_like))),
        set_aside=False)
    return restored.state, step

  def close(self) -> None:
    self._last.close()
    self._best.close()


def _one_line(error: BaseException) -> str:
  """`Class: message` on one short line (tensorstore appends pages of spec to its errors)."""
  message = str(error).split("See full TensorStore details")[0].strip()
  message = " ".join(message.split())
  if len(message) > 200:
    message = message[:197] + "..."
  return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _from_checkpoint_internals(record: Any) -> bool:
  names = [frame.f_code.co_filename for frame, _ in _walk_tb(getattr(record, "exc_traceback", None))]
  text = f"{getattr(record, 'exc_value', '')} {getattr(record, 'object', '')}"
  return (any(part in name for name in names for part in ("orbax", "tensorstore", "asyncio"))
          or "orbax" in text or "Event loop is closed" in text)


def _walk_tb(tb):
  while tb is not None:
    yield tb.tb_frame, tb.tb_lineno
    tb = tb.tb_next


class _DropOrbaxRecords(std_logging.Filter):
  """Drops records logged by orbax itself, and asyncio's 'Task exception was never
  retrieved' reports whose exception was raised inside orbax or tensorstore."""

  def filter(self, record) -> bool:
    if "orbax" in record.pathname:
      return False
    exc_info = record.exc_info if isinstance(record.exc_info, tuple) else None
    frames = [frame.f_code.co_filename for frame, _ in _walk_tb(exc_info[2] if exc_info else None)]
    return not any(part in name for name in frames for part in ("orbax", "tensorstore"))


# A reader task or coroutine that a failed restore abandons reports when it is collected
# ('Task exception was never retrieved' through asyncio's logger, 'Exception ignored in'
# through sys.unraisablehook), which may be long after the restore attempt returned, at
# interpreter exit at the latest. So both filters stay for the rest of the process once a
# restore has been tried; they drop only reports raised inside orbax or tensorstore.
_ASYNCIO_DROP = _DropOrbaxRecords()


class _DropOrbaxUnraisable:
  """A `sys.unraisablehook` that forwards every report to `forward` except orbax's."""

  def __init__(self, forward):
    self.forward = forward

  def __call__(self, record):
    if not _from_checkpoint_internals(record):
      self.forward(record)


def _silence_abandoned_readers() -> None:
  """Installs the two process-wide filters (once; again if someone replaced the hook)."""
  asyncio_logger = std_logging.getLogger("asyncio")
  if _ASYNCIO_DROP not in asyncio_logger.filters:
    asyncio_logger.addFilter(_ASYNCIO_DROP)
  if not isinstance(sys.unraisablehook, _DropOrbaxUnraisable):
    sys.unraisablehook = _DropOrbaxUnraisable(sys.unraisablehook)


@contextlib.contextmanager
def _quiet_checkpoint_internals():
  """During a restore attempt: drops orbax's log records, which a failed restore prints by
  the dozen (tracebacks, TensorStore specs) and which say nothing our one warning line does
  not; and, from now on, the reports of the reader coroutines it abandons."""
  _silence_abandoned_readers()
  drop = _DropOrbaxRecords()
  absl_logger = std_logging.getLogger("absl")
  absl_logger.addFilter(drop)
  try:
    yield
  finally:
    absl_logger.removeFilter(drop)


def _restore_newest_readable(manager: ocp.CheckpointManager, which: str, args: Any,
                             set_aside: bool) -> tuple[Any, int]:
  """(restored items, step) of the newest step of `manager` that restores.

  Each step that fails before it gets one warning line once the outcome is known; with
  `set_aside` they are renamed to `<step>.corrupt-<n>`. When every step fails (or none
  exists) nothing is changed and `RunStateError` names the directory and what to do.
  """
  directory = str(manager.directory)
  failures: list[tuple[int, str]] = []
  restored, restored_step = None, None
  with _quiet_checkpoint_internals():
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        restored, restored_step = manager.restore(step, args=args), step
        break
      except Exception as error:  # pylint: disable=broad-except  # Any damage, any library.
        failures.append((step, _one_line(error)))
    if failures:
      # Abandoned coroutines report when collected: now, while the hook still drops them
      # (outside the `except` clause, so no traceback keeps them alive).
      gc.collect()
  if restored_step is not None:
    # Several processes share the directory: process 0 renames, the others wait for it
    # before they look at the steps again.
    renames = set_aside and jax.process_index() == 0
    for failed_step, reason in failures:
      step_dir = os.path.join(directory, str(failed_step))
      moved = ""
      if renames:
        moved = f"; renamed it to {os.path.basename(reporting.set_aside(step_dir))} (kept for inspection)"
      logging.warning("checkpoint %s cannot be restored (%s); using step %d instead%s",
                      step_dir, reason, restored_step, moved)
    if failures and set_aside:
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices("jaxat: damaged checkpoints set aside")
      manager.reload()
    return restored, restored_step
  if not failures:
    raise RunStateError(f"no {which!r} checkpoint in {directory}")
  tried = "; ".join(f"step {step}: {reason}" for step, reason in failures)
  remedy = ("to train the run over from scratch" if which == "last" else
            "to go on without a best checkpoint")
  raise RunStateError(
      f"no {which!r} checkpoint in {directory} can be restored ({tried}); the files are "
      f"damaged or were written by another version of jaxat. Nothing was changed: move "
      f"{directory} away (or restore its files) and rerun {remedy}")
