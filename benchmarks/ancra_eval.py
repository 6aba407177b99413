"""The two evaluations of an ANCRA run side by side (docs/ancra.md#evaluation).

  python benchmarks/ancra_eval.py --workdir=runs/ancra_digits --attacks=pgd20 \
      --out=benchmarks/results/ancra_eval_digits.json

Prints and writes accuracy per evaluation (authors, straight_through, label_enum,
adaptive) and the gradient-masking warnings of each; eps is the run's eval.eps.
"""

import argparse
import json

import numpy as np

from jaxat.eval.ancra_adaptive import AncraEvalSettings, evaluate_ancra
from jaxat.train.restore import load_trained_model


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--attacks", default="pgd20")
  parser.add_argument("--max_examples", type=int, default=0)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  trained = load_trained_model(args.workdir)
  test = trained.experiment.test
  n = args.max_examples or len(test)
  x = np.asarray(test.images[:n], np.float32) / (255.0 if test.images.dtype == np.uint8 else 1.0)
  y = np.asarray(test.labels[:n])
  settings = AncraEvalSettings(attacks=args.attacks, eps=float(trained.config.eval.eps))
  report = evaluate_ancra(trained.model, trained.params, trained.batch_stats, x, y, settings)
  result = {"workdir": args.workdir, "num_examples": n, "eps": settings.eps, **report.to_json()}
  print(json.dumps(result, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
