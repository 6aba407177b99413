r"""Replays the catastrophic-overfitting guard's decision on finished runs' metrics.jsonl
(jaxat/train/overfitting_guard.py, docs/fast_adversarial_training.md#catastrophic-overfitting-guard).

The guard's rules are a pure function of two logged numbers per epoch: the probe's PGD
accuracy on fixed training images (`guard_train_pgd_acc`) and the accuracy on the method's
own training adversarial examples (`adv_acc`). So any run trained with the guard on
(`warn` or `stop`) can be judged again under other thresholds, and with each rule alone:

  python benchmarks/guard_replay.py --out=benchmarks/results/guard_replay_gpu_h200.json \
      benchmarks/results/gpu_h200/guard_*.metrics.jsonl

For every file: the first epoch each rule fires (drop alone, gap alone, both), the largest
gap seen, and the last logged test PGD accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxat.train.overfitting_guard import Thresholds, first_collapse  # noqa: E402

_NEVER = 2.0  # a threshold no accuracy difference in [0, 1] exceeds


def _read(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _test_pgd(record: dict):
  for name, value in record.items():
    if name.startswith("test_pgd") and name.endswith("_acc"):
      return value
  return None


def replay(path: str, drop: float, gap: float) -> dict:
  """The guard's verdicts on one metrics.jsonl file (see the module docstring)."""
  records = [r for r in _read(path) if "guard_train_pgd_acc" in r]
  gaps = [r["adv_acc"] - r["guard_train_pgd_acc"] for r in records if "adv_acc" in r]
  verdict = {"both": first_collapse(records, Thresholds(drop, gap)),
             "drop_only": first_collapse(records, Thresholds(drop, _NEVER)),
             "gap_only": first_collapse(records, Thresholds(_NEVER, gap))}
  return {"file": path, "epochs": len(records),
          **{name: (None if found is None else {"epoch": found[0], "rule": found[1]})
             for name, found in verdict.items()},
          "max_gap": max(gaps) if gaps else None,
          "first_probe": records[0]["guard_train_pgd_acc"] if records else None,
          "best_probe": max((r["guard_train_pgd_acc"] for r in records), default=None),
          "last_test_pgd": _test_pgd(records[-1]) if records else None}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("files", nargs="+", help="metrics.jsonl files of runs trained with the guard on")
  parser.add_argument("--drop", type=float, default=0.2, help="train.guard_drop")
  parser.add_argument("--gap", type=float, default=0.1, help="train.guard_gap")
  parser.add_argument("--out", default="", help="JSON file for the results")
  args = parser.parse_args(argv)
  rows = [replay(path, args.drop, args.gap) for path in args.files]
  for row in rows:
    fired = {k: row[k] and row[k]["epoch"] for k in ("both", "drop_only", "gap_only")}
    print(f"{os.path.basename(row['file'])}: guard fires at epoch {fired['both']} "
          f"(drop alone {fired['drop_only']}, gap alone {fired['gap_only']}); "
          f"max gap {row['max_gap']:.3f}, last test PGD {row['last_test_pgd']}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"thresholds": {"drop": args.drop, "gap": args.gap}, "runs": rows}, f, indent=1)
      f.write("\n")


if __name__ == "__main__":
  main()
