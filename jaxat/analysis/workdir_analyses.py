"""Analyses of a trained run directory: restore it, compute, write RUN/analysis/*.{json,png}.

The functions behind `python -m jaxat.analyze` (the CLI only parses flags), importable
without defining any command-line flag.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jaxat.analysis.inverse_curve import CurveSpec, inverse_curve, plot_inverse_curve
from jaxat.analysis.universal_picture import (example_per_class, perturbation_stats,
                                              plot_universal, universal_perturbations)
from jaxat.train import keys
from jaxat.train.restore import load_run_config, load_trained_model


def analysis_dir(workdir: str) -> str:
  """RUN/analysis, created if needed."""
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
  """Computes and writes the inverse curve; returns (json path, png path, curve dict).
  eps_max None = the run's eval.eps."""
  if n_examples < 0:
    raise ValueError(f"n_examples must be >= 0 (0 = all), got {n_examples}")
  # Checked before the (slow) restore; a missing eps_max is checked once it is known.
  CurveSpec(eps_max=8 / 255 if eps_max is None else float(eps_max), num_points=num_points,
            num_steps=num_steps, step_ratio=step_ratio).validate()
  trained = load_trained_model(workdir, checkpoint, weights)
  spec = CurveSpec(eps_max=float(trained.config.eval.eps if eps_max is None else eps_max),
                   num_points=num_points, num_steps=num_steps, step_ratio=step_ratio)
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
  out = analysis_dir(workdir)
  json_path, png_path = os.path.join(out, "inverse_curve.json"), os.path.join(out, "inverse_curve.png")
  _write_json(json_path, curve)
  plot_inverse_curve(curve, png_path, title=f"{curve['method']} on {curve['dataset']} "
                                            f"(step {trained.step}, {len(labels)} test images)")
  return json_path, png_path, curve


def run_universal_perturbations(workdir: str, checkpoint: str = "last"
                                ) -> tuple[str, str, dict[str, Any]]:
  """Renders z per class; returns (json path, png path, summary dict)."""
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
  out = analysis_dir(workdir)
  json_path = os.path.join(out, "universal_perturbations.json")
  png_path = os.path.join(out, "universal_perturbations.png")
  _write_json(json_path, summary)
  plot_universal(universal, eps, examples, class_names, png_path,
                 title=f"class-wise universal inverse perturbations, {config.method.name} "
                       f"(ε' = {eps * 255:g}/255, step {trained.step})")
  return json_path, png_path, summary


def run_strategy(workdir: str) -> tuple[str, str, dict[str, Any]]:
  """The strategy analysis (jaxat/analysis/strategy.py) of the run in `workdir`: reads its
  metrics.jsonl and the option labels of its method (Method.count_metric_labels, the method
  rebuilt from config.json); writes RUN/analysis/strategy.{json,png}."""
  from jaxat.analysis.strategy import plot_strategy, strategy_summary
  from jaxat.methods.registry import create_method

  config = load_run_config(workdir)
  labels = create_method(config.method).count_metric_labels()
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no metrics.jsonl in {workdir!r}")
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  summary = strategy_summary(records, labels)
  payload = {"workdir": os.path.abspath(workdir), "method": config.method.name,
             "metrics": summary}
  out = analysis_dir(workdir)
  json_path, png_path = os.path.join(out, "strategy.json"), os.path.join(out, "strategy.png")
  _write_json(json_path, payload)
  plot_strategy(summary, png_path, title=f"{config.method.name}: chosen attack options")
  return json_path, png_path, payload
