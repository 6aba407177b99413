"""Compare runs: `python -m jaxat.report RUN [RUN...] [--out=DIR] [--group_by=none|method]`.

Writes into DIR (default `reports/`): accuracy.png (test clean and robust accuracy per
epoch), loss.png, lr.png, robust_vs_eps.png (when some run has an eps-sweep evaluation in
eval/) and report.md, a Markdown table of the runs (accuracies in %, seconds per epoch);
`--group_by=method` averages the runs of each method (mean ± std, e.g. over seeds). The
table is also printed. Bad input fails with one line before anything is written.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from jaxat.cli_args import run_entry_point
from jaxat.errors import usage_errors

_OUT = flags.DEFINE_string("out", "reports", "Output directory.")
_GROUP_BY = flags.DEFINE_string("group_by", "none", "none (one row per run) or method.")

GROUP_BY = ("none", "method")


def _validate(workdirs: list[str], group_by: str):
  from jaxat.reports.runs import read_run
  if group_by not in GROUP_BY:
    raise ValueError(f"--group_by={group_by!r} is invalid; valid choices: {', '.join(GROUP_BY)}")
  if not workdirs:
    raise ValueError("give at least one run directory: python -m jaxat.report RUN [RUN...]")
  return [read_run(workdir) for workdir in workdirs]


def build_report(runs, group_by: str) -> str:
  """The Markdown of the report (title line and table)."""
  from jaxat.reports import tables
  rows = [{"name": run.name, "method": run.method, "accuracy": run.accuracy,
           "seconds_per_epoch": run.seconds_per_epoch()} for run in runs]
  items = tables.ordered_items([run.accuracy for run in runs])
  if group_by == "method":
    groups: dict[str, list] = {}
    for row in rows:
      groups.setdefault(row["method"], []).append(row)
    table = tables.grouped_table(groups, items)
  else:
    table = tables.runs_table(rows, items)
  return ("Test accuracy (%) at each run's eval eps (L-inf); seconds per training epoch "
          "(median).\n\n" + table + "\n")


def main(argv):
  from jaxat.reports.plots import write_plots
  with usage_errors():
    runs = _validate(argv[1:], _GROUP_BY.value)
  markdown = build_report(runs, _GROUP_BY.value)
  paths = write_plots(runs, _OUT.value)
  table_path = os.path.join(_OUT.value, "report.md")
  with open(table_path, "w") as f:
    f.write(markdown)
  sys.stdout.write(markdown)
  print("wrote " + ", ".join(paths + [table_path]))


if __name__ == "__main__":
  run_entry_point(main, positional=True)
