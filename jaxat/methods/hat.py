"""Helper-based adversarial training (HAT; Rade & Moosavi-Dezfooli, ICLR 2022).

Official behaviour (imrahulr/hat @3177a4f, core/utils/hat.py; docs/baselines.md#hat), the default:
1. x_adv by the TRADES KL attack: x + 0.001·N(0,1), 10 sign steps of 2/255 inside
   eps = 8/255, clipped to [0,1], the model in eval BatchNorm mode (p(x) a constant).
2. Helper examples x_hr = x + h·(x_adv - x), h = 2: NOT clipped to the eps-ball or to [0,1].
3. Helper labels ŷ_hr = argmax of the *helper model* on x_adv (not on x_hr), the helper in
   eval mode without gradients. The helper is a separately, *standard*-trained classifier.
4. Loss, the model in train mode for three forwards (clean, adversarial, helper; each one
   updates the BatchNorm running averages, the unclipped x_hr included):
     robust_loss='kl' (TRADES-based, default):
       L = CE(f(x), y) + beta·(1/B) sum_i KL(p(x_i) || p(x_adv,i)) + gamma·CE(f(x_hr), ŷ_hr)
     robust_loss='ce' (AT-based, `at_hat_loss`; pair it with a CE attack with uniform start,
       `attack.objective='ce'`, `attack.init='uniform'`):
       L = CE(f(x), y) + beta·CE(f(x_adv), y) + gamma·CE(f(x_hr), ŷ_hr)
   The KL target p(x) is not detached. README CIFAR-10 values: beta = 2.5, gamma = 0.5.

The helper model (`method.helper_workdir`):
- a jaxat workdir of a finished standard-training run (`configs/standard.py`) on the same
  dataset: its `helper_checkpoint` ('last' | 'best') is loaded with
  jaxat.train.restore.load_trained_model. The helper may use another architecture.
- '' (default): `setup` first trains the helper itself in `<workdir>/helper` with this run's
  config (dataset and validation split, model, optimiser, schedule, augmentation, seed) and
  the `standard` method for `helper_epochs` epochs — the HAT README recipe trains the
  helper with the same script and defaults for 50 epochs — and says so in the log. It is
  re-entrant: a helper run with results.json is reused, one with a checkpoint resumes.
The official code loads the helper's best checkpoint by *test* clean accuracy; jaxat never
selects on the test set, so 'last' is the default ('best' needs a validation split).

The helper's weights live in `method_state['helper']` ({'params', 'batch_stats'}): they are
inputs of the compiled step (closing over them would embed them as constants and inflate
every compilation) and they are saved in every checkpoint (the helper's size again, e.g.
~45 MB for ResNet-18), so a resumed run restores exactly the helper it started with.
`label_smoothing` is the true-class mass f of the CE terms on the true labels (not of the
helper CE); 1.0 (plain CE) is the official setting.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from jaxat.methods import losses, maximizer
from jaxat.methods.base import Method, PrerequisiteRun, TrainedRun
from jaxat.methods.standard import Standard
from jaxat.models.forward import ModelFn

ROBUST_LOSSES = ("kl", "ce")
HELPER_CHECKPOINTS = ("last", "best")
HELPER_SUBDIR = "helper"
HELPER = "helper"  # the prerequisite's name


@dataclasses.dataclass(frozen=True)
class HelperModel:
  """A restored standard classifier: model(params, batch_stats, x, 'eval')."""

  model: ModelFn
  params: Any
  batch_stats: Any
  num_classes: int
  image_shape: tuple[int, int, int]
  workdir: str


def helper_config(config: ml_collections.ConfigDict, epochs: int) -> ml_collections.ConfigDict:
  """The standard-training config of the helper: `config` with the `standard` method for
  `epochs` epochs. Only the final epoch is monitored and the final report is clean accuracy
  (a standard model's PGD accuracy is ~0 and not used)."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.method = Standard.default_config()
    c.num_epochs = int(epochs)
    c.eval.every_epochs = int(epochs)
    c.eval.final_attacks = "clean"
  c.lock()
  return c


def hat_loss(clean_logits: jax.Array, adv_logits: jax.Array, helper_logits: jax.Array,
             labels: jax.Array, helper_labels: jax.Array, beta: float, gamma: float,
             robust_loss: str = "kl", true_class_mass: float = 1.0):
  """(L, natural, robust, helper) of HAT from (B,K) logits of x, x_adv, x_hr and (B,) labels."""
  natural = losses.cross_entropy(clean_logits, labels, true_class_mass)
  if robust_loss == "kl":
    robust = losses.kl_batchmean(clean_logits, adv_logits)
  else:
    robust = losses.cross_entropy(adv_logits, labels, true_class_mass)
  helper = losses.cross_entropy(helper_logits, helper_labels)
  return natural + beta * robust + gamma * helper, natural, robust, helper


def _run_method(config_path: str) -> str:
  """The method name a run's config.json records (checked before anything is written; the
  restore checks it again)."""
  try:
    with open(config_path) as f:
      return str(json.load(f)["method"]["name"])
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise ValueError(f"{config_path} is not a jaxat run's config.json ({type(error).__name__}: "
                     f"{error})") from error


class HAT(Method):
  name = "hat"

  def __init__(self, cfg):
    super().__init__(cfg)
    self._helper: HelperModel | None = None

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        attack=maximizer.attack_config(eps=8 / 255, step_size=2 / 255, num_steps=10, init="normal",
                                       bn_mode="eval", objective="kl"),
        robust_loss="kl",
        beta=2.5,
        gamma=0.5,
        h=2.0,
        label_smoothing=1.0,
        helper_workdir="",
        helper_checkpoint="last",
        helper_epochs=50,
    ))

  @classmethod
  def validate(cls, cfg, num_classes=None):
    maximizer.validate_attack_config(cfg.attack)
    if cfg.robust_loss not in ROBUST_LOSSES:
      raise ValueError(f"unknown method.robust_loss {cfg.robust_loss!r}; valid choices: "
                       f"{', '.join(ROBUST_LOSSES)}")
    for field in ("beta", "gamma"):
      if not cfg[field] >= 0:
        raise ValueError(f"method.{field} must be >= 0, got {cfg[field]}")
    if not cfg.h >= 0:
      raise ValueError(f"method.h (helper example x + h·(x_adv - x)) must be >= 0, got {cfg.h}")
    if not 0.0 < cfg.label_smoothing <= 1.0:
      raise ValueError(f"method.label_smoothing is the true-class mass and must be in (0, 1], "
                       f"got {cfg.label_smoothing}")
    if cfg.helper_checkpoint not in HELPER_CHECKPOINTS:
      raise ValueError(f"unknown method.helper_checkpoint {cfg.helper_checkpoint!r}; valid "
                       f"choices: {', '.join(HELPER_CHECKPOINTS)}")
    if isinstance(cfg.helper_epochs, bool) or not isinstance(cfg.helper_epochs, int) or cfg.helper_epochs < 1:
      raise ValueError(f"method.helper_epochs must be a positive integer, got {cfg.helper_epochs!r}")
    if cfg.helper_workdir and not os.path.exists(os.path.join(cfg.helper_workdir, "config.json")):
      raise ValueError(f"method.helper_workdir={cfg.helper_workdir!r} holds no jaxat run (no "
                       "config.json); give the workdir of a finished configs/standard.py run, or "
                       "'' to train the helper in <workdir>/helper first")
    if cfg.helper_workdir:
      helper_method = _run_method(os.path.join(cfg.helper_workdir, "config.json"))
      if helper_method != Standard.name:
        raise ValueError(f"method.helper_workdir={cfg.helper_workdir!r} holds a {helper_method!r} "
                         f"run; HAT's helper must be a {Standard.name!r} run (configs/standard.py)")

  # -- the helper model -------------------------------------------------------------------
  def prerequisites(self, config, workdir):
    """The helper run: the user's `helper_workdir` (must exist), or `<workdir>/helper`
    trained first with `helper_config` when it holds no finished run (module docstring)."""
    cfg = self.cfg
    self._dataset_name = config.dataset.name
    if cfg.helper_workdir:
      return (PrerequisiteRun(HELPER, cfg.helper_workdir, None, cfg.helper_checkpoint,
                              expected_method=Standard.name),)
    return (PrerequisiteRun(HELPER, os.path.join(workdir, HELPER_SUBDIR),
                            helper_config(config, cfg.helper_epochs), cfg.helper_checkpoint,
                            expected_method=Standard.name),)

  def attach_prerequisites(self, runs: dict[str, TrainedRun]) -> None:
    run = runs[HELPER]
    dataset = getattr(self, "_dataset_name", run.config.dataset.name)
    if run.config.dataset.name != dataset:
      raise ValueError(f"the helper model in {run.workdir!r} was trained on "
                       f"{run.config.dataset.name!r}, this run trains on {dataset!r}; use a "
                       "helper of the same dataset")
    clean = "unknown" if run.clean_acc is None else f"{run.clean_acc:.4f}"
    logging.info("HAT: helper model from %s (step %d, %s checkpoint, %s; clean accuracy in its "
                 "results.json: %s)", run.workdir, run.step, self.cfg.helper_checkpoint,
                 run.config.model.name, clean)
    self.attach_helper(HelperModel(model=run.model, params=run.params,
                                   batch_stats=run.batch_stats, num_classes=run.num_classes,
                                   image_shape=run.image_shape, workdir=run.workdir))

  def attach_helper(self, helper: HelperModel) -> None:
    """Uses `helper` instead of the one `setup` would load (setup calls this; tests and
    cost benchmarks attach a helper without training one)."""
    self._helper = helper

  def _require_helper(self) -> HelperModel:
    if self._helper is None:
      raise RuntimeError("HAT needs its helper model: the engine attaches it from "
                         "`prerequisites` before creating the state or the step")
    return self._helper

  # -- state and step ---------------------------------------------------------------------
  def init_state(self, key, ctx, params, batch_stats):
    helper = self._require_helper()
    if helper.num_classes != ctx.num_classes or tuple(helper.image_shape) != tuple(ctx.image_shape):
      raise ValueError(f"the helper model in {helper.workdir!r} classifies {helper.num_classes} "
                       f"classes of {helper.image_shape} images, this run {ctx.num_classes} classes "
                       f"of {ctx.image_shape}")
    return {"helper": {"params": helper.params, "batch_stats": helper.batch_stats}}

  def count_metric_labels(self):
    return maximizer.count_metric_labels(self.cfg.attack)

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    cfg = self.cfg
    helper_model = self._require_helper().model
    x_adv, batch_stats, attack_metrics = maximizer.maximize(ctx, params, batch_stats, batch, key,
                                                            cfg.attack, info)
    helper = method_state["helper"]
    helper_logits = helper_model.logits(helper["params"], helper["batch_stats"], x_adv, "eval")
    helper_labels = jnp.argmax(jax.lax.stop_gradient(helper_logits), axis=-1).astype(jnp.int32)
    x_helper = batch.images + cfg.h * (x_adv - batch.images)
    metrics = {**attack_metrics,
               "helper_label_agreement": jnp.mean((helper_labels == batch.labels).astype(jnp.float32))}
    prepared = {"x_adv": x_adv, "x_helper": x_helper, "helper_labels": helper_labels}
    return prepared, batch_stats, method_state, metrics

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    cfg = self.cfg
    clean_logits, _, batch_stats = ctx.model(params, batch_stats, batch.images, "train")
    adv_logits, _, batch_stats = ctx.model(params, batch_stats, prepared["x_adv"], "train")
    helper_logits, _, batch_stats = ctx.model(params, batch_stats, prepared["x_helper"], "train")
    loss, natural, robust, helper = hat_loss(
        clean_logits, adv_logits, helper_logits, batch.labels, prepared["helper_labels"],
        cfg.beta, cfg.gamma, cfg.robust_loss, cfg.label_smoothing)
    metrics = {"natural_loss": natural, "robust_loss": robust, "helper_loss": helper,
               "clean_acc": losses.accuracy(clean_logits, batch.labels),
               "adv_acc": losses.accuracy(adv_logits, batch.labels),
               "helper_acc": losses.accuracy(helper_logits, prepared["helper_labels"])}
    return loss, (batch_stats, metrics)
