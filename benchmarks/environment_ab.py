"""`benchmarks/throughput.py` under two or more process environments, in alternating processes.

  python benchmarks/environment_ab.py --reps=2 \
      --setting=huge_pages_off:GLIBC_TUNABLES=glibc.malloc.hugetlb=0 --setting=huge_pages_on: \
      --output=benchmarks/results/throughput_cpu_small_cnn_b64_huge_pages.json \
      -- --model=small_cnn --batch_size=64 --steps=8 --warmup=2 --rounds=5 --methods=standard,pgd_at

A setting is `label:NAME=VALUE,NAME=VALUE` (nothing after the colon: the environment as it
is). Settings that only a process's start can make (glibc tunables, `MALLOC_*` variables,
`XLA_FLAGS`) cannot be compared inside one process, and on the 2-core development VM one
process can run every step about 1.2-1.5× slower than the next (docs/performance.md), so
each setting runs `--reps` times, the settings alternating (A B A B ...), and the JSON keeps
every process's throughput result plus, per setting and method, the median over its
processes of seconds per step and of the cost relative to `pgd_at` (where measured), and
the speed-up of each setting over the first.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import describe_machine  # noqa: E402
from run_helpers import write_json  # noqa: E402


def parse_setting(text: str) -> tuple[str, dict[str, str]]:
  """'label:NAME=VALUE,NAME=VALUE' -> (label, {NAME: VALUE})."""
  label, _, assignments = text.partition(":")
  if not label:
    raise ValueError(f"--setting={text!r}: give label:NAME=VALUE,... (a label first)")
  variables = {}
  for item in filter(None, assignments.split(",")):
    name, equals, value = item.partition("=")
    if not equals or not name:
      raise ValueError(f"--setting={text!r}: {item!r} is not NAME=VALUE")
    variables[name] = value
  return label, variables


def summarise(runs: dict[str, list[dict]]) -> dict:
  """Per label and method: the median over processes of seconds per step and of the cost
  relative to pgd_at; the speed-up of each label over the first label."""
  summary = {}
  for label, results in runs.items():
    per_method: dict[str, dict[str, list[float]]] = {}
    for result in results:
      rows = {r["method"]: r for r in result["jaxat"]}
      for method, row in rows.items():
        entry = per_method.setdefault(method, {"seconds_per_step": [], "cost_vs_pgd_at": []})
        entry["seconds_per_step"].append(row["seconds_per_step"])
        if "pgd_at" in rows:
          entry["cost_vs_pgd_at"].append(row["seconds_per_step"] / rows["pgd_at"]["seconds_per_step"])
    summary[label] = {m: {k: statistics.median(v) for k, v in e.items() if v}
                      for m, e in per_method.items()}
  first = next(iter(summary))
  for label, methods in summary.items():
    for method, entry in methods.items():
      if method in summary[first]:
        entry["speedup_over_" + first] = (summary[first][method]["seconds_per_step"]
                                          / entry["seconds_per_step"])
  return summary


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--setting", action="append", required=True,
                      help="label:NAME=VALUE,... (repeat; at least two)")
  parser.add_argument("--reps", type=int, default=2, help="processes per setting")
  parser.add_argument("--output", required=True)
  args, throughput_args = parser.parse_known_args()
  throughput_args = [a for a in throughput_args if a != "--"]
  try:
    settings = [parse_setting(s) for s in args.setting]
  except ValueError as error:
    parser.error(str(error))
  if len(settings) < 2 or len({label for label, _ in settings}) != len(settings):
    parser.error(f"--setting: give at least two, with distinct labels (got {args.setting})")
  if args.reps < 1:
    parser.error(f"--reps={args.reps}; must be >= 1")
  runs: dict[str, list[dict]] = {label: [] for label, _ in settings}
  with tempfile.TemporaryDirectory() as scratch:
    for rep in range(args.reps):
      for label, variables in settings:
        out = os.path.join(scratch, f"{label}_{rep}.json")
        command = [sys.executable, os.path.join(HERE, "throughput.py"), *throughput_args,
                   f"--out={out}"]
        subprocess.run(command, check=True, env=dict(os.environ, **variables),
                       stdout=subprocess.DEVNULL)
        with open(out) as f:
          runs[label].append(json.load(f))
        print(label, " ".join(f"{r['method']}={r['seconds_per_step']:.4f}"
                              for r in runs[label][-1]["jaxat"]), flush=True)
  write_json(args.output, {
      "benchmark": "throughput under process environments, alternating processes",
      "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
      "settings": {label: variables for label, variables in settings},
      "reps": args.reps, "machine": describe_machine(),
      "summary": summarise(runs), "runs": runs})
  print(f"written to {args.output}")


if __name__ == "__main__":
  main()
