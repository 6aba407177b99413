"""Restoring a trained classifier from a jaxat workdir (evaluation CLI, HAT's helper model).

`load_trained_model(workdir, checkpoint='last'|'best', weights='raw'|'ema')` rebuilds the
run's experiment from `workdir/config.json` (data, model, method), creates the state
structure and restores the chosen checkpoint into it (a damaged newest `last` step falls
back to the previous one with a warning, renaming nothing: the run directory is only read;
docs/architecture.md#run-directories-resume-and-crash-safety).

`attach_prerequisites(method, config, workdir)` restores the finished runs a method
declares with `Method.prerequisites` (HAT's helper) and hands them to the method; it never
trains (jaxat/train/train.py trains missing prerequisites first).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections

from jaxat.methods.base import Method, PrerequisiteRun, TrainedRun
from jaxat.models.forward import ModelFn
from jaxat.train import reporting
from jaxat.train.checkpoint import Checkpointer
from jaxat.train.experiment import Experiment, build_experiment, init_state
from jaxat.train.state import TrainState

CHECKPOINTS = ("last", "best")
WEIGHTS = ("raw", "ema")


def _lists_to_tuples(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _lists_to_tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_lists_to_tuples(v) for v in value)
  return value


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The locked config of the run in `workdir` (tuples restored from JSON lists)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no jaxat run in {workdir!r}: {path} does not exist (train with "
                            "python -m jaxat.main --workdir=... first)")
  config = ml_collections.ConfigDict(_lists_to_tuples(reporting.read_json(path)))
  config.lock()
  return config


@dataclasses.dataclass
class TrainedModel:
  """A restored classifier: `model(params, batch_stats, x, 'eval')` gives logits/features."""

  config: ml_collections.ConfigDict
  experiment: Experiment
  model: ModelFn
  params: Any
  batch_stats: Any
  state: TrainState
  step: int


def load_trained_model(workdir: str, checkpoint: str = "last", weights: str = "raw") -> TrainedModel:
  if checkpoint not in CHECKPOINTS:
    raise ValueError(f"unknown checkpoint {checkpoint!r}; valid choices: {', '.join(CHECKPOINTS)}")
  if weights not in WEIGHTS:
    raise ValueError(f"unknown weights {weights!r}; valid choices: {', '.join(WEIGHTS)}")
  config = load_run_config(workdir)
  if weights == "ema" and config.ema.decay <= 0:
    raise ValueError(f"weights='ema' but the run in {workdir!r} trained without EMA "
                     "(ema.decay = 0); use weights='raw'")
  exp = build_experiment(config)
  attach_prerequisites(exp.method, config, workdir)
  state_like = init_state(exp)
  checkpointer = Checkpointer(workdir, config.checkpoint.keep, read_only=True)
  try:
    step = checkpointer.latest_step() if checkpoint == "last" else checkpointer.best_step()
    if step is None:
      extra = (" (a best checkpoint exists only for runs with a validation split, "
               "dataset.val_size > 0)" if checkpoint == "best" else "")
      raise FileNotFoundError(f"no {checkpoint!r} checkpoint in {workdir}/checkpoints{extra}")
    state, _ = checkpointer.restore_state_only(checkpoint, state_like)
  finally:
    checkpointer.close()
  params, batch_stats = ((state.ema_params, state.ema_batch_stats) if weights == "ema"
                         else (state.params, state.batch_stats))
  return TrainedModel(config=config, experiment=exp, model=exp.model, params=params,
                      batch_stats=batch_stats, state=state, step=int(state.step))


def _results_clean_acc(workdir: str) -> float | None:
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    value = json.load(f).get("clean_acc")
  return None if value is None else float(value)


def restore_prerequisite(request: PrerequisiteRun) -> TrainedRun:
  """The finished run `request` names, restored; refuses a run of another method."""
  trained = load_trained_model(request.workdir, checkpoint=request.checkpoint, weights="raw")
  method = trained.config.method.name
  if request.expected_method and method != request.expected_method:
    raise ValueError(f"the {request.name} run in {request.workdir!r} was trained with method "
                     f"{method!r}; it must be a {request.expected_method!r} run")
  ctx = trained.experiment.ctx
  return TrainedRun(workdir=request.workdir, config=trained.config, model=trained.model,
                    params=trained.params, batch_stats=trained.batch_stats,
                    num_classes=ctx.num_classes, image_shape=tuple(ctx.image_shape),
                    step=trained.step, clean_acc=_results_clean_acc(request.workdir))


def attach_prerequisites(method: Method, config: ml_collections.ConfigDict, workdir: str) -> None:
  """Restores every prerequisite run of `method` and attaches them (no training)."""
  requests = method.prerequisites(config, workdir)
  if requests:
    method.attach_prerequisites({r.name: restore_prerequisite(r) for r in requests})
