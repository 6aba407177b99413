"""Validation of a whole config before anything is compiled or written.

Each error names the offending field, its value and the valid choices.
"""

from __future__ import annotations

import ml_collections

from jaxat.methods.registry import get_method_class
from jaxat.models.forward import validate_bn_mode

SCHEDULES = ("constant", "piecewise", "multistep", "onecycle", "cyclic")
PROGRESS_MODES = ("auto", "bar", "plain", "none")
GUARD_MODES = ("off", "warn", "stop")
# Computed by the training loop's own evaluator (pgd20 with the run's eval.step_size); any
# other item of eval.final_attacks goes through the evaluation suite (jaxat/eval/robustness.py).
FINAL_ATTACKS = ("clean", "pgd20")


def _positive_int(value, field: str) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{field} must be a positive integer, got {value!r}")


def _non_negative_int(value, field: str) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise ValueError(f"{field} must be a non-negative integer, got {value!r}")


def validate_guard_config(cfg: ml_collections.ConfigDict) -> None:
  """`cfg` is `config.train` (the catastrophic-overfitting guard,
  jaxat/train/overfitting_guard.py)."""
  if cfg.overfitting_guard not in GUARD_MODES:
    raise ValueError(f"unknown train.overfitting_guard {cfg.overfitting_guard!r}; valid "
                     f"choices: {', '.join(GUARD_MODES)}")
  for field in ("guard_examples", "guard_pgd_steps"):
    _positive_int(cfg[field], f"train.{field}")
  if not 0.0 < cfg.guard_drop <= 1.0:
    raise ValueError(f"train.guard_drop is an accuracy drop in (0, 1] (0.2 = 20 points), got "
                     f"{cfg.guard_drop!r}")


def validate_config(c: ml_collections.ConfigDict, num_devices: int) -> None:
  """Checks every field that does not need the dataset. `num_devices` is the number of
  devices the batch is sharded over."""
  # Local import: the model registry is its own module with its own validation.
  from jaxat.models.registry import validate_model_config

  _non_negative_int(c.seed, "seed")
  _positive_int(c.num_epochs, "num_epochs")
  _positive_int(c.batch_size, "batch_size")
  _positive_int(c.eval_batch_size, "eval_batch_size")
  if c.batch_size % num_devices:
    raise ValueError(f"batch_size={c.batch_size} is not divisible by the device count "
                     f"{num_devices}; choose a multiple of {num_devices} or set num_devices")
  if c.eval_batch_size % num_devices:
    raise ValueError(f"eval_batch_size={c.eval_batch_size} is not divisible by the device "
                     f"count {num_devices}; choose a multiple of {num_devices}")
  for field in ("val_size", "max_train", "max_test"):
    _non_negative_int(c.dataset[field], f"dataset.{field}")
  if c.augment.crop_padding < 0:
    raise ValueError(f"augment.crop_padding must be >= 0, got {c.augment.crop_padding}")
  if c.augment.padding_mode not in ("zero", "reflect"):
    raise ValueError(f"unknown augment.padding_mode {c.augment.padding_mode!r}; valid choices: zero, reflect")
  validate_model_config(c.model)
  validate_guard_config(c.train)

  o = c.optimizer
  if not 0.0 <= o.momentum < 1.0:
    raise ValueError(f"optimizer.momentum must be in [0, 1), got {o.momentum}")
  if o.nesterov and o.momentum == 0.0:
    raise ValueError("optimizer.nesterov=True needs optimizer.momentum > 0")
  if o.weight_decay < 0:
    raise ValueError(f"optimizer.weight_decay must be >= 0, got {o.weight_decay}")
  if o.grad_clip_norm < 0:
    raise ValueError(f"optimizer.grad_clip_norm must be >= 0 (0 = off), got {o.grad_clip_norm}")

  s = c.schedule
  if s.name not in SCHEDULES:
    raise ValueError(f"unknown schedule.name {s.name!r}; valid choices: {', '.join(SCHEDULES)}")
  if not s.lr_max > 0:
    raise ValueError(f"schedule.lr_max must be > 0, got {s.lr_max}")
  if s.name in ("piecewise", "multistep"):
    bounds = tuple(s.boundaries)
    if any(not 0.0 < b <= 1.0 for b in bounds) or list(bounds) != sorted(bounds):
      raise ValueError(f"schedule.boundaries must be increasing fractions of training in (0, 1], "
                       f"got {bounds}")
  if s.name in ("onecycle", "cyclic") and not 0.0 < s.pct_start < 1.0:
    raise ValueError(f"schedule.pct_start must be in (0, 1), got {s.pct_start}")
  if not isinstance(s.cycle_momentum, bool):
    raise ValueError(f"schedule.cycle_momentum must be True or False, got {s.cycle_momentum!r}")
  if s.cycle_momentum and s.name != "onecycle":
    raise ValueError(f"schedule.cycle_momentum=True needs schedule.name='onecycle', got "
                     f"{s.name!r}; valid choices: cycle_momentum=False, or name='onecycle'")
  if s.cycle_momentum and not 0.0 <= s.base_momentum <= s.max_momentum < 1.0:
    raise ValueError(f"schedule.base_momentum={s.base_momentum!r} and schedule.max_momentum="
                     f"{s.max_momentum!r} must satisfy 0 <= base <= max < 1")
  if s.cycle_momentum and o.momentum == 0.0:
    raise ValueError("schedule.cycle_momentum=True needs an SGD with momentum "
                     "(optimizer.momentum > 0, which the cycle then replaces)")
  if not 0.0 <= c.ema.decay < 1.0:
    raise ValueError(f"ema.decay must be in [0, 1) (0 = off), got {c.ema.decay}")

  get_method_class(c.method.name).validate(c.method)

  e = c.eval
  _positive_int(e.every_epochs, "eval.every_epochs")
  _positive_int(e.pgd_steps, "eval.pgd_steps")
  _non_negative_int(e.num_test_examples, "eval.num_test_examples")
  if not e.eps >= 0 or e.eps > 1:
    raise ValueError(f"eval.eps must be in [0, 1] pixel units (8/255 = 0.0314), got {e.eps}")
  if not e.step_size >= 0:
    raise ValueError(f"eval.step_size must be >= 0, got {e.step_size}")
  validate_bn_mode(e.bn_mode, "eval.bn_mode")
  attacks = [a.strip() for a in e.final_attacks.split(",") if a.strip()]
  suite_items = [a for a in attacks if a not in FINAL_ATTACKS]
  if suite_items or not attacks:
    from jaxat.eval.robustness import parse_items  # Imported on use: the attacks are large.
    try:
      parse_items(suite_items)   # names the valid items (and refuses an empty list)
    except ValueError as error:
      raise ValueError(f"eval.final_attacks={e.final_attacks!r}: {error}") from None
  _positive_int(c.checkpoint.keep, "checkpoint.keep")
  if c.log.progress not in PROGRESS_MODES:
    raise ValueError(f"unknown log.progress {c.log.progress!r}; valid choices: {', '.join(PROGRESS_MODES)}")
  _non_negative_int(c.num_devices, "num_devices")
