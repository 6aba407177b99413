"""RobustBench-style `model_info` JSON of an exported run.

RobustBench keeps one JSON per model (model_info/<dataset>/<threat model>/<name>.json) with
the fields of ROBUSTBENCH_FIELDS; accuracies are percentages written as strings with two
decimals and eps is an exact fraction such as "8/255". Fields jaxat cannot know (paper
link, name, authors, venue) are left empty for the author; accuracies that no evaluation
measured are null. A `jaxat` entry records where every number came from.
"""

from __future__ import annotations

import glob
import json
import os
from fractions import Fraction
from typing import Any

ROBUSTBENCH_FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes",
                      "dataset", "venue", "architecture", "eps", "clean_acc", "reported",
                      "autoattack_acc")


def architecture_name(model_config: Any) -> str:
  """RobustBench's architecture spelling, e.g. 'WideResNet-34-10', 'PreActResNet-18'."""
  name = model_config["name"]
  suffix = "-SiLU" if model_config.get("activation") == "silu" else ""
  if name == "wide_resnet":
    return f"WideResNet-{model_config['depth']}-{model_config['width']}{suffix}"
  if name == "preact_resnet18":
    final = "" if model_config.get("final_bn", True) else " (no final BN)"
    return f"PreActResNet-18{suffix}{final}"
  if name == "resnet18":
    return f"ResNet-18{suffix}"
  channels = "-".join(str(c) for c in model_config.get("channels", ()))
  bn = "-BN" if model_config.get("batch_norm") else ""
  return f"SmallCNN-{channels}{bn}{suffix}"


def read_eval_reports(workdir: str) -> list[dict[str, Any]]:
  """Every finished `python -m jaxat.evaluate` report in <workdir>/eval (partial state
  files excluded), each with its file name under 'file'; sorted by file name."""
  reports = []
  for path in sorted(glob.glob(os.path.join(workdir, "eval", "*.json"))):
    with open(path) as f:
      report = json.load(f)
    if isinstance(report, dict) and "accuracy" in report:
      reports.append({**report, "file": os.path.basename(path)})
  return reports


def _matching(reports: list[dict], item: str, checkpoint: str, weights: str) -> list[dict]:
  return [r for r in reports if item in r.get("accuracy", {}) and r.get("norm", "linf") == "linf"
          and r.get("checkpoint", checkpoint) == checkpoint and r.get("weights", weights) == weights]


def _percent(fraction: float | None) -> str | None:
  return None if fraction is None else f"{100 * fraction:.2f}"


def build_model_info(config: dict[str, Any], reports: list[dict[str, Any]],
                     results: dict[str, Any] | None, checkpoint: str, weights: str) -> dict[str, Any]:
  """The model_info dict of a run.

  AutoAttack accuracy and eps come from the L-inf `aa` report of the exported weights with
  the most examples; clean accuracy from that report, else from any report with `clean`,
  else from results.json (final test accuracy of the last checkpoint).

  Args:
    config: the run's config.json.
    reports: read_eval_reports(workdir).
    results: the run's results.json, or None.
    checkpoint, weights: what was exported ('last'|'best', 'raw'|'ema').
  """
  aa_reports = sorted(_matching(reports, "aa", checkpoint, weights),
                      key=lambda r: r.get("num_examples", 0))
  clean_reports = sorted(_matching(reports, "clean", checkpoint, weights),
                         key=lambda r: r.get("num_examples", 0))
  aa_report = aa_reports[-1] if aa_reports else None
  clean_source = None
  clean = None
  if aa_report is not None and "clean" in aa_report["accuracy"]:
    clean, clean_source = aa_report["accuracy"]["clean"], f"eval/{aa_report['file']}"
  elif clean_reports:
    clean, clean_source = clean_reports[-1]["accuracy"]["clean"], f"eval/{clean_reports[-1]['file']}"
  elif results is not None and checkpoint == "last" and weights == results.get("weights"):
    clean, clean_source = results.get("clean_acc"), "results.json"
  autoattack = aa_report["accuracy"]["aa"] if aa_report is not None else None
  eps = (aa_report["eps"] if aa_report is not None
         else str(Fraction(float(config["eval"]["eps"])).limit_denominator(10000)))
  return {
      "link": "", "name": "", "authors": "", "additional_data": False,
      "number_forward_passes": 1, "dataset": config["dataset"]["name"], "venue": "",
      "architecture": architecture_name(config["model"]), "eps": eps,
      "clean_acc": _percent(clean), "reported": _percent(autoattack),
      "autoattack_acc": _percent(autoattack),
      "jaxat": {
          "method": config["method"]["name"], "checkpoint": checkpoint, "weights": weights,
          "threat_model": "Linf", "clean_acc_from": clean_source,
          "autoattack_acc_from": None if aa_report is None else f"eval/{aa_report['file']}",
          "num_examples": None if aa_report is None else aa_report.get("num_examples"),
      },
  }
