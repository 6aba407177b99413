"""The UIAT paper's Table 1 or Table 6 rerun with jaxat, ours beside the published numbers.

  python benchmarks/paper_table.py --table=1|6 --preset=cifar10|cifar100|svhn|cifar10_subset \
      --seeds=0,1,2 [--num_epochs=N] [--model=small_cnn --channels=32,64] [--aa_examples=N] \
      [--extra='--config.x=y ...'] [--readings=default,mean_features,...] \
      [--root=runs/paper_table] [--output=FILE] [--dry_run]

Rows. Table 1 (Dong et al., CVPR 2023) trains every row as a ResNet-18 on UIAT's recipe:
`configs/{pgd_at,trades,mart}.py:<preset>,table1` (the `table1` token puts a baseline on
that recipe) and `configs/{uiat,uiat_oneoff}.py:<preset>` (on it by default). Table 6 (the
ablation, CIFAR-10 only) is five override sets of `configs/iat.py` and `configs/uiat.py`
(docs/inverse_adversarial_training.md#ablation-table-6).

Readings. The paper leaves some choices open; jaxat picked one reading of each and keeps
the other as a switch. `--readings` reruns every row under each named reading (a set of
overrides, READINGS below; join names with `+` to combine them) so that a conclusion can
be checked "both ways". A reading only changes the rows that have what it switches
(e.g. `mean_features` needs UIAT's feature term, so not the baselines nor the β = 0 rows
of Table 6): such a row's run would be the `default` run again, so it reuses that run
directory (trained once) and the table says which run each row shows.

Each (reading, row, seed) is one run under <root>/<preset>[_<hash of the shared
overrides>]/<reading>/<row>_seed<seed>; finished runs (results.json) and evaluations
(eval/<tag>.json) are reused on a rerun. Evaluation (last checkpoint, raw weights, the
preset's ε = 8/255): clean, PGD-20 and CW-20 on the whole test split, AutoAttack (standard)
on its first --aa_examples images (0 = all). Writes JSON (machine, command, every run, mean
± std over seeds per reading and row, the published numbers, the ordering check) to
--output (default benchmarks/results/paper_table<T>_<preset>.json) and prints per reading
a Markdown table of ours (mean ± std) beside the paper's numbers, and how well our
ordering of the rows matches the paper's (Spearman ρ and pairs in the same order): on a
shortened run (cifar10_subset, small model, few epochs) only the ordering, not the level,
can be compared. cifar10_subset is compared with the paper's CIFAR-10 numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import math
import os
import shlex
import sys
import time
from typing import Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from run_helpers import (evaluate_command, evaluation_path, is_trained, provenance,  # noqa: E402
                         read_json, run, seconds_per_epoch, train_command, training_trace,
                         write_json)
from uiat_published import PUBLISHED  # noqa: E402

from jaxat.reports import tables  # noqa: E402

USAGE_EXIT_CODE = 2  # as jaxat's entry points (jaxat/errors.py)
ITEMS = ("clean", "pgd20", "cw20", "aa")
TABLE_PRESETS = {"1": ("cifar10", "cifar100", "svhn", "cifar10_subset"),
                 "6": ("cifar10", "cifar10_subset")}  # Table 6 is published for CIFAR-10 only
# The paper's dataset whose numbers a preset is compared with.
PUBLISHED_DATASET = {"cifar10": "cifar10", "cifar10_subset": "cifar10", "cifar100": "cifar100",
                     "svhn": "svhn"}
EVAL_TAG = "paper_table"


class UsageError(ValueError):
  """A bad argument: printed as one line `error: ...`, exit status 2, nothing run."""


# --- rows and readings -------------------------------------------------------------------

# What a row's method has, so that a reading changes only the rows it means something for.
INVERSE = "inverse"        # UIAT's inverse adversary (method.inverse, attack/inverse BN modes)
FEATURES = "features"      # the feature term FR of Eq. 4 is on (β > 0)
UNIVERSAL = "universal"    # class-wise universal perturbations (UAG)
UIAT_TRAITS = frozenset({INVERSE, FEATURES, UNIVERSAL})


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of a paper table: a config and its overrides. `key` names the run directory,
  so the same run (Table 1's and Table 6's full UIAT) is trained once for both tables."""
  key: str
  label: str
  config: str
  tokens: str
  overrides: tuple[str, ...] = ()
  traits: frozenset[str] = frozenset()

  def config_arg(self, preset: str) -> str:
    return f"configs/{self.config}.py:{preset}{self.tokens}"


ROWS = {
    "1": (
        Row("pgd_at", "SAT (PGD-AT)", "pgd_at", ",table1"),
        Row("trades", "TRADES", "trades", ",table1"),
        Row("mart", "MART", "mart", ",table1"),
        Row("uiat", "UIAT", "uiat", "", traits=UIAT_TRAITS),
        Row("uiat_oneoff", "UIAT one-off", "uiat_oneoff", "", traits=UIAT_TRAITS),
    ),
    "6": (
        Row("iat", "IAT", "iat", "", ("--config.method.inverse.beta=0",),
            frozenset({INVERSE})),
        Row("uag", "+ UAG", "uiat", "",
            ("--config.method.inverse.beta=0", "--config.method.momentum=False"),
            frozenset({INVERSE, UNIVERSAL})),
        Row("uag_fr", "+ UAG + FR", "uiat", "", ("--config.method.momentum=False",), UIAT_TRAITS),
        Row("uag_iam", "+ UAG + IAM", "uiat", "", ("--config.method.inverse.beta=0",),
            frozenset({INVERSE, UNIVERSAL})),
        Row("uiat", "UIAT", "uiat", "", traits=UIAT_TRAITS),
    ),
}


@dataclasses.dataclass(frozen=True)
class Reading:
  """A reading of an open point: overrides for every row that has `needs` (None: all)."""
  overrides: tuple[str, ...]
  needs: str | None
  why: str


READINGS = {
    "default": Reading((), None, "jaxat's defaults (docs/inverse_adversarial_training.md)"),
    "mean_features": Reading(
        ("--config.method.inverse.feature_reduction=mean",), FEATURES,
        "FR's L1 norms as a per-example mean over feature dimensions instead of the sum"),
    "bn_eval": Reading(
        ("--config.method.attack.bn_mode=eval", "--config.method.inverse.bn_mode=eval"),
        INVERSE, "UIAT's attack and inverse passes with running BatchNorm statistics, as "
        "TRADES/MART attack (collapsed BatchNorm models on the subset)"),
    "bn_batch_stats": Reading(
        ("--config.method.attack.bn_mode=batch_stats",
         "--config.method.inverse.bn_mode=batch_stats"),
        INVERSE, "UIAT's attack and inverse passes normalised with the batch's statistics "
        "without updating the running ones"),
    "cycle_momentum": Reading(
        ("--config.schedule.cycle_momentum=True",), None,
        "PyTorch OneCycleLR's default momentum cycle (0.95 -> 0.85 -> 0.95) on every row"),
    "kl_mean": Reading(("--config.method.kl_reduction=mean",), INVERSE,
                       "KL as PyTorch KLDivLoss's default 'mean' (also divided by the classes)"),
    "target_before_update": Reading(
        ("--config.method.inverse.target_after_update=False",), UNIVERSAL,
        "p(x̃) with the incoming class-wise z rather than the updated one"),
    "target_gradient": Reading(("--config.method.target_gradient=True",), INVERSE,
                               "gradients through the current-epoch part of the target"),
}


def reading_parts(name: str) -> list[str]:
  """'a+b' -> ['a', 'b'] in READINGS order (so 'b+a' names the same runs); refused when a
  part is unknown or repeated."""
  parts = [p.strip() for p in name.split("+")]
  unknown = [p for p in parts if p not in READINGS]
  if unknown:
    raise UsageError(f"--readings: unknown reading {unknown[0]!r}; valid choices: "
                     f"{', '.join(READINGS)} (join with + to combine)")
  if len(set(parts)) != len(parts):
    raise UsageError(f"--readings: {name!r} names a reading twice")
  return [p for p in READINGS if p in parts]


def applied_parts(reading: str, row: Row) -> list[str]:
  """The parts of `reading` that change `row` (their `needs` is among the row's traits)."""
  return [p for p in reading_parts(reading) if READINGS[p].overrides
          and (READINGS[p].needs is None or READINGS[p].needs in row.traits)]


def run_reading(reading: str, row: Row) -> str:
  """The name of the run `row` shows under `reading`: the applied parts, or 'default'."""
  return "+".join(applied_parts(reading, row)) or "default"


def reading_overrides(reading: str, row: Row) -> list[str]:
  return [o for p in applied_parts(reading, row) for o in READINGS[p].overrides]


# --- arguments ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # argparse's own errors as one line too
    raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(description=__doc__.splitlines()[0])
  parser.add_argument("--table", required=True, help="1 or 6")
  parser.add_argument("--preset", default="cifar10_subset",
                      help="dataset token: cifar10, cifar100, svhn, cifar10_subset")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--num_epochs", type=int, default=0, help="0 = the recipe's")
  parser.add_argument("--model", default="", help="'' = the recipe's ResNet-18")
  parser.add_argument("--channels", default="", help="small_cnn channels, e.g. 32,64")
  parser.add_argument("--aa_examples", type=int, default=0,
                      help="AutoAttack on the first N test images; 0 = all")
  parser.add_argument("--eval_batch_size", type=int, default=500)
  parser.add_argument("--extra", default="", help="more --config.* overrides for every run")
  parser.add_argument("--readings", default="default",
                      help=f"comma list of {', '.join(READINGS)} (a+b combines)")
  parser.add_argument("--root", default=os.path.join(REPO_ROOT, "runs", "paper_table"))
  parser.add_argument("--output", default="")
  parser.add_argument("--dry_run", action="store_true",
                      help="print every command that would run, run nothing")
  return parser


def parse_seeds(text: str) -> list[int]:
  try:
    seeds = [int(s) for s in text.split(",") if s.strip()]
  except ValueError:
    raise UsageError(f"--seeds must be a comma list of integers >= 0, got {text!r}") from None
  if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
    raise UsageError(f"--seeds must be a comma list of distinct integers >= 0, got {text!r}")
  return seeds


def parse_readings(text: str) -> list[str]:
  readings = [r.strip() for r in text.split(",") if r.strip()]
  if not readings:
    raise UsageError(f"--readings is empty; valid choices: {', '.join(READINGS)}")
  canonical = ["+".join(reading_parts(r)) for r in readings]
  if len(set(canonical)) != len(canonical):
    raise UsageError(f"--readings names a reading twice: {text!r}")
  return canonical


def field_of(override: str) -> str:
  return override.split("=", 1)[0]


def check_extra(extra: list[str], rows: Sequence[Row], readings: Sequence[str]) -> None:
  """--extra is for the shared setup (data_dir, batch size, ...): a field the script sets
  per run (seed, a row's or a reading's override) would make the run's name lie."""
  owned = {"--config.seed"}
  owned |= {field_of(o) for row in rows for o in row.overrides}
  owned |= {field_of(o) for r in readings for p in reading_parts(r) for o in READINGS[p].overrides}
  for token in extra:
    if not token.startswith("--config.") or "=" not in token:
      raise UsageError(f"--extra: {token!r} is not a --config.<field>=<value> override")
    if field_of(token) in owned:
      raise UsageError(f"--extra: {field_of(token)} is set per run by this script (seed, row "
                       f"or reading); choose it with --seeds or --readings")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """The validated arguments; every refusal is a UsageError naming the flag."""
  args = build_parser().parse_args(argv)
  if args.table not in TABLE_PRESETS:
    raise UsageError(f"--table must be 1 or 6, got {args.table!r}")
  if args.preset not in TABLE_PRESETS[args.table]:
    raise UsageError(f"--preset={args.preset} has no published Table {args.table}; valid "
                     f"choices: {', '.join(TABLE_PRESETS[args.table])}")
  args.seed_list = parse_seeds(args.seeds)
  args.reading_list = parse_readings(args.readings)
  if args.num_epochs < 0:
    raise UsageError(f"--num_epochs must be >= 0 (0 = the recipe's), got {args.num_epochs}")
  if args.aa_examples < 0:
    raise UsageError(f"--aa_examples must be >= 0 (0 = all), got {args.aa_examples}")
  if args.eval_batch_size < 1:
    raise UsageError(f"--eval_batch_size must be >= 1, got {args.eval_batch_size}")
  if args.channels and args.model != "small_cnn":
    raise UsageError("--channels only applies to --model=small_cnn")
  args.extra_list = shlex.split(args.extra)
  check_extra(args.extra_list, ROWS[args.table], args.reading_list)
  return args


# --- the plan: runs and their commands ---------------------------------------------------


@dataclasses.dataclass
class Run:
  """One run directory and the (reading, row, seed) cells that show it."""
  row: Row
  seed: int
  reading: str           # the reading whose overrides it trains with ('default': none)
  workdir: str
  train: list[str]
  evaluations: list[tuple[str, list[str]]]  # (evaluation JSON path, command)
  cells: list[str] = dataclasses.field(default_factory=list)


def shared_overrides(args) -> list[str]:
  """The overrides every run gets: the shortened setup (model, epochs) and --extra."""
  out = []
  if args.model:
    out.append(f"--config.model.name={args.model}")
  if args.channels:
    out.append(f"--config.model.channels=({args.channels})")
  if args.num_epochs:
    out.append(f"--config.num_epochs={args.num_epochs}")
  return out + args.extra_list


def setup_name(preset: str, overrides: list[str]) -> str:
  """<preset>, or <preset>_<hash> for a changed setup: a rerun with another model or number
  of epochs gets other run directories instead of a refused config change."""
  if not overrides:
    return preset
  return f"{preset}_{hashlib.sha1(' '.join(overrides).encode()).hexdigest()[:8]}"


def aa_tag(aa_examples: int) -> str:
  return f"{EVAL_TAG}_aa" + (f"_n{aa_examples}" if aa_examples else "")


def evaluations(workdir: str, seed: int, args) -> list[tuple[str, list[str]]]:
  """Clean, PGD-20 and CW-20 on the whole test split; AA (the slowest) on the first
  --aa_examples images, in its own file so that another --aa_examples reuses the rest."""
  tags = ((EVAL_TAG, "clean,pgd20,cw20", 0), (aa_tag(args.aa_examples), "aa", args.aa_examples))
  return [(evaluation_path(workdir, tag),
           evaluate_command(workdir, attacks, n, args.eval_batch_size, tag, seed))
          for tag, attacks, n in tags]


def plan(args) -> list[Run]:
  """Every run the tables need, once each, in table order (reading, row, seed)."""
  shared = shared_overrides(args)
  base = os.path.join(args.root, setup_name(args.preset, shared))
  common = ["--config.log.progress=plain", *shared]
  runs: dict[str, Run] = {}
  for reading, row, seed in itertools.product(args.reading_list, ROWS[args.table],
                                              args.seed_list):
    name = run_reading(reading, row)
    workdir = os.path.join(base, name, f"{row.key}_seed{seed}")
    if workdir not in runs:
      overrides = [*common, *row.overrides, *reading_overrides(reading, row)]
      runs[workdir] = Run(row, seed, name, workdir,
                          train_command(row.config_arg(args.preset), workdir, seed, overrides),
                          evaluations(workdir, seed, args))
    runs[workdir].cells.append(reading)
  return list(runs.values())


def display(command: list[str]) -> str:
  """The command as a user would type it (`python` for this interpreter)."""
  shown = ["python" if c == sys.executable else c for c in command]
  return shlex.join(shown)


def dry_run(runs: list[Run]) -> None:
  """Every command a real run would start now; finished steps are shown as reused."""
  for r in runs:
    print(f"# {r.row.key} seed {r.seed}, run {r.reading} (readings: {', '.join(r.cells)})")
    steps = [(is_trained(r.workdir), r.train)] + [(os.path.exists(p), c) for p, c in r.evaluations]
    for done, command in steps:
      print(("# reused: " if done else "") + display(command))


# --- running and reading results ---------------------------------------------------------


def execute(r: Run) -> None:
  """Trains and evaluates `r` where its files are missing (an interrupted run resumes)."""
  os.makedirs(os.path.dirname(r.workdir), exist_ok=True)
  log_path = r.workdir + ".log"
  if not is_trained(r.workdir):
    run(r.train, log_path)
  for path, command in r.evaluations:
    if not os.path.exists(path):
      run(command, log_path)


def read_result(r: Run) -> dict:
  """The per-run record of the JSON: accuracies (fractions), sizes, timings, setup."""
  main_eval, aa_eval = (read_json(path) for path, _ in r.evaluations)
  config = read_json(os.path.join(r.workdir, "config.json"))
  return {"row": r.row.key, "seed": r.seed, "run_reading": r.reading, "readings": r.cells,
          "workdir": r.workdir, "train_command": display(r.train),
          **{item: main_eval["accuracy"][item] for item in ("clean", "pgd20", "cw20")},
          "aa": aa_eval["accuracy"]["aa"], "aa_subset_clean": aa_eval["accuracy"]["clean"],
          "num_examples": main_eval["num_examples"], "aa_examples": aa_eval["num_examples"],
          "eps": main_eval["eps"], "seconds_per_epoch": seconds_per_epoch(r.workdir),
          "aa_seconds": sum(v for k, v in aa_eval["seconds"].items() if k.startswith("aa/")),
          "num_epochs": config["num_epochs"], "model": config["model"],
          **training_trace(r.workdir)}


# --- the tables --------------------------------------------------------------------------


def summarize(results: list[dict], readings: Sequence[str], rows: Sequence[Row]) -> dict:
  """{reading: {row: {item: {mean, std}} + n, run_reading}} over the seeds of each cell."""
  summary = {}
  for reading in readings:
    summary[reading] = {}
    for row in rows:
      cell = [r for r in results if r["row"] == row.key and reading in r["readings"]]
      stats = {k: tables.mean_std([r[k] for r in cell]) for k in (*ITEMS, "seconds_per_epoch")}
      summary[reading][row.key] = {**stats, "n": len(cell), "run_reading": run_reading(reading, row)}
  return summary


def ranks(values: Sequence[float]) -> list[float]:
  """1-based ranks, ties sharing their average rank (as Spearman's ρ needs)."""
  order = sorted(range(len(values)), key=lambda i: values[i])
  out = [0.0] * len(values)
  start = 0
  while start < len(order):
    end = start
    while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
      end += 1
    for k in range(start, end + 1):
      out[order[k]] = (start + end) / 2 + 1
    start = end + 1
  return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
  """Spearman's ρ (Pearson's r of the ranks); None when either side is constant."""
  ra, rb = ranks(a), ranks(b)
  ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
  cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
  var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
  return None if var == 0 else cov / var


def pair_agreement(a: Sequence[float], b: Sequence[float]) -> dict[str, int]:
  """Pairs of rows in the same strict order on both sides, in the opposite one, or tied
  on either side."""
  counts = {"same": 0, "opposite": 0, "tied": 0}
  for i, j in itertools.combinations(range(len(a)), 2):
    sign = (a[i] - a[j]) * (b[i] - b[j])
    counts["same" if sign > 0 else "opposite" if sign < 0 else "tied"] += 1
  return counts


def ordering(cells: dict, published: dict, rows: Sequence[Row]) -> dict:
  """Per item the paper reports for every row: how our row means order against the paper's."""
  out = {}
  for item in ITEMS:
    if not all(item in published.get(row.key, {}) for row in rows) or len(rows) < 2:
      continue
    # Rounded so that equal accuracies averaged in another order still tie.
    ours = [round(100 * cells[row.key][item]["mean"], 6) for row in rows]
    paper = [published[row.key][item] for row in rows]
    out[item] = {"spearman": spearman(ours, paper), **pair_agreement(ours, paper),
                 "ours_best_first": best_first(rows, ours),
                 "paper_best_first": best_first(rows, paper)}
  return out


def best_first(rows: Sequence[Row], values: Sequence[float]) -> str:
  """'uiat > uag_iam = uag_fr > ...': the rows by decreasing value, ties joined by '='."""
  order = sorted(range(len(rows)), key=lambda i: -values[i])
  text = rows[order[0]].key
  for previous, i in zip(order, order[1:]):
    text += (" = " if values[i] == values[previous] else " > ") + rows[i].key
  return text


def _ours(stats: dict) -> str:
  return f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}"


def comparison_table(cells: dict, published: dict, rows: Sequence[Row]) -> str:
  """Ours (mean ± std over seeds, %) beside the paper's number per item, one row per row."""
  header = ["row", "run"]
  for item in ITEMS:
    header += [f"{tables.item_title(item)} ours", "paper"]
  header.append("s/epoch")
  body = []
  for row in rows:
    cell, paper = cells[row.key], published.get(row.key, {})
    line = [row.label, cell["run_reading"]]
    for item in ITEMS:
      line += [_ours(cell[item]), f"{paper[item]:.2f}" if item in paper else "—"]
    line.append(f"{cell['seconds_per_epoch']['mean']:.2f}")
    body.append(line)
  return tables.markdown_table(header, body)


def ordering_table(order: dict) -> str:
  header = ["item", "Spearman ρ", "pairs same / opposite / tied", "ours, best first",
            "paper, best first"]
  body = [[tables.item_title(item), "—" if o["spearman"] is None else f"{o['spearman']:+.2f}",
           f"{o['same']} / {o['opposite']} / {o['tied']}", o["ours_best_first"],
           o["paper_best_first"]] for item, o in order.items()]
  return tables.markdown_table(header, body)


def report(args, summary: dict, orderings: dict, results: list[dict]) -> str:
  """The Markdown of every reading: the comparison, then the ordering check."""
  first = results[0]
  lines = [f"Table {args.table}, {args.preset} (paper: {PUBLISHED_DATASET[args.preset]}), "
           f"{first['model']['name']}, {first['num_epochs']} epochs, eps {first['eps']}, "
           f"{first['num_examples']} test images (AA: {first['aa_examples']}), seeds "
           f"{args.seed_list} (mean ± std, %)"]
  for reading in args.reading_list:
    overrides = [o for p in reading_parts(reading) for o in READINGS[p].overrides]
    lines += ["", f"### reading {reading}: {' '.join(overrides) or 'no overrides'}", "",
              comparison_table(summary[reading], published_for(args), ROWS[args.table]), "",
              ordering_table(orderings[reading])]
  return "\n".join(lines)


def published_for(args) -> dict:
  return PUBLISHED[args.table][PUBLISHED_DATASET[args.preset]]


def main(argv: Sequence[str] | None = None) -> None:
  args = parse_args(argv)
  runs = plan(args)
  if args.dry_run:
    dry_run(runs)
    return
  started = time.time()
  results = []
  for r in runs:
    execute(r)
    results.append(read_result(r))
  rows = ROWS[args.table]
  summary = summarize(results, args.reading_list, rows)
  orderings = {reading: ordering(summary[reading], published_for(args), rows)
               for reading in args.reading_list}
  output = args.output or os.path.join(HERE, "results",
                                       f"paper_table{args.table}_{args.preset}.json")
  write_json(output, {
      "benchmark": "paper_table", "table": args.table, "preset": args.preset,
      "published_dataset": PUBLISHED_DATASET[args.preset], "seeds": args.seed_list,
      "readings": {r: [o for p in reading_parts(r) for o in READINGS[p].overrides]
                   for r in args.reading_list},
      "shared_overrides": shared_overrides(args), "aa_examples": args.aa_examples,
      **provenance(started), "published": published_for(args), "summary": summary,
      "ordering": orderings, "runs": results})
  print("\n" + report(args, summary, orderings, results))
  print(f"\nwrote {output}")


def cli() -> None:
  try:
    main()
  except UsageError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


if __name__ == "__main__":
  cli()
