"""Markdown tables comparing runs (also behind benchmarks/compare_methods.py)."""

from __future__ import annotations

import statistics
from typing import Any, Sequence

# Display names of the usual evaluation items; others are shown as they are named.
ITEM_TITLES = {"clean": "clean", "fgsm": "FGSM", "aa": "AA"}


def item_title(item: str) -> str:
  """'pgd20' -> 'PGD-20', 'cw20' -> 'CW-20', 'aa' -> 'AA'."""
  if item in ITEM_TITLES:
    return ITEM_TITLES[item]
  for prefix in ("pgd", "cw"):
    if item.startswith(prefix) and item[len(prefix):].isdigit():
      return f"{prefix.upper()}-{item[len(prefix):]}"
  return item


def mean_std(values: Sequence[float]) -> dict[str, float]:
  """{'mean', 'std'} with the sample standard deviation (0 for a single value)."""
  return {"mean": statistics.fmean(values),
          "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A GitHub Markdown table (no trailing newline)."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def _percent(value: float | None) -> str:
  return "—" if value is None else f"{100 * value:.2f}"


def _seconds(value: float | None) -> str:
  return "—" if value is None else f"{value:.2f}"


def ordered_items(accuracies: Sequence[dict[str, float]]) -> list[str]:
  """Items present in any run: clean first, then in order of first appearance."""
  items: list[str] = []
  for accuracy in accuracies:
    items += [item for item in accuracy if item not in items]
  return sorted(items, key=lambda item: (item != "clean", items.index(item)))


def runs_table(rows: Sequence[dict[str, Any]], items: Sequence[str]) -> str:
  """One row per run: name, method, accuracies in %, seconds per epoch.

  Args:
    rows: dicts with 'name', 'method', 'accuracy' ({item: fraction}) and
      'seconds_per_epoch' (float or None).
    items: accuracy columns, in order.
  """
  header = ["run", "method", *(item_title(i) for i in items), "s/epoch"]
  body = [[row["name"], row["method"], *(_percent(row["accuracy"].get(i)) for i in items),
           _seconds(row["seconds_per_epoch"])] for row in rows]
  return markdown_table(header, body)


def grouped_table(groups: dict[str, Sequence[dict[str, Any]]], items: Sequence[str],
                  label: str = "method") -> str:
  """One row per group (e.g. method over seeds): mean ± std of accuracies in %, mean s/epoch.

  Args:
    groups: {label: rows as for runs_table}; items missing from some runs of a group are
      averaged over the runs that have them.
  """
  header = [label, *(item_title(i) for i in items), "s/epoch"]
  body = []
  for name, rows in groups.items():
    cells = [name]
    for item in items:
      values = [row["accuracy"][item] for row in rows if item in row["accuracy"]]
      stats = mean_std(values) if values else None
      cells.append("—" if stats is None else f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}")
    seconds = [row["seconds_per_epoch"] for row in rows if row["seconds_per_epoch"] is not None]
    cells.append(_seconds(mean_std(seconds)["mean"] if seconds else None))
    body.append(cells)
  return markdown_table(header, body)
