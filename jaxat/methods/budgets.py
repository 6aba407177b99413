"""The budget role: which ε, step size and step count each training example is attacked with
(docs/fast_adversarial_training.md#roles).

Budgets are `jaxat.attacks.budget.Budget` values (scalars, or (B,) arrays for per-example
rules) in [0,1] pixel units, computed inside the jitted step from the `StepInfo`, so a
changing budget never recompiles.

- fixed: (attack.eps, attack.step_size, attack.num_steps) at every step.
- ramp (`attack.ramp_epochs` = R > 0): ε and the step size grow linearly from 0 to their
  configured values over the first R epochs, per iteration — scale = min(1, (s + 1) /
  (R · steps_per_epoch)) at 0-based global step s — then stay fixed. This is the SVHN
  warm-up of N-FGSM (ε and α over 5 epochs). GradAlign's SVHN warm-up ramps the step
  alone (δ = min(1.25·scale, 1)·ε·sign(g) from its zero start, not scale·ε·sign(g)), so
  it is that method's own `step_ramp_epochs`, with the same `ramp_scale`.
  The step count is not ramped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxat.attacks.budget import Budget
from jaxat.methods import ecas_budget as rule_lib
from jaxat.methods.base import StepContext, StepInfo


def ramp_scale(info: StepInfo, ctx: StepContext, ramp_epochs: int):
  """min(1, (step + 1) / (ramp_epochs · steps_per_epoch)) as a float32 scalar; 1 when
  ramp_epochs = 0."""
  if ramp_epochs <= 0:
    return jnp.ones((), jnp.float32)
  progress = (info.step.astype(jnp.float32) + 1.0) / float(ramp_epochs * ctx.steps_per_epoch)
  return jnp.minimum(1.0, progress)


def training_budget(cfg: ml_collections.ConfigDict, ctx: StepContext,
                    info: StepInfo | None) -> Budget:
  """The budget of a training-time attack config (`maximizer.attack_config`) at `info`
  (None: the fixed budget, for callers outside the training step)."""
  if info is None or cfg.ramp_epochs <= 0:
    return Budget(cfg.eps, cfg.step_size, cfg.num_steps)
  scale = ramp_scale(info, ctx, cfg.ramp_epochs)
  return Budget(scale * cfg.eps, scale * cfg.step_size, cfg.num_steps)


def ecas_budget(ctx: StepContext, params, batch_stats, batch, key, info: StepInfo,
                rule, bn_mode: str = "train", num_steps: int = 10):
  """The ECAS budget role (docs/ecas.md#the-eps-rule): per-example ε (B,) from the entropy
  of a clean forward in `bn_mode`, the step size 2·ε_cyc/10 of the epoch's cyclic ε, and
  `num_steps`. The entropy forward is under stop_gradient; in 'train' mode its BatchNorm
  running statistics are kept, as the official code's train-mode clean pass updates them.
  `key` draws the batch's ε_big. Returns (Budget, batch_stats, counts (|E|, K) int32 for
  the `counts/eps` count metric)."""
  logits, _, new_stats = ctx.model(params, batch_stats, batch.images, bn_mode)
  logits = jax.lax.stop_gradient(logits)
  if bn_mode == "train":
    batch_stats = new_stats
  eps = rule_lib.ecas_eps(logits, batch.labels, info.epoch, key, rule)
  step_size = rule_lib.cyclic_step_size(info.epoch, rule.eps_list)
  counts = rule_lib.eps_histogram(eps, batch.labels, rule.eps_list, logits.shape[-1])
  return Budget(eps, step_size, num_steps), batch_stats, counts
