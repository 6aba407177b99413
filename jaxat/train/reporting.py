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

from jaxat.errors import RunStateError


def _jsonable(value: Any) -> Any:
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricsWriter:
  """Appends one JSON object per call to `workdir/metrics.jsonl` (flushed at once).

  The file must survive a `kill -9` at any moment, so reading tolerates what a killed
  append leaves behind: a torn (partial, unparsable) last line is dropped with a warning.
  An unparsable line before the last one cannot come from an interrupted append; it is a
  `RunStateError` naming the file and the line. The file is only ever rewritten whole and
  atomically (`truncate_after`: temporary file + os.replace), so a kill during a rewrite
  leaves either the old or the new content, never a mix.

  With several processes only process 0 keeps the file; the others get `enabled=False`
  (writes and truncations do nothing, reads see nothing), so no line is written twice.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = enabled

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")

  def _lines(self) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """([(line text, record)] of the parsable lines, whether a torn last line was dropped)."""
    if not self.enabled or not os.path.exists(self.path):
      return [], False
    with open(self.path) as f:
      lines = [(number, line) for number, line in enumerate(f, start=1) if line.strip()]
    parsed, torn = [], False
    for index, (number, line) in enumerate(lines):
      try:
        record = json.loads(line.strip())
        if not isinstance(record, dict):
          raise ValueError(f"a JSON {type(record).__name__}, not an object")
      except ValueError as error:
        if index + 1 < len(lines):
          raise RunStateError(
              f"{self.path} line {number} is not a JSON object ({error}); only the last line "
              "can be torn by an interrupted run, so the file was damaged otherwise: repair "
              "or remove that line, or move the workdir away to start over") from None
        logging.warning("%s: dropping the torn last line %d (%d characters, left by an "
                        "interrupted run)", self.path, number, len(line.rstrip("\n")))
        torn = True
        continue
      parsed.append((line if line.endswith("\n") else line + "\n", record))
    return parsed, torn

  def read(self) -> list[dict[str, Any]]:
    return [record for _, record in self._lines()[0]]

  def truncate_after(self, epoch: int) -> None:
    """Drops epoch records past `epoch` (lines written after the checkpoint being resumed,
    `epoch` 0 when starting without one) and a torn last line, by an atomic rewrite; kept
    lines are copied byte for byte. Without anything to drop the file is left untouched."""
    lines, torn = self._lines()
    kept = [text for text, record in lines if record.get("epoch", -1) <= epoch]
    if len(kept) == len(lines) and not torn:
      return
    logging.info("%s: kept %d of %d records (resuming after epoch %d)", self.path, len(kept),
                 len(lines), epoch)
    _write_atomically(self.path, "".join(kept))


def _write_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file (synced) and os.replace: a reader or
  a kill at any moment sees the old or the new content, never a partial file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def set_aside(path: str) -> str:
  """Renames an unreadable file or directory to `<path>.corrupt-<n>` (the first free n) and
  returns the new path: damaged run files are never deleted (they may be evidence), and
  the original name is free to be written again."""
  n = 1
  while os.path.exists(f"{path}.corrupt-{n}"):
    n += 1
  target = f"{path}.corrupt-{n}"
  os.rename(path, target)
  return target


def read_json(path: str) -> Any:
  """The content of a run's JSON file (config.json, results.json, ...); an unreadable one
  is a `RunStateError` naming the file, not a bare decoder error."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as error:
    raise RunStateError(f"{path} is not readable JSON ({type(error).__name__}: {error}); "
                        "restore it from a copy of the run, or move the workdir away") from error


def write_json(path: str, payload: dict[str, Any]) -> None:
  """Writes JSON atomically (temporary file + rename)."""
  _write_atomically(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


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
