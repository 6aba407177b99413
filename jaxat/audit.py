"""Audit a run's reproducibility: `python -m jaxat.audit --workdir=RUN [--epochs=K]
[--scratch=DIR] [--keep_scratch]`.

Trains the run's config.json again in a scratch directory (default: a temporary one,
removed afterwards unless --keep_scratch) and compares the model fingerprint of each of
the first K epochs (default: every epoch in RUN/metrics.jsonl) with the recorded one. The
replay stops after epoch K or at the first epoch that differs. Prints a summary (the first
diverging epoch and its differing metrics; the environments when they differ) and writes
RUN/audit/<UTC time>.json; nothing else in RUN is written.

Exit status: 0 every compared epoch matches; 1 an epoch diverges, or the replay failed
(the report holds the end of its log); 2 bad flags or a workdir that is not a run (one
line, `error: ...`). The work is done by jaxat/train/replay.py
(docs/reproducibility.md#auditing-a-run).
"""

from __future__ import annotations

import sys

from absl import flags

from jaxat.cli_args import run_entry_point
from jaxat.errors import UsageError

_WORKDIR = flags.DEFINE_string("workdir", None, "The run to audit (a python -m jaxat.main workdir).")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Compare the first K epochs; default: every "
                               "epoch recorded in the run's metrics.jsonl.")
_SCRATCH = flags.DEFINE_string("scratch", None, "Empty or new directory to replay in; default: "
                               "a temporary directory.")
_KEEP_SCRATCH = flags.DEFINE_bool("keep_scratch", False, "Keep the replay's workdir and log.")

_EXIT_CODES = {"match": 0, "diverged": 1, "replay_failed": 1}


def _format_value(value) -> str:
  return f"{value:.6g}" if isinstance(value, float) else str(value)


def summary_lines(report: dict) -> list[str]:
  """The human summary of an audit report (what the command prints)."""
  lines = [f"audit of {report['workdir']}: compared {report['epochs_compared']} of "
           f"{report['epochs_requested']} requested epochs in {report['seconds']:.0f}s"]
  for c in report["epochs"]:
    verdict = "match" if c["match"] else "DIFFERS"
    lines.append(f"  epoch {c['epoch']}: {c['original_fingerprint']} vs "
                 f"{c['replay_fingerprint']} {verdict}")
  divergence = report["first_divergence"]
  if report["status"] == "match":
    lines.append(f"result: all {report['epochs_compared']} compared epochs match")
  elif divergence is not None:
    lines.append(f"result: first divergence at epoch {divergence['epoch']}")
    for name, (a, b) in divergence["differing_metrics"].items():
      lines.append(f"  {name}: original {_format_value(a)}, replay {_format_value(b)}")
  else:
    failure = report["replay_failure"]
    lines.append(f"result: the replay stopped (exit status {failure['exit_code']}) before "
                 "the requested epochs were compared; its log ends:")
    lines.extend("  | " + line for line in failure["log_tail"][-5:])
  lines.extend(_environment_lines(report["environment"]))
  lines.append(f"report: {report['report_path']}")
  if report["scratch"]:
    lines.append(f"scratch kept: {report['scratch']}")
  return lines


def _environment_lines(section: dict) -> list[str]:
  if section["original"] == "not recorded":
    return ["environment: original not recorded (the run predates environment.json)"]
  if section["replay"] == "not recorded":
    return ["environment: the replay's was not recorded"]
  lines = []
  for i, differences in enumerate(section["differences"]):
    for name, (a, b) in differences.items():
      lines.append(f"  session {i}: {name}: original {a}, replay {b}")
  if not lines:
    return ["environment: same as the original's"]
  return ["environment: differs from the original's"] + lines


def main(argv):
  del argv  # run_entry_point refuses positional arguments
  if not _WORKDIR.value:
    raise UsageError("--workdir is required (the run to audit)")
  from jaxat.train.replay import audit  # Here, so that flag errors need no JAX start-up.
  report = audit(_WORKDIR.value, _EPOCHS.value, _SCRATCH.value, _KEEP_SCRATCH.value)
  print("\n".join(summary_lines(report)))
  sys.exit(_EXIT_CODES[report["status"]])


if __name__ == "__main__":
  run_entry_point(main)
