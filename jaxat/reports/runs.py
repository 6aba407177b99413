"""A finished (or running) jaxat run directory, read into plain Python values."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import statistics
from fractions import Fraction
from typing import Any

from jaxat.train.reporting import MetricsWriter


@dataclasses.dataclass
class RunRecord:
  """What the report needs of one run.

  accuracy: {item: fraction} at the run's eval eps (L-inf): results.json's final test
    accuracies, overridden by `jaxat.evaluate` reports (the one with most examples per item).
  eps_sweep: {item: [(eps as float, accuracy), ...]} sorted by eps, for items evaluated
    (L-inf, same checkpoint and weights) at two or more radii.
  """
  workdir: str
  name: str
  config: dict[str, Any]
  epochs: list[dict[str, Any]]
  accuracy: dict[str, float]
  eps_sweep: dict[str, list[tuple[float, float]]]

  imported_arch: str | None = None

  @property
  def method(self) -> str:
    """The training method, or 'pytorch:<arch>' for a model evaluated with
    `jaxat.evaluate --torch_checkpoint` (its config names no real method)."""
    if self.imported_arch:
      return f"pytorch:{self.imported_arch}"
    return self.config.get("method", {}).get("name", "?")

  def seconds_per_epoch(self) -> float | None:
    return seconds_per_epoch(self.epochs)


def seconds_per_epoch(epochs: list[dict[str, Any]]) -> float | None:
  """Median over epochs of metrics.jsonl's train_seconds (compilation and evaluation
  excluded); None when no epoch has a timing."""
  values = [float(r["train_seconds"]) for r in epochs if r.get("train_seconds")]
  return statistics.median(values) if values else None


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The epoch records of metrics.jsonl (empty when the file does not exist); a torn last
  line, left by a killed run, is dropped as a resume drops it."""
  return MetricsWriter(workdir).read()


def _same_eps(a: str | float, b: str | float) -> bool:
  return Fraction(str(a)).limit_denominator(10000) == Fraction(str(b)).limit_denominator(10000)


def read_run(workdir: str) -> RunRecord:
  """Reads config.json (required), metrics.jsonl, results.json and eval/*.json.

  Raises ValueError naming the directory when it is not a jaxat run.
  """
  config_path = os.path.join(workdir, "config.json")
  if not os.path.isdir(workdir):
    raise ValueError(f"run {workdir!r} does not exist")
  if not os.path.exists(config_path):
    raise ValueError(f"run {workdir!r} is not a jaxat run: {config_path} does not exist")
  config = _read_json(config_path)
  run_eps = config.get("eval", {}).get("eps", 8 / 255)
  accuracy: dict[str, float] = {}
  results_path = os.path.join(workdir, "results.json")
  if os.path.exists(results_path):
    results = _read_json(results_path)
    accuracy.update({key[:-len("_acc")]: float(value) for key, value in results.items()
                     if key.endswith("_acc") and isinstance(value, (int, float))})
  reports = [_read_json(path) for path in sorted(glob.glob(os.path.join(workdir, "eval", "*.json")))]
  reports = [r for r in reports if isinstance(r, dict) and "accuracy" in r
             and r.get("norm", "linf") == "linf"]
  imported_arch = next((r.get("arch") for r in reports if r.get("torch_checkpoint")), None)
  most_examples: dict[str, int] = {}
  sweep: dict[str, dict[Fraction, float]] = {}
  for report in reports:
    eps = Fraction(str(report["eps"])).limit_denominator(10000)
    for item, value in report["accuracy"].items():
      if item != "clean":
        sweep.setdefault(item, {})[eps] = float(value)
      if _same_eps(report["eps"], run_eps) and report.get("num_examples", 0) >= most_examples.get(item, -1):
        most_examples[item] = report.get("num_examples", 0)
        accuracy[item] = float(value)
  eps_sweep = {item: sorted((float(eps), value) for eps, value in points.items())
               for item, points in sweep.items() if len(points) >= 2}
  return RunRecord(workdir=workdir, name=os.path.basename(os.path.normpath(workdir)),
                   config=config, epochs=read_metrics(workdir), accuracy=accuracy,
                   eps_sweep=eps_sweep, imported_arch=imported_arch)
