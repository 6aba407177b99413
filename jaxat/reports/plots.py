"""PNG curves of one or more runs (matplotlib, Agg backend: no display needed).

Each function writes one figure and returns its path, or None when no run has the data.
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from jaxat.reports.runs import RunRecord  # noqa: E402
from jaxat.reports.tables import item_title  # noqa: E402


def _series(run: RunRecord, key: str) -> tuple[list[int], list[float]]:
  """(epochs, values) of a metrics.jsonl field over the epochs that have a number."""
  points = [(r["epoch"], r[key]) for r in run.epochs
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
  return [p[0] for p in points], [float(p[1]) for p in points]


def _save(fig, path: str) -> str:
  for ax in fig.axes:
    if ax.get_xlabel() == "epoch":
      ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def robust_keys(run: RunRecord) -> list[str]:
  """The per-epoch robust test accuracies of a run, e.g. ['test_pgd10_acc']."""
  keys = {key for record in run.epochs for key in record
          if key.startswith("test_") and key.endswith("_acc") and key != "test_clean_acc"}
  return sorted(keys)


def plot_accuracy(runs: Sequence[RunRecord], path: str) -> str | None:
  """Test clean (solid) and robust (dashed) accuracy per epoch, in %, one colour per run."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  drawn = False
  for index, run in enumerate(runs):
    colour = f"C{index % 10}"
    for key, style in [("test_clean_acc", "-")] + [(k, "--") for k in robust_keys(run)]:
      epochs, values = _series(run, key)
      if epochs:
        label = key[len("test_"):-len("_acc")]
        ax.plot(epochs, [100 * v for v in values], style, color=colour, marker=".",
                label=f"{run.name} {item_title(label)}")
        drawn = True
  if not drawn:
    plt.close(fig)
    return None
  ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Clean (solid) and robust (dashed) accuracy")
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")
  return _save(fig, path)


def plot_metric(runs: Sequence[RunRecord], key: str, ylabel: str, title: str, path: str,
                log_scale: bool = False) -> str | None:
  """One metrics.jsonl field (e.g. 'loss', 'lr') per epoch, one line per run."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  drawn = False
  for index, run in enumerate(runs):
    epochs, values = _series(run, key)
    if epochs:
      ax.plot(epochs, values, "-", color=f"C{index % 10}", marker=".", label=run.name)
      drawn = True
  if not drawn:
    plt.close(fig)
    return None
  if log_scale and all(v > 0 for run in runs for v in _series(run, key)[1]):
    ax.set_yscale("log")
  ax.set(xlabel="epoch", ylabel=ylabel, title=title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")
  return _save(fig, path)


def plot_eps_sweep(runs: Sequence[RunRecord], path: str) -> str | None:
  """Robust accuracy (%) against eps (in k/255) for every item evaluated at >= 2 radii."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  drawn = False
  for index, run in enumerate(runs):
    for style, (item, points) in zip(("-", "--", ":", "-."), sorted(run.eps_sweep.items())):
      ax.plot([255 * eps for eps, _ in points], [100 * acc for _, acc in points], style,
              color=f"C{index % 10}", marker="o", label=f"{run.name} {item_title(item)}")
      drawn = True
  if not drawn:
    plt.close(fig)
    return None
  ax.set(xlabel="eps (k/255, L-inf)", ylabel="robust accuracy (%)", title="Robust accuracy vs eps")
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")
  return _save(fig, path)


def write_plots(runs: Sequence[RunRecord], out_dir: str) -> list[str]:
  """Every plot the runs have data for, written into out_dir; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = [
      plot_accuracy(runs, os.path.join(out_dir, "accuracy.png")),
      plot_metric(runs, "loss", "training loss", "Training loss", os.path.join(out_dir, "loss.png")),
      plot_metric(runs, "lr", "learning rate", "Learning rate", os.path.join(out_dir, "lr.png")),
      plot_eps_sweep(runs, os.path.join(out_dir, "robust_vs_eps.png")),
  ]
  return [p for p in paths if p is not None]
