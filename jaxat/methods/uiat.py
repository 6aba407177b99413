"""Inverse adversarial training: UIAT, one-off UIAT and IAT (Dong et al., CVPR 2023;
docs/inverse_adversarial_training.md). One implementation with switches, registered under
three names whose defaults differ:

| name         | generation | β (FR) | momentum (IAM)     | one-off       | inverse step        |
|--------------|------------|--------|--------------------|---------------|---------------------|
| uiat         | universal  | 1.0    | on, γ 0.9, T 0.75  | off           | 1 step of 4/255     |
| uiat_oneoff  | universal  | 1.0    | off                | on, T' 0.8    | 1 step of 4/255     |
| iat          | instance   | 1.0    | off                | off           | 5 steps of 2/255    |

A step (Algorithm 1; Algorithm 2 for `generation='instance'`):
1. x̂ = PGD-10 on CE (the `attack` sub-config; BatchNorm 'train' by default, see below,
   docs/inverse_adversarial_training.md#attack-batchnorm-mode).
2. Inverse adversaries x̃ (jaxat/methods/inverse.py) from L_inv of Eq. 4 with F(x), F(x̂):
   'universal' updates the class-wise perturbations z (K,H,W,C) kept in `method_state`
   by one signed step and uses x̃ = clip(x + z_y, 0, 1) with the *updated* z
   (docs/inverse_adversarial_training.md#target-after-the-update;
   `inverse.target_after_update=False` reuses the pre-update forward instead);
   'instance' runs `inverse.num_steps` steps of PGD descent per example.
3. The target p̄ (B,K):
   - plain: p(x̃);
   - momentum (Eq. 8): p̄_i ← p(x̃_i) for epochs t < T, γ·p̄_i + (1−γ)·p(x̃_i) for t ≥ T;
   - one-off (Eq. 10): p(x) for t < T', p(x̃) for t = T' (stored per example), the stored
     value for t > T' (frozen: no inverse adversary, no feature pass is computed).
4. Loss (Eq. 7 / Eq. 9): CE(f(x̂), y) + λ·KL(p̄ ‖ p(x̂)), the model in train mode for this
   forward (running statistics updated by x̂ only).

Forward/backward passes per batch beyond PGD-AT's (L = one forward of the batch; the
input-gradient of a pass costs about two more): F(x) and F(x̂) in one forward of the
concatenated 2B batch (eval mode; skipped when β = 0), one forward+backward of L_inv at x̃
for the z step, one forward for p(x̃) with the updated z — about 5 forward equivalents
next to PGD-10's ~24 (10 × forward+input-backward + the training step). The training
forward at x̂ cannot be shared: it comes after z's update, in train mode, differentiated.
One-off: one forward (p(x)) before T', nothing after T'.

Switches (config `method.*`; paper = stated in the paper, DECISION = jaxat's reading of an open point, see
docs/inverse_adversarial_training.md,
the other reading being the option):
- generation 'universal' | 'instance' (paper, Table 6 "UAG").
- inverse.beta = 1.0 (paper; 0 = no FR, Table 6), inverse.eps = 4/255, inverse.step_size
  4/255 universal / 2/255 instance, inverse.num_steps 1 / 5 (paper).
- inverse.feature_reduction 'sum' (DECISION) | 'mean' (per-example mean over dimensions).
- inverse.bn_mode and attack.bn_mode 'train' (measured default) | 'eval' | 'batch_stats'.
  The paper has no code; jaxat first read it as TRADES/MART do (eval-mode attack), but
  on a BatchNorm model that reading collapsed training within the first epoch on the
  CIFAR-10 subset (dead features, one predicted class, never recovered for one seed),
  while train mode trained normally for every seed tried; the measurements and the
  mechanism are in docs/inverse_adversarial_training.md#attack-batchnorm-mode.
- inverse.target_after_update True (DECISION: p(x̃) with the updated z) | False.
- momentum, gamma = 0.9, momentum_start = 0.75 (paper, Table 6 "IAM").
- oneoff, oneoff_start = 0.8 (paper); momentum and oneoff exclude each other.
- kl_weight λ = 3.5 (3.0 SVHN) (paper); kl_reduction 'batchmean' (DECISION) | 'mean'
  (PyTorch KLDivLoss's default, divides by the classes too).
- target_gradient False (DECISION: p̄ is a constant) | True (the current-epoch term is
  recomputed inside the loss so gradients flow through it: one more forward and backward).

Plug-in (Eq. 11-13, Table 5; docs/inverse_adversarial_training.md#uiat-as-a-plug-in-for-single-step-at):
with `method.base_method` (the config of a single-step method, jaxat/methods/
single_step_catalog.py; `plug_into` builds it) step 1 is the base's own `prepare` (its
x̂, buffers and state, kept in method_state['base']) and the loss is the base's own loss
plus λ·KL(p̄ ‖ p(x̂)) on the logits of the base's training forward (`loss_and_logits`).

Phase switches are *fractions of training* (like the schedule boundaries, so
`--config.num_epochs=N` rescales the recipe): the switch epoch is the 0-based index
floor(fraction · num_epochs); with 100 epochs T = 75 and T' = 80
(docs/inverse_adversarial_training.md#phase-switches-as-fractions-of-training).

Per-example buffers (N = training examples, indexed by `batch.indices`, so shuffling,
augmentation and sharding do not matter): `method_state['target']` = {'probs': (N,K)
float32 p̄ or the one-off p_OO, 'written_epoch': (N,) int32 0-based epoch of the last write,
−1 = never written}. An example never written yet falls back to p(x̃) (momentum: Eq. 8's
first case; one-off after T': the inverse branch runs for that batch and only the missing
rows are written). With the drop-last batching of the engine up to batch_size − 1
examples miss each epoch, so the fallback is a real case, not a corner case.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jaxat import xla_cpu
from jaxat.attacks import losses as attack_losses
from jaxat.methods import inverse, losses, maximizer
from jaxat.methods.base import Batch, Method, StepContext
from jaxat.methods.single_step_catalog import SINGLE_STEP_METHODS
from jaxat.models.forward import validate_bn_mode

GENERATIONS = ("universal", "instance")
KL_REDUCTIONS = ("batchmean", "mean")
# One-off phases (Eq. 10): before T', at T', after T'.
BEFORE, AT, AFTER = 0, 1, 2
# A static phase only (never a run-time value): after T' with every example's target
# written, so no batch needs the inverse adversary (InverseAdversarialTraining.epoch_phase).
FROZEN = 3


def every_target_written(written_epoch: jax.Array) -> bool:
  """Whether every row of the one-off buffer's (N,) `written_epoch` is written (>= 0),
  reduced on the devices that hold the rows (a compiled call: the rows may be sharded
  over processes)."""
  return bool(_all_written()(written_epoch))


@functools.lru_cache(maxsize=None)
def _all_written():
  # Built on first use: compiling at import would start the backend before a multi-process
  # run's jax.distributed.initialize.
  return xla_cpu.jit(lambda written: jnp.all(written >= 0))


def phase_epoch(fraction: float, num_epochs: int) -> int:
  """0-based index of the first epoch of a phase starting at `fraction` of training.

  floor(fraction · num_epochs) (a tiny tolerance absorbs binary rounding such as
  0.29 · 100 = 28.999…): 0.75 of 100 -> 75, 0.8 of 100 -> 80, 0.8 of 30 -> 24, 0.8 of 2 -> 1.
  """
  return int(math.floor(fraction * num_epochs + 1e-9))


def momentum_weights(stored_probs: jax.Array, written_epoch: jax.Array, epoch: jax.Array,
                     start_epoch: int, gamma: float) -> tuple[jax.Array, jax.Array]:
  """Inverse adversary momentum (Eq. 8) as p̄ = history + current_weight · p(x̃).

  stored_probs (B,K) p̄ of the previous write, written_epoch (B,) int32 (−1 = never
  written), epoch: 0-based int32 scalar. At epochs ≥ start_epoch an example written
  before gets (γ·p̄_old, 1 − γ); otherwise (0, 1), i.e. p̄ = p(x̃).
  Returns (history (B,K), current_weight (B,)).
  """
  gamma_i = jnp.where((epoch >= start_epoch) & (written_epoch >= 0), gamma, 0.0)
  gamma_i = gamma_i.astype(stored_probs.dtype)
  return gamma_i[:, None] * stored_probs, 1.0 - gamma_i


def oneoff_phase(epoch: jax.Array, oneoff_epoch: int) -> jax.Array:
  """BEFORE (0) for epochs < T', AT (1) at T', AFTER (2) afterwards; int32 scalar."""
  return jnp.where(epoch < oneoff_epoch, BEFORE, jnp.where(epoch == oneoff_epoch, AT, AFTER)).astype(jnp.int32)


def _require_bool(cfg, field: str) -> None:
  if not isinstance(cfg[field], bool):
    raise ValueError(f"method.{field} must be True or False, got {cfg[field]!r}")


def _require_fraction(cfg, field: str) -> None:
  value = cfg[field]
  if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
    raise ValueError(f"method.{field} is a fraction of training in [0, 1) (0.75 = epoch 75 of "
                     f"100), got {value!r}")


def _validate_base_method(cfg, num_classes) -> None:
  """The plug-in's base: a single-step method, valid on its own, and no own `attack`."""
  name = cfg.base_method.get("name")
  if name not in SINGLE_STEP_METHODS:
    raise ValueError(f"method.base_method.name={name!r} cannot carry UIAT; valid choices: "
                     f"{', '.join(sorted(SINGLE_STEP_METHODS))}")
  if "attack" in cfg:
    raise ValueError(f"method.attack is not used when method.base_method ({name}) makes the "
                     "adversarial examples; remove it (configs/uiat_oneoff.py:<dataset>,<base>)")
  try:
    SINGLE_STEP_METHODS[name].validate(cfg.base_method, num_classes)
  except ValueError as error:
    raise ValueError(str(error).replace("method.", "method.base_method.")) from None


class InverseAdversarialTraining(Method):
  """The shared implementation; see the module docstring. Subclasses set name and defaults."""

  name = "inverse_adversarial_training"  # not registered; the subclasses are

  @classmethod
  def _config(cls, *, generation: str, inverse_step_size: float, inverse_num_steps: int,
              momentum: bool, oneoff: bool) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        # x̂: PGD-10, eps 8/255, step 2/255 (1/255 on SVHN), uniform start, CE, BatchNorm
        # in train mode (measured: eval mode collapses BatchNorm models; module docstring).
        attack=maximizer.attack_config(eps=8 / 255, step_size=2 / 255, num_steps=10,
                                       init="uniform", bn_mode="train"),
        generation=generation,       # 'universal' (UAG, Algorithm 1) | 'instance' (Algorithm 2)
        inverse=ml_collections.ConfigDict(dict(
            eps=4 / 255,             # ε', radius of the inverse perturbation
            step_size=float(inverse_step_size),  # α': 4/255 universal, 2/255 instance
            num_steps=int(inverse_num_steps),    # 1 universal (paper), 5 instance
            beta=1.0,                # β of Eq. 4; 0 switches the feature regulariser (FR) off
            feature_reduction="sum",  # ‖·‖₁ summed over feature dims (DECISION) | 'mean'
            bn_mode="train",         # BatchNorm mode of the inverse passes and of p(x̃), p(x)
            target_after_update=True,  # p(x̃) with the updated z (DECISION); False: with the
                                       # incoming z, reusing the step's forward (universal
                                       # only, one forward pass less)
        )),
        kl_weight=3.5,               # λ of Eq. 7 (3.5 CIFAR-10/100, 3.0 SVHN)
        kl_reduction="batchmean",    # KL summed over classes, mean over batch (DECISION) |
                                     # 'mean': PyTorch KLDivLoss default, also / classes
        momentum=momentum,           # inverse adversary momentum (IAM, Eq. 8)
        gamma=0.9,                   # γ of Eq. 8
        momentum_start=0.75,         # T as a fraction of training (75 of 100 epochs)
        oneoff=oneoff,               # one-off schedule (Eq. 9-10); excludes momentum
        oneoff_start=0.8,            # T' as a fraction of training (80 of 100 epochs)
        target_gradient=False,       # False: p̄ is a constant (DECISION); True: gradient
                                     # through the current-epoch term of p̄
    ))

  @classmethod
  def plug_into(cls, base_cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """This method's config as a plug-in on the single-step method configured by `base_cfg`
    (Eq. 11-13, Appendix B.3): the base's config under `base_method` replaces `attack` (the
    base makes x̂ and its own loss), and the inverse step is CE-only (β = 0) as in the
    paper's single-step experiments. docs/inverse_adversarial_training.md#uiat-as-a-plug-in-for-single-step-at
    """
    if base_cfg.name not in SINGLE_STEP_METHODS:
      raise ValueError(f"UIAT cannot be plugged into {base_cfg.name!r}; valid choices: "
                       f"{', '.join(sorted(SINGLE_STEP_METHODS))}")
    c = cls.default_config()
    del c["attack"]
    c.base_method = ml_collections.ConfigDict(base_cfg.to_dict())
    c.inverse.beta = 0.0
    return c

  @classmethod
  def validate(cls, cfg, num_classes=None):
    if "base_method" in cfg:
      _validate_base_method(cfg, num_classes)
    else:
      maximizer.validate_attack_config(cfg.attack)
    if cfg.generation not in GENERATIONS:
      raise ValueError(f"unknown method.generation {cfg.generation!r}; valid choices: "
                       f"{', '.join(GENERATIONS)}")
    inv = cfg.inverse
    if not 0.0 <= inv.eps <= 1.0:
      raise ValueError(f"method.inverse.eps must be in [0, 1] pixel units (4/255 = 0.0157), "
                       f"got {inv.eps}")
    if not inv.step_size >= 0:
      raise ValueError(f"method.inverse.step_size must be >= 0, got {inv.step_size}")
    if not isinstance(inv.num_steps, int) or isinstance(inv.num_steps, bool) or inv.num_steps < 1:
      raise ValueError(f"method.inverse.num_steps must be an integer >= 1, got {inv.num_steps!r}")
    if not inv.beta >= 0:
      raise ValueError(f"method.inverse.beta must be >= 0 (0 = no feature regularisation), "
                       f"got {inv.beta}")
    validate_bn_mode(inv.bn_mode, "method.inverse.bn_mode")
    if inv.feature_reduction not in inverse.FEATURE_REDUCTIONS:
      raise ValueError(f"unknown method.inverse.feature_reduction {inv.feature_reduction!r}; "
                       f"valid choices: {', '.join(inverse.FEATURE_REDUCTIONS)}")
    if cfg.kl_reduction not in KL_REDUCTIONS:
      raise ValueError(f"unknown method.kl_reduction {cfg.kl_reduction!r}; valid choices: "
                       f"{', '.join(KL_REDUCTIONS)}")
    if not isinstance(inv.target_after_update, bool):
      raise ValueError(f"method.inverse.target_after_update must be True or False, got "
                       f"{inv.target_after_update!r}")
    if not inv.target_after_update and cfg.generation != "universal":
      raise ValueError("method.inverse.target_after_update=False only exists for "
                       "generation='universal' (instance-wise PGD always ends with a forward "
                       "pass at its last iterate); valid choices for generation='instance': True")
    if not cfg.kl_weight >= 0:
      raise ValueError(f"method.kl_weight (λ) must be >= 0, got {cfg.kl_weight}")
    for field in ("momentum", "oneoff", "target_gradient"):
      _require_bool(cfg, field)
    if not 0.0 <= cfg.gamma < 1.0:
      raise ValueError(f"method.gamma must be in [0, 1), got {cfg.gamma}")
    _require_fraction(cfg, "momentum_start")
    _require_fraction(cfg, "oneoff_start")
    if cfg.momentum and cfg.oneoff:
      raise ValueError("method.momentum=True and method.oneoff=True cannot be combined (the "
                       "one-off target is frozen after T'; the paper has no momentum in the "
                       "one-off setting); valid choices: momentum=False or oneoff=False")

  def __init__(self, cfg):
    super().__init__(cfg)
    # The plug-in's base method (None: x̂ from this method's own `attack`).
    self.base = (SINGLE_STEP_METHODS[cfg.base_method.name](cfg.base_method)
                 if "base_method" in cfg else None)

  def prerequisites(self, config, workdir):
    return self.base.prerequisites(config, workdir) if self.base else ()

  def attach_prerequisites(self, runs):
    if self.base:
      self.base.attach_prerequisites(runs)

  # -- state ------------------------------------------------------------------------------
  @property
  def _uses_buffer(self) -> bool:
    return bool(self.cfg.momentum or self.cfg.oneoff)

  def init_state(self, key, ctx, params, batch_stats):
    state: dict[str, Any] = {}
    if self.base:
      state["base"] = self.base.init_state(jax.random.fold_in(key, 1), ctx, params, batch_stats)
    if self.cfg.generation == "universal":
      state["universal"] = inverse.init_universal(jax.random.fold_in(key, 0), ctx.num_classes,
                                                  ctx.image_shape)
    if self._uses_buffer:
      state["target"] = {"probs": jnp.zeros((ctx.example_rows, ctx.num_classes), jnp.float32),
                         "written_epoch": jnp.full((ctx.example_rows,), -1, jnp.int32)}
    return state

  # -- the pieces of a step ---------------------------------------------------------------
  def _target_mode(self) -> str:
    return self.cfg.inverse.bn_mode

  def _probs(self, ctx, params, batch_stats, x):
    logits, _, batch_stats = ctx.model(params, batch_stats, x, self._target_mode())
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1), batch_stats

  def _features(self, ctx, params, batch_stats, x, x_adv):
    """F(x), F(x̂) (B,D) in the inverse BatchNorm mode. In eval mode one forward pass of the
    concatenated 2B batch serves both (per-example independent, so identical values)."""
    mode = self.cfg.inverse.bn_mode
    if mode == "eval":
      _, features, _ = ctx.model(params, batch_stats, jnp.concatenate([x, x_adv]), mode)
      return features[:x.shape[0]], features[x.shape[0]:], batch_stats
    _, clean_features, batch_stats = ctx.model(params, batch_stats, x, mode)
    _, adv_features, batch_stats = ctx.model(params, batch_stats, x_adv, mode)
    return clean_features, adv_features, batch_stats

  def _inverse_probs(self, ctx, params, batch_stats, universal, batch: Batch, x_adv, key):
    """(p(x̃) (B,K), x̃ (B,H,W,C), batch_stats, updated z or None)."""
    inv = self.cfg.inverse
    clean_features = adv_features = None
    if inv.beta != 0:
      clean_features, adv_features, batch_stats = self._features(ctx, params, batch_stats,
                                                                 batch.images, x_adv)
    objective = inverse.inverse_objective(ctx.model, params, batch.labels, inv.bn_mode,
                                          clean_features, adv_features, inv.beta,
                                          inv.feature_reduction)
    if self.cfg.generation == "universal":
      incoming = universal
      universal, incoming_logits, batch_stats = inverse.universal_inverse_step(
          objective, universal, batch.images, batch.labels, inv.eps, inv.step_size,
          inv.num_steps, aux=batch_stats)
      if not inv.target_after_update:
        # p(x̃) of the z this batch started from: the step's own forward pass, reused.
        probs = jax.nn.softmax(incoming_logits.astype(jnp.float32), axis=-1)
        return (probs, inverse.apply_universal(batch.images, incoming, batch.labels),
                batch_stats, universal)
      x_inv = inverse.apply_universal(batch.images, universal, batch.labels)
    else:
      x_inv, batch_stats = inverse.instance_inverse_examples(
          objective, batch.images, batch.labels, key, inv.eps, inv.step_size, inv.num_steps,
          aux=batch_stats)
    probs, batch_stats = self._probs(ctx, params, batch_stats, x_inv)
    return probs, x_inv, batch_stats, universal

  def epoch_phase(self, epoch, ctx, method_state=None):
    """BEFORE, AT or AFTER the one-off epoch T' for the one-off variant, and FROZEN after T'
    when `method_state` shows every example's target written (the usual case from the
    second epoch after T' on: only the examples of T''s dropped last batch are written
    later); None for the other variants. A FROZEN step holds no inverse adversary at all,
    where an AFTER step keeps it in a run-time switch for batches with unwritten examples,
    and on XLA:CPU that unused branch slows every step (docs/architecture.md#epoch-phases).
    Written rows stay written, so a state read mid-epoch is FROZEN only if every later state
    of the epoch is."""
    if not self.cfg.oneoff:
      return None
    oneoff_epoch = phase_epoch(self.cfg.oneoff_start, ctx.num_epochs)
    if epoch < oneoff_epoch:
      return BEFORE
    if epoch == oneoff_epoch:
      return AT
    if method_state is not None and every_target_written(method_state["target"]["written_epoch"]):
      return FROZEN
    return AFTER

  def count_metric_labels(self):
    if self.base:
      return self.base.count_metric_labels()
    return maximizer.count_metric_labels(self.cfg.attack)

  def prepare(self, ctx: StepContext, params, batch_stats, method_state, batch: Batch, key, info):
    cfg = self.cfg
    epoch = info.epoch
    new_state = dict(method_state)
    base_metrics = {}
    if self.base:
      # x̂ and everything else of the base's step (its buffers, generator) from the base,
      # with the key the base would get on its own.
      base_prepared, batch_stats, new_state["base"], base_metrics = self.base.prepare(
          ctx, params, batch_stats, method_state["base"], batch, key, info)
      x_adv = base_prepared["x_adv"]
    else:
      x_adv, batch_stats, base_metrics = maximizer.maximize(ctx, params, batch_stats, batch, key,
                                                            cfg.attack, info)
    inverse_key = jax.random.fold_in(key, 1)
    universal = method_state.get("universal")

    # The target is p̄ = history + current_weight · fresh, fresh = p(x̃) or p(x) (B,K).
    if not cfg.oneoff:
      fresh, target_input, batch_stats, universal = self._inverse_probs(
          ctx, params, batch_stats, universal, batch, x_adv, inverse_key)
      history, current_weight = jnp.zeros_like(fresh), jnp.ones_like(fresh[:, 0])
      if cfg.momentum:
        buffer = method_state["target"]
        history, current_weight = momentum_weights(
            buffer["probs"][batch.indices], buffer["written_epoch"][batch.indices], epoch,
            phase_epoch(cfg.momentum_start, ctx.num_epochs), cfg.gamma)
        new_state["target"] = {
            "probs": buffer["probs"].at[batch.indices].set(history + current_weight[:, None] * fresh),
            "written_epoch": buffer["written_epoch"].at[batch.indices].set(epoch.astype(jnp.int32))}
    else:
      buffer = method_state["target"]
      stored = buffer["probs"][batch.indices]
      stored_epoch = buffer["written_epoch"][batch.indices]
      missing = stored_epoch < 0
      phase = oneoff_phase(epoch, phase_epoch(cfg.oneoff_start, ctx.num_epochs))
      need_inverse = (phase == AT) | ((phase == AFTER) & jnp.any(missing))
      branch = jnp.where(phase == BEFORE, 0, jnp.where(need_inverse, 1, 2))

      # lax.switch runs one branch: outside T' (and with no example missing) no inverse
      # adversary and no feature pass is computed.
      def clean_target(operand):
        batch_stats, universal = operand
        probs, batch_stats = self._probs(ctx, params, batch_stats, batch.images)
        return probs, batch.images, batch_stats, universal

      def inverse_target(operand):
        batch_stats, universal = operand
        return self._inverse_probs(ctx, params, batch_stats, universal, batch, x_adv, inverse_key)

      def frozen_target(operand):
        batch_stats, universal = operand
        return stored, batch.images, batch_stats, universal

      # A step compiled for one phase (epoch_phase) holds only that phase's work: the
      # inverse branch alone, left in a switch, slows every step before T'
      # (docs/architecture.md#epoch-phases). After T' the branch depends on the data
      # (examples never written) until every target is written (FROZEN), so the switch
      # stays in the AFTER step.
      if ctx.epoch_phase == BEFORE:
        fresh, target_input, batch_stats, universal = clean_target((batch_stats, universal))
      elif ctx.epoch_phase == FROZEN:   # no example missing: branch 2 for every batch
        fresh, target_input, batch_stats, universal = frozen_target((batch_stats, universal))
      elif ctx.epoch_phase == AT:
        fresh, target_input, batch_stats, universal = inverse_target((batch_stats, universal))
      else:
        fresh, target_input, batch_stats, universal = jax.lax.switch(
            branch, (clean_target, inverse_target, frozen_target), (batch_stats, universal))
      use_stored = (phase == AFTER) & ~missing
      write = (phase == AT) | ((phase == AFTER) & missing)
      history = jnp.where(use_stored[:, None], stored, 0.0)
      current_weight = jnp.where(use_stored, 0.0, 1.0)
      new_state["target"] = {
          "probs": buffer["probs"].at[batch.indices].set(jnp.where(write[:, None], fresh, stored)),
          "written_epoch": buffer["written_epoch"].at[batch.indices].set(
              jnp.where(write, epoch.astype(jnp.int32), stored_epoch))}

    target = history + current_weight[:, None] * fresh
    if universal is not None:
      new_state["universal"] = universal
    prepared = {"target": jax.lax.stop_gradient(target)}
    prepared.update({"base": base_prepared} if self.base else {"x_adv": x_adv})
    if cfg.target_gradient:
      prepared.update(target_input=jax.lax.stop_gradient(target_input),
                      history=jax.lax.stop_gradient(history), current_weight=current_weight)
    metrics = {**base_metrics, "target_acc": losses.accuracy(target, batch.labels)}
    return prepared, batch_stats, new_state, metrics

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    target = prepared["target"]
    if self.cfg.target_gradient:
      mode = "eval" if self._target_mode() == "eval" else "batch_stats"
      current_logits, _, _ = ctx.model(params, batch_stats, prepared["target_input"], mode)
      current = jax.nn.softmax(current_logits.astype(jnp.float32), axis=-1)
      target = prepared["history"] + prepared["current_weight"][:, None] * current
    if self.base:
      # Eq. 13: the base's own loss, its logits at x̂ carrying the KL term.
      base_loss, (batch_stats, metrics, logits) = self.base.loss_and_logits(
          ctx, params, batch_stats, batch, prepared["base"], key, info)
      metrics = {**metrics, "base_loss": base_loss}
    else:
      logits, _, batch_stats = ctx.model(params, batch_stats, prepared["x_adv"], "train")
      base_loss = losses.cross_entropy(logits, batch.labels)
      metrics = {"ce_adv": base_loss, "adv_acc": losses.accuracy(logits, batch.labels)}
    kl = jnp.mean(attack_losses.kl_divergence_from_probs(target, logits))
    if self.cfg.kl_reduction == "mean":
      kl = kl / logits.shape[-1]
    loss = base_loss + self.cfg.kl_weight * kl
    return loss, (batch_stats, {**metrics, "loss": loss, "kl": kl})


class UIAT(InverseAdversarialTraining):
  """Universal inverse adversarial training (Algorithm 1): class-wise z, FR, momentum."""

  name = "uiat"

  @classmethod
  def default_config(cls):
    return cls._config(generation="universal", inverse_step_size=4 / 255, inverse_num_steps=1,
                       momentum=True, oneoff=False)


class UIATOneOff(InverseAdversarialTraining):
  """One-off UIAT (Eq. 9-10, Appendix B.2): p(x) before T', p(x̃) at T', frozen after."""

  name = "uiat_oneoff"

  @classmethod
  def default_config(cls):
    return cls._config(generation="universal", inverse_step_size=4 / 255, inverse_num_steps=1,
                       momentum=False, oneoff=True)


class IAT(InverseAdversarialTraining):
  """Instance-wise inverse adversarial training (Algorithm 2): 5 steps of PGD descent."""

  name = "iat"

  @classmethod
  def default_config(cls):
    return cls._config(generation="instance", inverse_step_size=2 / 255, inverse_num_steps=5,
                       momentum=False, oneoff=False)
