"""Analyses of a trained run (UIAT paper, Figures 1, 4 and 6).

  python -m jaxat.analyze inverse_curve --workdir=RUN [--eps_max=8/255] [--num_points=9]
      [--n_examples=N] [--pgd_steps=20] [--step_ratio=0.25] [--checkpoint=last|best]
      [--weights=raw|ema] [--seed=0]
    Accuracy under PGD of signed radius ε from −eps_max (inverse adversaries) to +eps_max
    for the most- and least-confident halves of the test set (jaxat/analysis/inverse_curve.py).
    Writes RUN/analysis/inverse_curve.json and RUN/analysis/inverse_curve.png.
    eps_max defaults to the run's eval.eps (8/255 on CIFAR, 16/255 on digits).

  python -m jaxat.analyze universal_perturbations --workdir=RUN [--checkpoint=last|best]
    The class-wise universal inverse perturbations z of a uiat/uiat_oneoff run, with one
    test image per class and its inverse adversary (jaxat/analysis/universal_picture.py).
    Writes RUN/analysis/universal_perturbations.{json,png}; fails for runs without z.

  python -m jaxat.analyze strategy --workdir=RUN
    What an adaptive attack strategy (ECAS, LAS-AT) chose: the distribution of its count
    metrics (counts/eps, counts/steps, ...) per epoch, overall and per class, and the mean
    chosen value per class (jaxat/analysis/strategy.py, docs/ecas.md#strategy-analysis).
    Writes RUN/analysis/strategy.{json,png}; fails for runs without count metrics.

The work is done by jaxat/analysis/workdir_analyses.py (importable without these flags).
"""

from __future__ import annotations

from absl import flags

from jaxat.cli_args import run_entry_point
from jaxat.errors import UsageError, usage_errors

COMMANDS = ("inverse_curve", "universal_perturbations", "strategy")

_WORKDIR = flags.DEFINE_string("workdir", None, "A jaxat run directory (holds config.json and checkpoints/).")
_EPS_MAX = flags.DEFINE_string("eps_max", "", "Largest |ε| (e.g. 8/255); empty = the run's eval.eps.")
_NUM_POINTS = flags.DEFINE_integer("num_points", 9, "Number of ε values from −eps_max to +eps_max.")
_N_EXAMPLES = flags.DEFINE_integer("n_examples", 0, "Use the first N test examples (0 = all).")
_PGD_STEPS = flags.DEFINE_integer("pgd_steps", 20, "PGD steps per ε (the paper's Fig. 4 uses 20).")
_STEP_RATIO = flags.DEFINE_float("step_ratio", 0.25, "PGD step size as a fraction of |ε|.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "last", ["last", "best"], "Which checkpoint to analyse.")
_WEIGHTS = flags.DEFINE_enum("weights", "raw", ["raw", "ema"], "Raw or EMA weights.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the attacks' random starts.")


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise UsageError(f"give one command; valid choices: {', '.join(COMMANDS)} "
                     f"(got {argv[1:]})")
  if not _WORKDIR.value:
    raise UsageError("--workdir is required")
  with usage_errors():   # the analyses check their arguments and the run before any work
    _analyse(argv[1])


def _analyse(command: str) -> None:
  from jaxat.analysis.workdir_analyses import (run_inverse_curve, run_strategy,
                                                run_universal_perturbations)

  if command == "inverse_curve":
    from jaxat.cli_args import parse_fraction
    eps_max = parse_fraction(_EPS_MAX.value) if _EPS_MAX.value else None
    json_path, png_path, curve = run_inverse_curve(
        _WORKDIR.value, eps_max, _NUM_POINTS.value, _N_EXAMPLES.value, _PGD_STEPS.value,
        _STEP_RATIO.value, _CHECKPOINT.value, _WEIGHTS.value, _SEED.value)
    acc = curve["accuracy"]
    for e, top, bottom in zip(curve["eps_255"], acc["most_confident"], acc["least_confident"]):
      print(f"eps {e:+8.3f}/255  most confident {100 * top:6.2f}%  least confident {100 * bottom:6.2f}%")
  elif command == "strategy":
    json_path, png_path, _ = run_strategy(_WORKDIR.value)
  else:
    json_path, png_path, _ = run_universal_perturbations(_WORKDIR.value, _CHECKPOINT.value)
  print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
  run_entry_point(main, positional=True)
