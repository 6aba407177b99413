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
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import app, flags

COMMANDS = ("inverse_curve", "universal_perturbations")

_WORKDIR = flags.DEFINE_string("workdir", None, "A jaxat run directory (holds config.json and checkpoints/).")
_EPS_MAX = flags.DEFINE_string("eps_max", "", "Largest |ε| (e.g. 8/255); empty = the run's eval.eps.")
_NUM_POINTS = flags.DEFINE_integer("num_points", 9, "Number of ε values from −eps_max to +eps_max.")
_N_EXAMPLES = flags.DEFINE_integer("n_examples", 0, "Use the first N test examples (0 = all).")
_PGD_STEPS = flags.DEFINE_integer("pgd_steps", 20, "PGD steps per ε (the paper's Fig. 4 uses 20).")
_STEP_RATIO = flags.DEFINE_float("step_ratio", 0.25, "PGD step size as a fraction of |ε|.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "last", ["last", "best"], "Which checkpoint to analyse.")
_WEIGHTS = flags.DEFINE_enum("weights", "raw", ["raw", "ema"], "Raw or EMA weights.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the attacks' random starts.")


def _analysis_dir(workdir: str) -> str:
  path = os.path.join(workdir, "analysis")
  os.makedirs(path, exist_ok=True)
  return path


def _write_json(path: str, payload: dict[str, Any]) -> None:
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
    f.write("\n")


def run_inverse_curve(workdir: str, eps_max: float | None = None, num_points: int = 9,
                      n_examples: int = 0, num_steps: int = 20, step_ratio: float = 0.25,
                      checkpoint: str = "last", weights: str = "raw", seed: int = 0
                      ) -> tuple[str, str, dict[str, Any]]:
  """Computes and writes the inverse curve; returns (json path, png path, curve dict)."""
  from jaxat.analysis.inverse_curve import CurveSpec, inverse_curve, plot_inverse_curve
  from jaxat.train import keys
  from jaxat.train.restore import load_trained_model

  if n_examples < 0:
    raise ValueError(f"n_examples must be >= 0 (0 = all), got {n_examples}")
  spec = CurveSpec(eps_max=0.0 if eps_max is None else float(eps_max), num_points=num_points,
                   num_steps=num_steps, step_ratio=step_ratio)
  if eps_max is not None:
    spec.validate()  # before the (slow) restore
  trained = load_trained_model(workdir, checkpoint, weights)
  if eps_max is None:
    spec = CurveSpec(eps_max=float(trained.config.eval.eps), num_points=num_points,
                     num_steps=num_steps, step_ratio=step_ratio)
  test = trained.experiment.test
  images, labels = test.images, test.labels
  if n_examples:
    images, labels = images[:n_examples], labels[:n_examples]
  curve = inverse_curve(trained.model, trained.params, trained.batch_stats, images, labels, spec,
                        keys.stream(seed, keys.FINAL_EVAL),
                        batch_size=int(trained.config.eval_batch_size))
  curve.update(workdir=os.path.abspath(workdir), method=trained.config.method.name,
               dataset=trained.experiment.splits.name, checkpoint=checkpoint, weights=weights,
               step=trained.step, seed=seed)
  out = _analysis_dir(workdir)
  json_path, png_path = os.path.join(out, "inverse_curve.json"), os.path.join(out, "inverse_curve.png")
  _write_json(json_path, curve)
  plot_inverse_curve(curve, png_path, title=f"{curve['method']} on {curve['dataset']} "
                                            f"(step {trained.step}, {len(labels)} test images)")
  return json_path, png_path, curve


def run_universal_perturbations(workdir: str, checkpoint: str = "last"
                                ) -> tuple[str, str, dict[str, Any]]:
  """Renders z per class; returns (json path, png path, summary dict)."""
  from jaxat.analysis.universal_picture import (example_per_class, perturbation_stats,
                                                plot_universal, universal_perturbations)
  from jaxat.train.restore import load_run_config, load_trained_model

  config = load_run_config(workdir)
  if config.method.get("generation") != "universal":
    # Fail before restoring: the state of such a run cannot hold z.
    universal_perturbations({}, config.method.name)
  trained = load_trained_model(workdir, checkpoint)
  universal = universal_perturbations(trained.state.method_state, config.method.name)
  eps = float(config.method.inverse.eps)
  splits = trained.experiment.splits
  class_names = list(splits.class_names)
  test = trained.experiment.test
  examples = example_per_class(test.images, test.labels, universal.shape[0])
  summary = {"workdir": os.path.abspath(workdir), "method": config.method.name,
             "checkpoint": checkpoint, "step": trained.step, "eps": eps,
             "eps_255": round(eps * 255, 6), "shape": list(universal.shape),
             "scaling": "shown as 0.5 + z / (2 eps): mid-grey = 0, black = -eps, white = +eps",
             "classes": perturbation_stats(universal, eps, class_names)}
  out = _analysis_dir(workdir)
  json_path = os.path.join(out, "universal_perturbations.json")
  png_path = os.path.join(out, "universal_perturbations.png")
  _write_json(json_path, summary)
  plot_universal(universal, eps, examples, class_names, png_path,
                 title=f"class-wise universal inverse perturbations, {config.method.name} "
                       f"(ε' = {eps * 255:g}/255, step {trained.step})")
  return json_path, png_path, summary


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"give one command; valid choices: {', '.join(COMMANDS)} "
                         f"(got {argv[1:]})")
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required")
  if argv[1] == "inverse_curve":
    from jaxat.cli_args import parse_fraction
    eps_max = parse_fraction(_EPS_MAX.value) if _EPS_MAX.value else None
    json_path, png_path, curve = run_inverse_curve(
        _WORKDIR.value, eps_max, _NUM_POINTS.value, _N_EXAMPLES.value, _PGD_STEPS.value,
        _STEP_RATIO.value, _CHECKPOINT.value, _WEIGHTS.value, _SEED.value)
    acc = curve["accuracy"]
    for e, top, bottom in zip(curve["eps_255"], acc["most_confident"], acc["least_confident"]):
      print(f"eps {e:+8.3f}/255  most confident {100 * top:6.2f}%  least confident {100 * bottom:6.2f}%")
  else:
    json_path, png_path, _ = run_universal_perturbations(_WORKDIR.value, _CHECKPOINT.value)
  print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
  app.run(main)
