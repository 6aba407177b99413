"""Every registered method with the same model, data and budget, over several seeds.

  python benchmarks/compare_methods.py --preset=digits --seeds=0,1,2 \
      [--methods=standard,pgd_at,...] [--num_epochs=N] [--model=small_cnn] \
      [--channels=32,64] [--aa_examples=N] [--root=runs/compare] [--output=...]

A method is a config file of configs/, optionally with that config's variant tokens after a
colon, joined by `+`: `ancra:mart` runs `configs/ancra.py:<preset>,mart` and
`las_at:trades` runs `configs/las_at.py:<preset>,trades` (the row is named as written).

For each method and seed this runs `python -m jaxat.main --config=configs/<method>.py:<preset>`
with the same model (`--model`, `--channels`), number of epochs and batch size, so only
the method (its loss, attack and optimiser recipe) differs; then
`python -m jaxat.evaluate --attacks=clean,pgd20,aa` (or `--attacks`) on the first
`--aa_examples` test images of the last checkpoint (raw weights, the preset's eval.eps). Writes per run and as
mean ± std over seeds: clean, PGD-20 and AutoAttack accuracy, seconds per training epoch
(from metrics.jsonl, compilation excluded, evaluation excluded) and the AA seconds, as
JSON with the machine described (default benchmarks/results/compare_methods_<preset>.json),
plus a Markdown table on stdout. Finished runs and evaluations are reused when the script
is rerun with the same --root (runs resume, evaluations are skipped when their JSON exists).

Reverse-attention (ANCRA) runs are evaluated adaptively (`jaxat.evaluate`'s default for
them): their clean/PGD-20/AA columns are the adaptive numbers, and `authors_pgd20` /
`authors_aa` (a second table) the authors' protocol on the same runs. Their adaptive AA
runs AutoAttack up to 13 times (authors, straight-through, each of 10 label gates,
auxiliary head; a label gate attacks only the points its gated model gets right), up to
13× the AA time of a plain model; `--attacks=clean,pgd20` leaves the AA columns out ("—").

HAT trains its standard helper first (in <run>/helper), as `configs/hat.py` does; its
seconds per epoch count the HAT epochs only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from run_helpers import (evaluate_command, is_trained, provenance, run,  # noqa: E402
                         seconds_per_epoch, train_command, write_json)

from jaxat.reports import tables  # noqa: E402

DEFAULT_METHODS = ("standard", "pgd_at", "trades", "mart", "awp", "hat", "uiat", "uiat_oneoff",
                   "iat")


def config_argument(method: str, preset: str) -> str:
  """`ancra:mart+smoke` -> `configs/ancra.py:<preset>,mart,smoke`; `pgd_at` ->
  `configs/pgd_at.py:<preset>`."""
  config_file, _, variant = method.partition(":")
  tokens = [preset, *(t for t in variant.split("+") if t)]
  return f"configs/{config_file}.py:{','.join(tokens)}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="digits", help="dataset token of the configs")
  parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--num_epochs", type=int, default=0, help="0 = the preset's")
  parser.add_argument("--batch_size", type=int, default=0, help="0 = the preset's")
  parser.add_argument("--model", default="small_cnn")
  parser.add_argument("--channels", default="", help="small_cnn channels, e.g. 32,64")
  parser.add_argument("--aa_examples", type=int, default=0, help="0 = the whole test split")
  parser.add_argument("--eval_batch_size", type=int, default=500)
  parser.add_argument("--attacks", default="clean,pgd20,aa",
                      help="evaluation items: clean,pgd20 and optionally aa")
  parser.add_argument("--extra", default="", help="more --config.* overrides, space separated")
  parser.add_argument("--root", default=os.path.join(REPO_ROOT, "runs", "compare"))
  parser.add_argument("--output", default="")
  args = parser.parse_args()

  methods = [m.strip() for m in args.methods.split(",") if m.strip()]
  seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  for method in methods:
    config_file = method.split(":")[0]
    if not os.path.exists(os.path.join(REPO_ROOT, "configs", f"{config_file}.py")):
      raise ValueError(f"--methods: no configs/{config_file}.py for {method!r}; valid choices "
                       f"include {', '.join(DEFAULT_METHODS)} and variants such as ancra:mart")
  attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
  if attacks[:2] != ["clean", "pgd20"] or attacks[2:] not in ([], ["aa"]):
    raise ValueError(f"--attacks={args.attacks!r}; valid choices: clean,pgd20,aa or clean,pgd20")
  # The default keeps the tag of the evaluations written before --attacks existed.
  tag = "compare" if "aa" in attacks else "compare_" + "_".join(attacks)
  output = args.output or os.path.join(HERE, "results", f"compare_methods_{args.preset}.json")
  os.makedirs(args.root, exist_ok=True)

  overrides = [f"--config.model.name={args.model}", "--config.log.progress=plain",
               "--config.eval.final_attacks=clean,pgd20"]
  if args.channels:
    overrides.append(f"--config.model.channels=({args.channels})")
  if args.num_epochs:
    overrides.append(f"--config.num_epochs={args.num_epochs}")
  if args.batch_size:
    overrides.append(f"--config.batch_size={args.batch_size}")
  overrides += args.extra.split()

  runs = []
  started = time.time()
  for method in methods:
    for seed in seeds:
      workdir = os.path.join(args.root,
                             f"{args.preset}_{method.replace(':', '_').replace('+', '_')}_seed{seed}")
      log_path = workdir + ".log"
      if not is_trained(workdir):
        run(train_command(config_argument(method, args.preset), workdir, seed, overrides),
            log_path)
      eval_json = os.path.join(workdir, "eval", f"{tag}.json")
      if not os.path.exists(eval_json):
        run(evaluate_command(workdir, ",".join(attacks), args.aa_examples, args.eval_batch_size,
                             tag, seed), log_path)
      with open(eval_json) as f:
        evaluation = json.load(f)
      with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
      accuracy = evaluation["accuracy"]
      # Reverse-attention (ANCRA) runs: `accuracy` is the adaptive evaluation; the authors'
      # protocol is kept beside it (jaxat/evaluate.py, --protocol).
      authors = evaluation.get("authors_accuracy")
      runs.append({"method": method, "seed": seed, "workdir": workdir,
                   "clean": accuracy["clean"], "pgd20": accuracy["pgd20"],
                   "aa": accuracy.get("aa"),
                   "protocol": evaluation.get("protocol", "standard"),
                   **({"authors_pgd20": authors["pgd20"], "authors_aa": authors.get("aa")}
                      if authors else {}),
                   "seconds_per_epoch": seconds_per_epoch(workdir),
                   "aa_seconds": sum(v for k, v in evaluation["seconds"].items()
                                     if k.startswith("aa/")),
                   "num_examples": evaluation["num_examples"], "eps": evaluation["eps"],
                   "num_epochs": config["num_epochs"], "model": config["model"]})
      print(f"{method} seed {seed}: " + " ".join(f"{item} {accuracy[item]:.4f}" for item in attacks),
            flush=True)

  summary = {}
  for method in methods:
    rows = [r for r in runs if r["method"] == method]
    keys = [*attacks, "seconds_per_epoch"]
    if all("authors_pgd20" in r for r in rows):
      keys += ["authors_pgd20"] + (["authors_aa"] if "aa" in attacks else [])
    summary[method] = {key: tables.mean_std([r[key] for r in rows]) for key in keys}
  payload = {"benchmark": "compare_methods", "preset": args.preset, "seeds": seeds,
             "methods": methods, "overrides": overrides, **provenance(started),
             "summary": summary, "runs": runs}
  write_json(output, payload)

  first = runs[0]
  print(f"\n{args.preset}, {first['model']['name']}, {first['num_epochs']} epochs, eps "
        f"{first['eps']}, {first['num_examples']} test images, seeds {seeds} (mean ± std, %)\n")
  groups = {method: [{"accuracy": {k: r[k] for k in attacks},
                      "seconds_per_epoch": r["seconds_per_epoch"]}
                     for r in runs if r["method"] == method] for method in methods}
  print(tables.grouped_table(groups, attacks))
  adaptive = [m for m in methods if "authors_pgd20" in summary[m]]
  if adaptive:
    print("\nevaluated adaptively (the rows above); the authors' protocol of the same runs:\n")
    print(tables.grouped_table(
        {m: [{"accuracy": {k: r[f"authors_{k}"] for k in attacks if k != "clean"},
              "seconds_per_epoch": r["seconds_per_epoch"]}
             for r in runs if r["method"] == m] for m in adaptive},
        [k for k in attacks if k != "clean"]))
  print(f"\nwrote {output}")


if __name__ == "__main__":
  main()
