"""What an evaluation shows while it runs: the attack, robust accuracy so far, and the ETA.

One tqdm bar per attack pass (points of the pass done / to do, ETA of the pass) on an
interactive terminal, or one log line per chunk otherwise (mode 'auto' | 'bar' | 'plain'
| 'none', as the training loop's `log.progress`).
"""

from __future__ import annotations

import sys

from absl import logging

from jaxat.attacks.autoattack import ChunkEvent

MODES = ("auto", "bar", "plain", "none")


def _format_seconds(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class EvaluationProgress:
  """Callable as EvaluationHooks.on_chunk's display part: `show(item, event)`."""

  def __init__(self, mode: str = "auto"):
    if mode not in MODES:
      raise ValueError(f"unknown progress mode {mode!r}; valid choices: {', '.join(MODES)}")
    if mode == "auto":
      mode = "bar" if sys.stderr.isatty() else "plain"
    self.mode = mode
    self._bar = None
    self._current = None

  @staticmethod
  def _label(item: str, event: ChunkEvent) -> str:
    label = event.attack if item == event.attack else f"{item}: {event.attack}"
    if event.num_passes > 1:
      label += f" target {event.pass_index + 1}/{event.num_passes}"
    return label

  def show(self, item: str, event: ChunkEvent) -> None:
    if self.mode == "none":
      return
    key = (item, event.attack, event.pass_index)
    label = self._label(item, event)
    robust = f"robust {100 * event.num_robust / event.num_examples:.2f}%"
    if key != self._current:
      self.close()
      self._current = key
      if self.mode == "bar":
        from tqdm import tqdm  # Imported lazily: only interactive runs need it.
        self._bar = tqdm(total=event.points_total, desc=label, unit="img", dynamic_ncols=True,
                         leave=True)
    if self._bar is not None:
      self._bar.set_postfix_str(robust, refresh=False)
      self._bar.update(event.points_done - self._bar.n)
      return
    left = event.pass_seconds / max(event.points_done, 1) * (event.points_total - event.points_done)
    logging.info("%s: %d/%d points, %s, eta %s", label, event.points_done, event.points_total,
                 robust, _format_seconds(left))

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
