"""Checkpoints with orbax: the last N by step, and the best by validation robust accuracy.

Layout under `workdir/checkpoints/`:
  last/<step>/   the newest `keep` checkpoints (end of epochs and preemption points)
  best/<step>/   one checkpoint, the best validation PGD accuracy so far (only when a
                 validation split exists: "best" is never chosen on the test set)
Each checkpoint holds the whole TrainState, the epoch's on-device metric sums (so a run
resumed mid-epoch logs the same epoch metrics) and a JSON of loop metadata. Orbax writes
to a temporary directory and renames it when complete, and deletes an old checkpoint only
after the new one is finalised, so a finished checkpoint is never lost.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def _manager(directory: str, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=("state", "sums", "meta"))


def _abstract(tree: Any) -> Any:
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
  """Saves and restores (state, sums, meta) in `workdir/checkpoints/{last,best}`."""

  def __init__(self, workdir: str, keep: int):
    root = os.path.join(workdir, "checkpoints")
    self._last = _manager(os.path.join(root, "last"), keep)
    self._best = _manager(os.path.join(root, "best"), 1)

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
    restored = self._last.restore(self._last.latest_step(), args=self._args_restore(state_like, sums_like))
    return restored.state, restored.sums, dict(restored.meta)

  def restore_best(self, state_like: Any, sums_like: Any) -> tuple[Any, Any, dict]:
    restored = self._best.restore(self._best.latest_step(), args=self._args_restore(state_like, sums_like))
    return restored.state, restored.sums, dict(restored.meta)

  def restore_state_only(self, which: str, state_like: Any) -> tuple[Any, int]:
    """(state, step) of the newest 'last' or the 'best' checkpoint, without the loop items."""
    manager = self._last if which == "last" else self._best
    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(state_like))))
    return restored.state, step

  def close(self) -> None:
    self._last.close()
    self._best.close()
