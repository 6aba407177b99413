"""What an adaptive attack strategy did: the distribution of the chosen options (ε, steps,
step size, β) per epoch, overall and per class (docs/ecas.md#strategy-analysis).

Input: the epoch records of a run's metrics.jsonl. A count metric 'counts/<name>' holds an
(O, K) nested list of integer totals over the epoch: entry [o, k] = number of training
examples of class k that got option o (docs/architecture.md#count-metrics). Labels name the
O options in order ('3/255', '10', ...); a numeric label ('a/b' or a number) enters the
mean chosen value per class, a non-numeric one leaves that mean out (None).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from jaxat.errors import UsageError

COUNTS_PREFIX = "counts/"


def label_value(label: str) -> float | None:
  """'3/255' -> 3/255, '10' -> 10.0, anything else -> None."""
  try:
    if "/" in label:
      numerator, denominator = label.split("/")
      return float(numerator) / float(denominator)
    return float(label)
  except ValueError:
    return None


def _fractions(counts: np.ndarray) -> list[float]:
  total = counts.sum()
  return (counts / total).tolist() if total > 0 else [0.0] * len(counts)


def summarize_metric(counts: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
  """One epoch of one count metric: `counts` (O, K) totals -> distribution over options
  overall (O,), per class (K lists of O fractions), and the mean chosen value per class."""
  values = [label_value(label) for label in labels]
  per_class = counts.T.astype(np.float64)                      # (K, O)
  mean = None
  if all(v is not None for v in values):
    sizes = per_class.sum(axis=1)
    weighted = per_class @ np.asarray(values, np.float64)
    mean = [float(w / s) if s > 0 else None for w, s in zip(weighted, sizes)]
  return {"total": int(counts.sum()),
          "overall": _fractions(counts.sum(axis=1).astype(np.float64)),
          "per_class": [_fractions(row) for row in per_class],
          "mean_value_per_class": mean}


def strategy_summary(records: Sequence[Mapping[str, Any]],
                     labels: Mapping[str, Sequence[str]]) -> dict[str, Any]:
  """{metric: {'labels': [...], 'epochs': [{'epoch': e, ...summarize_metric}]}} over the
  records that carry count metrics. Raises UsageError when there are none, and ValueError
  when a metric's option count disagrees with its labels."""
  out: dict[str, Any] = {}
  for record in records:
    for name, value in record.items():
      if not name.startswith(COUNTS_PREFIX):
        continue
      counts = np.asarray(value, np.int64)
      if counts.ndim != 2:
        raise ValueError(f"{name} in epoch {record.get('epoch')} has shape {counts.shape}; "
                         "expected (options, classes)")
      names = list(labels.get(name) or [str(i) for i in range(counts.shape[0])])
      if len(names) != counts.shape[0]:
        raise ValueError(f"{name} has {counts.shape[0]} options but the method labels "
                         f"{len(names)}: {names}")
      entry = out.setdefault(name, {"labels": names, "epochs": []})
      entry["epochs"].append({"epoch": record.get("epoch"), **summarize_metric(counts, names)})
  if not out:
    raise UsageError("the run has no count metrics (counts/... in metrics.jsonl): its method "
                     "does not choose per-example attack options (e.g. ECAS or LAS-AT)")
  return out


def plot_strategy(summary: Mapping[str, Any], path: str, title: str = "") -> None:
  """One row per count metric: stacked option fractions per epoch (left) and the last
  epoch's per-class distribution (right)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = sorted(summary)
  fig, axes = plt.subplots(len(names), 2, figsize=(11, 3.2 * len(names)), squeeze=False)
  for row, name in enumerate(names):
    entry = summary[name]
    epochs = [e["epoch"] for e in entry["epochs"]]
    overall = np.asarray([e["overall"] for e in entry["epochs"]])      # (E, O)
    left, right = axes[row]
    left.stackplot(epochs, overall.T, labels=entry["labels"])
    left.set(xlabel="epoch", ylabel="fraction", title=f"{name} per epoch")
    last = np.asarray(entry["epochs"][-1]["per_class"])                # (K, O)
    bottom = np.zeros(last.shape[0])
    for o, label in enumerate(entry["labels"]):
      right.bar(np.arange(last.shape[0]), last[:, o], bottom=bottom, label=label)
      bottom += last[:, o]
    right.set(xlabel="class", ylabel="fraction", title=f"{name}, epoch {epochs[-1]}, per class")
    right.legend(fontsize=7, ncol=2, loc="upper right")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
