"""Pieces shared by the benchmarks that train runs with `python -m jaxat.main` and evaluate
them with `python -m jaxat.evaluate` (compare_methods.py, paper_table.py).

They live here so that every such benchmark starts, logs, reuses and times runs the same
way: a run is trained only when its results.json is missing and evaluated only when its
evaluation JSON is missing, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
  sys.path.insert(0, HERE)

from machine import describe_machine  # noqa: E402

from jaxat.reports import runs as runs_module  # noqa: E402


def run(command: list[str], log_path: str) -> None:
  """Runs `command` from the repository root, appending its output to `log_path`; a
  failure names the command and the log rather than flooding the benchmark's output."""
  print("$", " ".join(command), flush=True)
  with open(log_path, "a") as log:
    proc = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed with status {proc.returncode}; see {log_path}")


def seconds_per_epoch(workdir: str) -> float:
  """Median over epochs of the training seconds of an epoch (metrics.jsonl's
  train_seconds: compilation and evaluation excluded)."""
  value = runs_module.seconds_per_epoch(runs_module.read_metrics(workdir))
  if value is None:
    raise ValueError(f"{workdir}/metrics.jsonl has no epoch timing")
  return value


def training_trace(workdir: str) -> dict:
  """What shows a collapsed run without opening its logs: the training loss of every epoch
  and, where the run logged it, the share of the monitor test images given the most
  predicted class at the last epoch (1.0: a constant classifier; docs/architecture.md#when-a-run-collapses)."""
  epochs = runs_module.read_metrics(workdir)
  shares = [e["test_top_prediction_share"] for e in epochs if "test_top_prediction_share" in e]
  return {"loss_per_epoch": [round(e["loss"], 4) for e in epochs if "loss" in e],
          "test_top_prediction_share": shares[-1] if shares else None}


def train_command(config: str, workdir: str, seed: int, overrides: list[str]) -> list[str]:
  """`python -m jaxat.main` for one run; the seed is the only per-run override."""
  return [sys.executable, "-m", "jaxat.main", f"--config={config}", f"--workdir={workdir}",
          f"--config.seed={seed}", *overrides]


def evaluate_command(workdir: str, attacks: str, n_examples: int, batch_size: int, tag: str,
                     seed: int) -> list[str]:
  """`python -m jaxat.evaluate` of the last checkpoint's raw weights (the paper's and the
  comparison's final model), seeded like the run, written to <workdir>/eval/<tag>.json."""
  return [sys.executable, "-m", "jaxat.evaluate", f"--workdir={workdir}",
          f"--attacks={attacks}", f"--n_examples={n_examples}", "--weights=raw",
          f"--batch_size={batch_size}", f"--tag={tag}", "--progress=plain", f"--seed={seed}"]


def evaluation_path(workdir: str, tag: str) -> str:
  return os.path.join(workdir, "eval", f"{tag}.json")


def is_trained(workdir: str) -> bool:
  """A finished run writes results.json last; without it the run (re)starts or resumes."""
  return os.path.exists(os.path.join(workdir, "results.json"))


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def provenance(started: float) -> dict:
  """What every benchmark JSON records besides its numbers: the command that wrote it,
  when, how long it took and on what machine, so a number is never without its setup."""
  return {"command": shlex.join(["python"] + sys.argv),
          "date": datetime.datetime.now().isoformat(timespec="seconds"),
          "wall_seconds": time.time() - started, "machine": describe_machine()}


def write_json(path: str, payload: dict) -> None:
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
