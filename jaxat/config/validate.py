"""Validation of a whole config before anything is compiled or written.

Each error names the offending field, its value and the valid choices.
"""

from __future__ import annotations

import math

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


def number_in(value, field: str, low: float, high: float = math.inf, *,
              low_open: bool = False, high_open: bool = False, note: str = "") -> None:
  """Refuses a value that is not a finite real number in the interval (`low`/`high` with
  open or closed ends), naming the field, the value and the interval. NaN and ±inf never
  pass: a bare `value < 0` check lets NaN through, and NaN weight decay trains as none."""
  ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high))
  if not ok:
    interval = (("(" if low_open else "[") + f"{low:g}, "
                + ("inf)" if high == math.inf else f"{high:g}" + (")" if high_open else "]")))
    raise ValueError(f"{field}={value!r} is invalid: it must be a finite number in {interval}"
                     + (f" ({note})" if note else ""))


def _non_finite_numbers(tree, prefix: str = ""):
  """(dotted field, value) of every NaN or infinite float, tuples included."""
  for key, value in tree.items():
    field = f"{prefix}{key}"
    if hasattr(value, "items"):
      yield from _non_finite_numbers(value, field + ".")
    else:
      for item in (value if isinstance(value, (tuple, list)) else (value,)):
        if isinstance(item, float) and not math.isfinite(item):
          yield field, value


def validate_guard_config(cfg: ml_collections.ConfigDict) -> None:
  """`cfg` is `config.train` (the catastrophic-overfitting guard,
  jaxat/train/overfitting_guard.py)."""
  if cfg.overfitting_guard not in GUARD_MODES:
    raise ValueError(f"unknown train.overfitting_guard {cfg.overfitting_guard!r}; valid "
                     f"choices: {', '.join(GUARD_MODES)}")
  for field in ("guard_examples", "guard_pgd_steps"):
    _positive_int(cfg[field], f"train.{field}")
  number_in(cfg.guard_drop, "train.guard_drop", 0.0, 1.0, low_open=True,
            note="an accuracy drop: 0.2 = 20 points")
  number_in(cfg.guard_gap, "train.guard_gap", 0.0, 1.0, low_open=True,
            note="an accuracy gap: 0.1 = 10 points; 1 turns the gap rule off")


PLACEMENTS = ("device", "host")


def input_placement(dataset: ml_collections.ConfigDict) -> str:
  """dataset.placement; 'device' for a config.json written before the field existed."""
  return dataset.get("placement", "device")


def extra_settings(dataset: ml_collections.ConfigDict) -> tuple[str, float]:
  """(dataset.extra.path, dataset.extra.fraction); ('', 0.0) when the section is absent (a
  config.json of a run without extra data)."""
  extra = dataset.get("extra")
  if extra is None:
    return "", 0.0
  return extra.get("path", ""), extra.get("fraction", 0.0)


def validate_input_placement(c: ml_collections.ConfigDict, num_devices: int) -> None:
  """dataset.placement and dataset.extra (docs/scaling.md#host-streamed-input-and-extra-data)."""
  from jaxat.data.extra_arrays import extra_per_batch
  placement = input_placement(c.dataset)
  if placement not in PLACEMENTS:
    raise ValueError(f"unknown dataset.placement {placement!r}; valid choices: "
                     f"{', '.join(PLACEMENTS)}")
  path, fraction = extra_settings(c.dataset)
  if not isinstance(path, str):
    raise ValueError(f"dataset.extra.path must be a path (a string), got {path!r}")
  number_in(fraction, "dataset.extra.fraction", 0.0, 1.0, high_open=True,
            note="share of each batch from dataset.extra.path; 0 = none")
  if not path:
    if fraction:
      raise ValueError(f"dataset.extra.fraction={fraction!r} needs dataset.extra.path (an "
                       "uncompressed .npz of extra images and labels); set it, or fraction=0")
    return
  if placement != "host":
    raise ValueError(f"dataset.extra.path is set but dataset.placement={placement!r}: extra "
                     "data is gathered on the host; set dataset.placement='host'")
  extra = extra_per_batch(fraction, c.batch_size)
  if extra == 0:
    raise ValueError(f"dataset.extra.fraction={fraction!r} puts no extra example into a batch "
                     f"of {c.batch_size} (round(fraction x batch_size) = 0); raise it, or "
                     "unset dataset.extra.path")
  if extra % num_devices:
    low = (extra // num_devices) * num_devices
    high = low + num_devices
    choices = ", ".join(f"{v}/{c.batch_size}" for v in (low, high) if 0 < v < c.batch_size)
    raise ValueError(f"dataset.extra.fraction={fraction!r} gives {extra} extra examples per "
                     f"batch of {c.batch_size}, not a multiple of the device count "
                     f"{num_devices}; choose a fraction giving a multiple, e.g. {choices}")


def validate_config(c: ml_collections.ConfigDict, num_devices: int) -> None:
  """Checks every field that does not need the dataset. `num_devices` is the number of
  devices the batch is sharded over."""
  # Local import: the model registry is its own module with its own validation.
  from jaxat.models.registry import validate_model_config

  # No field of any method has a use for NaN or infinity; refusing them here means no
  # per-field `value < 0` check can let one through.
  for field, value in _non_finite_numbers(c):
    raise ValueError(f"{field}={value!r} is invalid: every number in the config must be finite")

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
  validate_input_placement(c, num_devices)
  if c.augment.crop_padding < 0:
    raise ValueError(f"augment.crop_padding must be >= 0, got {c.augment.crop_padding}")
  if c.augment.padding_mode not in ("zero", "reflect"):
    raise ValueError(f"unknown augment.padding_mode {c.augment.padding_mode!r}; valid choices: zero, reflect")
  validate_model_config(c.model)
  validate_guard_config(c.train)

  o = c.optimizer
  number_in(o.momentum, "optimizer.momentum", 0.0, 1.0, high_open=True)
  if o.nesterov and o.momentum == 0.0:
    raise ValueError("optimizer.nesterov=True needs optimizer.momentum > 0")
  number_in(o.weight_decay, "optimizer.weight_decay", 0.0, note="0 = none")
  number_in(o.grad_clip_norm, "optimizer.grad_clip_norm", 0.0, note="0 = off")

  s = c.schedule
  if s.name not in SCHEDULES:
    raise ValueError(f"unknown schedule.name {s.name!r}; valid choices: {', '.join(SCHEDULES)}")
  number_in(s.lr_max, "schedule.lr_max", 0.0, low_open=True)
  # Every schedule field is checked, whichever schedule uses it: a nonsense value stays
  # an error even where it is inert, so config.json never records one.
  bounds = tuple(s.boundaries)
  for bound in bounds:
    number_in(bound, "schedule.boundaries", 0.0, 1.0, low_open=True, note="fractions of training")
  if list(bounds) != sorted(bounds):
    raise ValueError(f"schedule.boundaries must be increasing fractions of training in (0, 1], "
                     f"got {bounds}")
  number_in(s.decay_factor, "schedule.decay_factor", 0.0, 1.0, low_open=True,
            note="piecewise/multistep multiply the learning rate by it at each boundary")
  number_in(s.pct_start, "schedule.pct_start", 0.0, 1.0, low_open=True, high_open=True)
  number_in(s.div_factor, "schedule.div_factor", 1.0,
            note="onecycle starts at lr_max / div_factor")
  number_in(s.final_div_factor, "schedule.final_div_factor", 1.0,
            note="onecycle ends at lr_max / (div_factor * final_div_factor)")
  if not isinstance(s.cycle_momentum, bool):
    raise ValueError(f"schedule.cycle_momentum must be True or False, got {s.cycle_momentum!r}")
  if s.cycle_momentum and s.name != "onecycle":
    raise ValueError(f"schedule.cycle_momentum=True needs schedule.name='onecycle', got "
                     f"{s.name!r}; valid choices: cycle_momentum=False, or name='onecycle'")
  number_in(s.base_momentum, "schedule.base_momentum", 0.0, 1.0, high_open=True)
  number_in(s.max_momentum, "schedule.max_momentum", 0.0, 1.0, high_open=True)
  if s.cycle_momentum:
    if s.base_momentum > s.max_momentum:
      raise ValueError(f"schedule.base_momentum={s.base_momentum!r} and schedule.max_momentum="
                       f"{s.max_momentum!r} must satisfy 0 <= base <= max < 1")
  if s.cycle_momentum and o.momentum == 0.0:
    raise ValueError("schedule.cycle_momentum=True needs an SGD with momentum "
                     "(optimizer.momentum > 0, which the cycle then replaces)")
  number_in(c.ema.decay, "ema.decay", 0.0, 1.0, high_open=True, note="0 = off")

  get_method_class(c.method.name).validate(c.method)

  e = c.eval
  _positive_int(e.every_epochs, "eval.every_epochs")
  _positive_int(e.pgd_steps, "eval.pgd_steps")
  _non_negative_int(e.num_test_examples, "eval.num_test_examples")
  number_in(e.eps, "eval.eps", 0.0, 1.0, note="pixel units: 8/255 = 0.0314")
  number_in(e.step_size, "eval.step_size", 0.0, 1.0, note="pixel units: 2/255 = 0.0078")
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
