"""Robustness of any classifier on any arrays: the Python API behind `jaxat.evaluate`.

    report = evaluate_robustness((model.apply, variables), x, y, attacks="clean,pgd20,aa",
                                 eps=8/255)
    report.accuracy        # {'clean': 0.83, 'pgd20': 0.51, 'aa': 0.47}
    report.to_json()       # JSON-ready dict (fractions, exact eps, settings, seconds, ...)

The model is a `logits_fn(x) -> logits`, an `(apply_fn, variables)` pair with
`apply_fn(variables, x) -> logits` (a tuple output such as jaxat's (logits, features)
counts by its first element; bind `train=False` or the BatchNorm mode yourself, e.g.
`functools.partial(module.apply, train=False)`), or an `autoattack.Classifier`. Use a
function object that stays the same between calls (not a fresh lambda per call) to reuse
its compilations. x is (N,H,W,C) in [0,1] (uint8 0..255 is scaled), y (N,) int.

Items: `attacks` is a comma list (or a sequence) of items. Each item is evaluated on its
own, on all clean-correct points: a single attack ('pgd20', 'cw20', 'fgsm', 'apgd-ce',
...) or an ensemble ('aa' = apgd-ce+apgd-t+fab-t+square, or 'a+b+...') in which each
attack only runs on the points still robust and the worst case per example is kept.
'clean' is always computed. Accuracies are fractions of all N examples; a point counts as
robust to an item only if it is clean-correct and no attack of the item fooled it.
`worst_case` is the point-wise worst case over every item.

Several radii: `evaluate_robustness_curve` runs ascending eps values and starts each from
the previous one's adversarial points (a point fooled inside a smaller ball is fooled
inside the larger one), so robust accuracy never rises with eps.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import platform
import sys
import time
from fractions import Fraction
from typing import Any, Callable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxat import xla_cpu
from jaxat.attacks import checks as checks_lib
from jaxat.attacks import registry
from jaxat.attacks.autoattack import (ChunkEvent, Classifier, EnsembleState, NORMS,
                                      check_traceable, predict_logits, run_ensemble)
from jaxat.models.forward import ModelFn

DEFAULT_ATTACKS = "clean,pgd20,cw20,aa"
REQUIRED_CLASSES = {"apgd-t": 4, "apgd": 2, "fab-t": 2, "square": 2, "pgd": 2, "clean": 1}


# --- the model ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _FirstOutput:
  """apply_fn(variables, x) whose first output (if a tuple) is the logits."""

  apply_fn: Callable

  def __call__(self, variables, x):
    out = self.apply_fn(variables, x)
    return out[0] if isinstance(out, (tuple, list)) else out


@dataclasses.dataclass(frozen=True)
class _Stateless:
  """A plain logits_fn(x) seen as apply_fn(variables, x) with no variables."""

  logits_fn: Callable

  def __call__(self, variables, x):
    del variables
    out = self.logits_fn(x)
    return out[0] if isinstance(out, (tuple, list)) else out


@dataclasses.dataclass(frozen=True)
class _JaxatLogits:
  """A jaxat ModelFn in a fixed BatchNorm mode; variables = (params, batch_stats)."""

  model: ModelFn
  bn_mode: str

  def __call__(self, variables, x):
    params, batch_stats = variables
    return self.model.logits(params, batch_stats, x, self.bn_mode)


def jaxat_classifier(model: ModelFn, params: Any, batch_stats: Any,
                     bn_mode: str = "eval") -> Classifier:
  """A jaxat model as a Classifier. bn_mode 'eval' (running statistics, the default for
  evaluation) or 'batch_stats' (statistics of each attacked batch: outputs then depend on
  the batch, and the randomness check warns)."""
  if bn_mode not in ("eval", "batch_stats"):
    raise ValueError(f"unknown bn_mode {bn_mode!r} for evaluation; valid choices: eval, batch_stats")
  return Classifier(_JaxatLogits(model, bn_mode), (params, batch_stats))


def as_classifier(model: Any) -> Classifier:
  """A Classifier from a logits_fn, an (apply_fn, variables) pair or a Classifier."""
  if isinstance(model, Classifier):
    return model
  if isinstance(model, tuple) and len(model) == 2 and callable(model[0]):
    return Classifier(_FirstOutput(model[0]), model[1])
  if callable(model):
    return Classifier(_Stateless(model), None)
  raise ValueError(f"model must be a logits_fn(x), an (apply_fn, variables) pair or a "
                   f"Classifier, got {type(model).__name__}")


# --- items and settings ------------------------------------------------------------------


def parse_items(attacks: str | Sequence[str]) -> list[str]:
  """The evaluation items of an attack list ('clean,pgd20,aa' or a sequence), validated,
  'clean' first."""
  if isinstance(attacks, str):
    attacks = attacks.split(",")
  items = []
  for item in attacks:
    item = item.strip().replace(" ", "")
    if not item:
      continue
    for member in registry.ensemble_members(item):
      registry.attack_spec(member)  # raises on unknown names
    if item in items:
      raise ValueError(f"attack item {item!r} is listed twice")
    items.append(item)
  if not items:
    raise ValueError(f"no attack given; valid choices: {registry.VALID_NAMES_TEXT}")
  return ["clean"] + [i for i in items if i != "clean"]


def parse_eps(eps: float | str | Fraction) -> tuple[float, str]:
  """(float value, exact fraction text) of a radius: '8/255' -> (0.03137..., '8/255');
  a float is written as the nearest fraction with denominator <= 10000."""
  try:
    if isinstance(eps, (str, Fraction)):
      fraction = Fraction(eps)
    else:
      fraction = Fraction(float(eps)).limit_denominator(10000)
  except (ValueError, ZeroDivisionError, TypeError) as error:
    raise ValueError(f"eps must be a number such as 8/255 or 0.5, got {eps!r}") from error
  value = float(fraction) if isinstance(eps, (str, Fraction)) else float(eps)
  return value, str(fraction)


def versions() -> dict[str, str]:
  import flax
  import jaxlib
  from jaxat import __version__ as jaxat_version
  devices = jax.devices()
  return {"python": sys.version.split()[0], "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "flax": flax.__version__, "numpy": np.__version__, "jaxat": jaxat_version,
          "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
          "devices": f"{len(devices)} x {devices[0].device_kind}"}


# --- state and report --------------------------------------------------------------------


@dataclasses.dataclass
class EvaluationState:
  """Everything needed to continue an interrupted evaluation (host data).

  clean_correct: (N,) bool once the clean pass ran; items: item -> its ensemble state;
  finished: items completed; warnings: warnings of the checks run before the attacks.
  """

  clean_correct: np.ndarray | None = None
  clean_seconds: float = 0.0
  warnings: list[str] | None = None
  items: dict[str, EnsembleState] = dataclasses.field(default_factory=dict)
  finished: list[str] = dataclasses.field(default_factory=list)

  def to_arrays(self, x: np.ndarray) -> dict[str, np.ndarray]:
    """Flat arrays for np.savez (metadata as a JSON string under 'meta'); x (N,H,W,C) are
    the evaluated inputs (float32 in [0,1]), used to store adversarial points sparsely."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"clean_seconds": self.clean_seconds, "warnings": self.warnings,
                            "finished": self.finished, "items": {}}
    if self.clean_correct is not None:
      arrays["clean_correct"] = self.clean_correct
    for position, (item, state) in enumerate(self.items.items()):
      prefix = f"item{position}"
      arrays[f"{prefix}/robust"] = state.robust
      # Only the points an attack changed (x_adv != x where fooled): a few MB, not N images.
      changed = np.flatnonzero(np.any((state.x_adv != x).reshape(len(x), -1), axis=1))
      arrays[f"{prefix}/changed"] = changed
      arrays[f"{prefix}/x_changed"] = state.x_adv[changed]
      if state.stage_robust is not None:
        arrays[f"{prefix}/stage_robust"] = state.stage_robust
      for k, (attack, flags) in enumerate(state.robust_after.items()):
        arrays[f"{prefix}/after{k}"] = flags
      meta["items"][item] = {"prefix": prefix, "stage": state.stage, "chunk": state.chunk,
                             "after": list(state.robust_after), "seconds": state.seconds,
                             "rejected": state.rejected}
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays

  @classmethod
  def from_arrays(cls, arrays, x: np.ndarray) -> "EvaluationState":
    """Inverse of `to_arrays` for the same inputs x."""
    meta = json.loads(str(arrays["meta"]))
    state = cls(clean_correct=np.array(arrays["clean_correct"]) if "clean_correct" in arrays else None,
                clean_seconds=meta["clean_seconds"], warnings=meta["warnings"],
                finished=list(meta["finished"]))
    for item, info in meta["items"].items():
      prefix = info["prefix"]
      stage_key = f"{prefix}/stage_robust"
      x_adv = np.array(x, np.float32)
      x_adv[np.asarray(arrays[f"{prefix}/changed"], np.int64)] = arrays[f"{prefix}/x_changed"]
      state.items[item] = EnsembleState(
          robust=np.array(arrays[f"{prefix}/robust"]), x_adv=x_adv,
          stage=info["stage"], chunk=info["chunk"],
          stage_robust=np.array(arrays[stage_key]) if stage_key in arrays else None,
          robust_after={attack: np.array(arrays[f"{prefix}/after{k}"])
                        for k, attack in enumerate(info["after"])},
          seconds=dict(info["seconds"]), rejected=dict(info["rejected"]))
    return state


@dataclasses.dataclass
class EvaluationHooks:
  """Optional callbacks: on_chunk(item, event, state) after every attacked chunk (progress,
  checkpoints; may raise to stop), on_item_done(item, state) after every item."""

  on_chunk: Callable[[str, ChunkEvent, EvaluationState], None] | None = None
  on_item_done: Callable[[str, EvaluationState], None] | None = None


@dataclasses.dataclass
class RobustnessReport:
  """Result of `evaluate_robustness`. Accuracies are fractions of all N examples.

  accuracy: item -> accuracy ('clean' included); stages: ensemble item -> attack ->
  accuracy after that attack (cumulative); correct: item (and 'item/attack' for the
  stages of ensembles) -> (N,) bool; x_adv: item -> (N,H,W,C) worst-case points (x where
  not fooled); seconds: item and 'item/attack' -> seconds (compilation included);
  settings: attack -> its settings; warnings: checks (gradient masking, rejected points).
  """

  eps: float
  eps_fraction: str
  norm: str
  num_examples: int
  seed: int
  batch_size: int
  accuracy: dict[str, float]
  worst_case: float
  stages: dict[str, dict[str, float]]
  correct: dict[str, np.ndarray]
  x_adv: dict[str, np.ndarray]
  seconds: dict[str, float]
  settings: dict[str, dict[str, Any]]
  warnings: list[str]
  perturbation: dict[str, dict[str, float]]
  rejected: dict[str, int]

  def to_json(self) -> dict[str, Any]:
    """JSON-ready summary (no arrays)."""
    return {
        "accuracy": self.accuracy, "worst_case_accuracy": self.worst_case, "stages": self.stages,
        "eps": self.eps_fraction, "eps_float": self.eps, "norm": self.norm,
        "num_examples": self.num_examples, "seed": self.seed, "batch_size": self.batch_size,
        "attack_settings": self.settings, "seconds": self.seconds, "warnings": self.warnings,
        "perturbation": self.perturbation, "rejected_points": self.rejected,
        "versions": versions(),
    }

  def arrays(self) -> dict[str, np.ndarray]:
    """Per-example arrays for np.savez: 'correct/<item>' (N,) bool for every item and
    ensemble stage, 'x_adv/<item>' (N,H,W,C) float32 for ensemble items."""
    out = {f"correct/{name}": flags for name, flags in self.correct.items()}
    out.update({f"x_adv/{item}": points for item, points in self.x_adv.items()
                if registry.is_ensemble(item)})
    return out


# --- evaluation --------------------------------------------------------------------------


def as_images(x) -> np.ndarray:
  """x as float32 in [0,1]: uint8 0..255 is divided by 255, other dtypes are cast."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  return x.astype(np.float32)


def _validated_inputs(x, y, eps: float, norm: str, batch_size: int, num_buckets: int, seed: int):
  x = as_images(x)
  y = np.asarray(y)
  if x.ndim != 4:
    raise ValueError(f"x must be an NHWC batch (N,H,W,C), got shape {x.shape}")
  if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"y must be integer labels of shape ({x.shape[0]},), got {y.dtype} {y.shape}")
  if len(x) == 0:
    raise ValueError("no examples to evaluate (x is empty)")
  if x.min() < 0 or x.max() > 1:
    raise ValueError(f"x must be in [0,1] (normalisation belongs inside the model), got "
                     f"range [{x.min():.4g}, {x.max():.4g}]")
  if norm not in NORMS:
    raise ValueError(f"unknown norm {norm!r}; valid choices: {', '.join(NORMS)}")
  if not eps > 0 or (norm == "linf" and eps > 1):
    raise ValueError(f"eps must be > 0 (and <= 1 for linf) in [0,1] pixel units "
                     f"(8/255 = 0.0314), got {eps}")
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
  if not isinstance(num_buckets, int) or num_buckets < 1:
    raise ValueError(f"num_buckets must be an integer >= 1, got {num_buckets!r}")
  if not isinstance(seed, int) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
  return x, y.astype(np.int32)


def _check_index_offset(index_offset, num_examples: int) -> None:
  # The example indices are int32 inside the attacks.
  if (not isinstance(index_offset, (int, np.integer)) or index_offset < 0
      or index_offset + num_examples > np.iinfo(np.int32).max):
    raise ValueError(f"index_offset must be an integer >= 0 with index_offset + N < 2**31, "
                     f"got {index_offset!r}")


def _item_specs(items: Sequence[str], attack_options: dict[str, dict] | None,
                num_classes: int) -> dict[str, list[registry.AttackSpec]]:
  attack_options = dict(attack_options or {})
  used = set()
  specs = {}
  for item in items:
    if item == "clean":
      continue
    specs[item] = []
    for member in registry.ensemble_members(item):
      spec = registry.attack_spec(member, attack_options.get(member))
      used.add(member)
      needed = REQUIRED_CLASSES[spec.family] if spec.name != "apgd-dlr" else 3
      if num_classes < needed:
        raise ValueError(f"attack {member!r} needs at least {needed} classes, the model has "
                         f"{num_classes}; valid choices here: fgsm, pgd<k>, cw<k>, apgd-ce, square")
      specs[item].append(spec)
  for name in set(attack_options) - used:  # unused but must at least be a valid attack
    registry.attack_spec(name, attack_options[name])
  return specs


@functools.lru_cache(maxsize=16)
def _zero_gradient_function(apply_fn):
  return xla_cpu.jit(lambda variables, x, y: checks_lib.zero_gradient_flags(
      functools.partial(apply_fn, variables), x, y))


def _pre_checks(classifier: Classifier, x: np.ndarray, y: np.ndarray, clean_correct: np.ndarray,
                batch_size: int) -> list[str]:
  """Output range, randomness and zero-gradient checks on the first batch."""
  count = min(batch_size, len(x))
  # Same padded shapes as the clean pass: no new compilation for the two full passes.
  logits_a = predict_logits(classifier, x[:count], batch_size)
  logits_b = predict_logits(classifier, x[:count], batch_size)
  half_alone = (predict_logits(classifier, x[:count // 2], batch_size) if count >= 2
                else logits_a[:0])
  warnings = checks_lib.probability_output_warnings(logits_a)
  warnings += checks_lib.randomness_warnings(logits_a, logits_b, half_alone)
  correct = clean_correct[:count]
  if correct.any():
    flags = _zero_gradient_function(classifier.apply_fn)(classifier.variables, jnp.asarray(x[:count]),
                                                         jnp.asarray(y[:count]))
    counts = {name: int(np.sum(np.asarray(zero) & correct)) for name, zero in flags.items()}
    warnings += checks_lib.zero_gradient_warnings(counts, int(correct.sum()))
  num_classes = logits_a.shape[-1]
  if num_classes < 10:
    warnings.append(f"the model has {num_classes} classes: targeted attacks use "
                    f"{max(0, num_classes - 1)} target classes instead of AutoAttack's 9")
  return warnings


def evaluate_robustness(model: Any,
                        x: np.ndarray,
                        y: np.ndarray,
                        *,
                        attacks: str | Sequence[str] = DEFAULT_ATTACKS,
                        eps: float | str | Fraction = 8 / 255,
                        norm: str = "linf",
                        batch_size: int = 250,
                        num_buckets: int = 4,
                        seed: int = 0,
                        attack_options: dict[str, dict[str, Any]] | None = None,
                        run_checks: bool = True,
                        state: EvaluationState | None = None,
                        hooks: EvaluationHooks | None = None,
                        start_from: RobustnessReport | None = None,
                        index_offset: int = 0) -> RobustnessReport:
  """Clean and robust accuracy of `model` on (x, y) under the attack items `attacks`.

  Args:
    model: logits_fn, (apply_fn, variables) or Classifier (module docstring).
    x: (N,H,W,C) float in [0,1] or uint8; y: (N,) int labels.
    attacks: comma list or sequence of items (registry.py names; 'aa' = AutoAttack
      standard; 'a+b' = custom ensemble).
    eps: radius in [0,1] pixel units (float, or exact text such as '8/255').
    norm: 'linf' or 'l2'.
    batch_size: largest compiled batch (the reference's bs; 250 by default).
    num_buckets: padded batch sizes per attack (batch, /2, /4, ...): each attack compiles
      at most once per bucket; 1 = always the full batch.
    seed: everything random derives from it (fold_in per attack, pass and example).
    attack_options: per attack name, setting overrides, e.g. {'square': {'n_queries': 100}}.
    run_checks: run the gradient-masking checks (warnings in the report).
    state: an EvaluationState to continue (and update in place); None starts afresh.
    hooks: progress / checkpoint callbacks.
    start_from: a report at a smaller eps (same items and examples) whose fooled points
      stay fooled here.
    index_offset: when (x, y) are the examples [index_offset, index_offset + N) of a larger
      set (one process's share of a test set), the per-example draws are the larger set's
      (seed, attack, pass, example index); 0 for a whole set.

  Returns:
    RobustnessReport.
  """
  eps_value, eps_fraction = parse_eps(eps)
  x, y = _validated_inputs(x, y, eps_value, norm, batch_size, num_buckets, seed)
  _check_index_offset(index_offset, len(x))
  items = parse_items(attacks)
  classifier = as_classifier(model)
  output = jax.eval_shape(classifier.apply_fn, classifier.variables,
                          jax.ShapeDtypeStruct((1,) + x.shape[1:], jnp.float32))
  if len(output.shape) != 2:
    raise ValueError(f"the model must return logits of shape (B, K), got {output.shape}")
  num_classes = int(output.shape[-1])
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f"labels must be in [0, {num_classes}), got range [{y.min()}, {y.max()}]")
  specs = _item_specs(items, attack_options, num_classes)
  if start_from is not None and (start_from.num_examples != len(x) or start_from.eps > eps_value
                                 or not set(items) <= set(start_from.correct)):
    raise ValueError("start_from must be a report on the same examples and items at a radius "
                     f"<= {eps_value}")
  for item_specs in specs.values():
    check_traceable(classifier, item_specs, x.shape, norm=norm, batch_size=batch_size)
  state = EvaluationState() if state is None else state
  hooks = hooks or EvaluationHooks()

  if state.clean_correct is None:
    started = time.perf_counter()
    clean_logits = predict_logits(classifier, x, batch_size)
    state.clean_correct = np.argmax(clean_logits, axis=-1) == y
    state.clean_seconds = time.perf_counter() - started
  if state.warnings is None:
    state.warnings = (_pre_checks(classifier, x, y, state.clean_correct, batch_size)
                      if run_checks else [])
    for warning in state.warnings:
      logging.warning("%s", warning)
  logging.info("clean accuracy: %.2f%% (%d examples)", 100 * state.clean_correct.mean(), len(x))

  for item, item_specs in specs.items():
    if item in state.finished:
      continue
    if item not in state.items:
      robust = state.clean_correct.copy()
      x_adv = None
      if start_from is not None:
        robust &= start_from.correct[item]
        x_adv = start_from.x_adv[item]
      state.items[item] = EnsembleState.start(x, robust, x_adv)
    on_chunk = None
    if hooks.on_chunk is not None:
      on_chunk = lambda event, _, item=item: hooks.on_chunk(item, event, state)
    run_ensemble(classifier, x, y, item_specs, state.items[item], eps=eps_value, norm=norm,
                 seed=seed, num_classes=num_classes, batch_size=batch_size,
                 num_buckets=num_buckets, on_chunk=on_chunk, index_offset=int(index_offset))
    state.finished.append(item)
    item_state = state.items[item]
    for spec in item_specs:
      logging.info("%s: robust accuracy after %s: %.2f%% (%.1f s)", item, spec.name,
                   100 * item_state.robust_after[spec.name].mean(), item_state.seconds[spec.name])
    if hooks.on_item_done is not None:
      hooks.on_item_done(item, state)
  return _report(x, items, specs, state, eps_value, eps_fraction, norm, seed, batch_size,
                 num_classes)


def _report(x, items, specs, state: EvaluationState, eps, eps_fraction, norm, seed, batch_size,
            num_classes) -> RobustnessReport:
  n = len(x)
  accuracy = {"clean": float(state.clean_correct.mean())}
  correct = {"clean": state.clean_correct.copy()}
  seconds = {"clean": state.clean_seconds}
  stages, x_adv, settings, perturbation, rejected = {}, {}, {}, {}, {}
  warnings = list(state.warnings or [])
  for item in items[1:]:
    item_state = state.items[item]
    accuracy[item] = float(item_state.robust.mean())
    correct[item] = item_state.robust.copy()
    x_adv[item] = item_state.x_adv
    seconds[item] = float(sum(item_state.seconds.values()))
    perturbation[item] = checks_lib.perturbation_summary(item_state.x_adv, x, norm)
    families = {}
    if len(specs[item]) > 1:
      stages[item] = {}
      for spec in specs[item]:
        flags = item_state.robust_after[spec.name]
        stages[item][spec.name] = float(flags.mean())
        correct[f"{item}/{spec.name}"] = flags.copy()
        seconds[f"{item}/{spec.name}"] = float(item_state.seconds[spec.name])
    for spec in specs[item]:
      families[spec.name] = spec.family
      settings[spec.name] = {**spec.settings(), "passes": spec.num_passes(num_classes)}
      if spec.family == "pgd" and settings[spec.name]["step_size"] is None:
        settings[spec.name]["step_size"] = eps * settings[spec.name]["step_fraction"]
      if item_state.rejected.get(spec.name):
        rejected[f"{item}/{spec.name}"] = item_state.rejected[spec.name]
        warnings.append(f"{item}: {spec.name} returned {item_state.rejected[spec.name]} "
                        "misclassified points outside the eps-ball or [0,1]; they were not "
                        "counted as fooled")
    if len(specs[item]) > 1:
      warnings += checks_lib.square_warnings(stages[item], families, item)
  # Square evaluated on its own against the white-box items evaluated on their own.
  singles = {item: specs[item][0] for item in items[1:] if len(specs[item]) == 1}
  warnings += checks_lib.square_warnings({s.name: accuracy[i] for i, s in singles.items()},
                                         {s.name: s.family for s in singles.values()},
                                         "separate attacks")
  worst = np.logical_and.reduce([correct[item] for item in items])
  for warning in warnings[len(state.warnings or []):]:
    logging.warning("%s", warning)
  return RobustnessReport(
      eps=eps, eps_fraction=eps_fraction, norm=norm, num_examples=n, seed=seed,
      batch_size=batch_size, accuracy=accuracy, worst_case=float(worst.mean()), stages=stages,
      correct=correct, x_adv=x_adv, seconds=seconds, settings=settings, warnings=warnings,
      perturbation=perturbation, rejected=rejected)


def evaluate_robustness_curve(model: Any, x: np.ndarray, y: np.ndarray,
                              eps_values: Sequence[float | str], **kwargs) -> list[RobustnessReport]:
  """`evaluate_robustness` at ascending radii, each continuing from the previous one's
  adversarial points (module docstring). kwargs as evaluate_robustness (no state)."""
  parsed = [parse_eps(e)[0] for e in eps_values]
  if parsed != sorted(parsed) or len(set(parsed)) != len(parsed):
    raise ValueError(f"eps_values must be strictly ascending, got {list(eps_values)}")
  reports = []
  for eps in eps_values:
    reports.append(evaluate_robustness(model, x, y, eps=eps,
                                       start_from=reports[-1] if reports else None, **kwargs))
  return reports
