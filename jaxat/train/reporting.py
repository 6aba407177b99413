"""What a run tells the world: JSONL metrics, JSON results and a progress display.

- `metrics.jsonl`: one JSON object per line, at least one per epoch.
- `results.json`: the final evaluation (fractions in [0,1]) and the final fingerprint.
- Progress: a tqdm bar with images/s and ETA on an interactive terminal; plain log lines
  otherwise (`log.progress` = auto | bar | plain | none).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

from absl import logging


def _jsonable(value: Any) -> Any:
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricsWriter:
  """Appends one JSON object per call to `workdir/metrics.jsonl` (flushed at once)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "metrics.jsonl")

  def write(self, record: dict[str, Any]) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")

  def read(self) -> list[dict[str, Any]]:
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def truncate_after(self, epoch: int) -> None:
    """Drops epoch records past `epoch` (lines written after the checkpoint being resumed)."""
    kept = [r for r in self.read() if r.get("epoch", -1) <= epoch]
    with open(self.path, "w") as f:
      for record in kept:
        f.write(json.dumps(record) + "\n")


def write_json(path: str, payload: dict[str, Any]) -> None:
  """Writes JSON atomically (temporary file + rename)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


class Progress:
  """Per-step progress: tqdm bar (images/s, ETA) or plain log lines."""

  def __init__(self, mode: str, total_steps: int, initial_step: int, batch_size: int):
    if mode == "auto":
      mode = "bar" if sys.stderr.isatty() else "plain"
    self.mode = mode
    self.batch_size = batch_size
    self.total_steps = total_steps
    self._bar = None
    if mode == "bar":
      from tqdm import tqdm  # Imported lazily: only interactive runs need it.
      self._bar = tqdm(total=total_steps, initial=initial_step, unit="img",
                       unit_scale=batch_size, dynamic_ncols=True, smoothing=0.1)

  def advance(self, epoch: int) -> None:
    if self._bar is not None:
      self._bar.set_description(f"epoch {epoch}", refresh=False)
      self._bar.update(1)

  def epoch_line(self, record: dict[str, Any], seconds_left: float | None) -> None:
    keys = [k for k in record if k in ("loss", "lr", "clean_acc", "adv_acc", "images_per_sec")
            or k.startswith(("test_", "val_"))]
    text = " ".join(f"{k}={record[k]:.4g}" for k in keys if isinstance(record[k], (int, float)))
    eta = "" if seconds_left is None else f" eta={_format_seconds(seconds_left)}"
    message = f"epoch {record['epoch']} step {record['step']} {text}{eta}"
    if self._bar is not None:
      self._bar.write(message)
    elif self.mode == "plain":
      logging.info(message)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def _format_seconds(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Stopwatch:
  def __init__(self):
    self.start = time.perf_counter()

  def elapsed(self) -> float:
    return time.perf_counter() - self.start
