r"""GradAlign: FGSM training with a gradient-alignment regulariser (Andriushchenko &
Flammarion, NeurIPS 2020, "Understanding and Improving Fast Adversarial Training").
Docs: docs/fast_adversarial_training.md#gradalign.

Per batch (L∞, pixel units in [0,1]; CE is the batch mean, so gradients carry a 1/B):

  g1    = ∇_x CE(f(x_0), y) at the FGSM start x_0 (x itself: zero init)   constant
  x_adv = Π_img(Π_ε(x_0 + α·sign(g1))),  α = 1.25·ε, so with the zero start
          x_adv = Π_img(x + ε·sign(g1)) (the projection clips the 1.25 factor away)
  η     ~ U(−ε, ε) per element (x + η is NOT clipped to the image, as in the official code)
  g2    = ∇_η CE(f(x + η), y), kept differentiable (double back-propagation)
  R     = 1 − mean_{i ∈ S} cos(g1_i, g2_i),  S = {i : ‖g1_i‖ ≠ 0 and ‖g2_i‖ ≠ 0}
          (cos over the flattened example; R = 0 when S is empty)
  loss  = CE(f(x_adv), y) + λ·R

g1 is computed in `prepare` and enters the loss as a constant (the official code builds it
with create_graph and then detaches it; its README: back-propagating through both
gradients "doesn't make a substantial difference"); the parameters' gradient flows
through g2 and through CE(f(x_adv)). Every forward pass is in train-mode BatchNorm (the
official model never leaves train mode): the FGSM pass, the loss pass and the g2 pass all
update the running statistics, in that order.

λ (`align_lambda`) depends on ε. CIFAR-10 (official sh/exps_diff_eps_cifar10.sh, log-linear):
λ(ε) = 0.02·10^{ε/8} for ε = k/255, k = 1..16 (0.2 at 8/255, 2.0 at 16/255); SVHN
(sh/exps_diff_eps_svhn.sh): 1.657 at 1/255 … 2.5 at 8/255 … 3.162 at 12/255. The presets
take λ from these tables (jaxat/config/fast_recipe.py; `eps<k>` tokens pick ε = k/255).

Official recipe, the default here: PreAct ResNet-18 *without* the final BN+ReLU, raw [0,1]
inputs (no normalisation), batch 128, SGD momentum 0.9, weight decay 5e-4, cyclic learning
rate 0 → lr_max → 0 with the peak at 2/5 of training; CIFAR-10 30 epochs, lr_max 0.3;
SVHN 15 epochs, lr_max 0.05, and the step factor 1.25 ramps linearly from 0 over the first 5
epochs (`step_ramp_epochs=5`: α_s = min(1, (s+1)/(5·steps per epoch))·α; ε and the
regulariser's η are not ramped). `attack.ramp_epochs` (the generic budget role: ε and α
ramped together) stays available and is 0 in every preset.

Not reproduced: half precision (apex O1); the per-iteration evaluation and the
"early-stopped model" selection on training PGD accuracy; the official cyclic schedule is
evaluated at (s+1)/steps per epoch, jaxat's at s (one iteration apart).

Published numbers are not given here (see the paper's tables for CIFAR-10 and SVHN at
ε up to 16/255 and 12/255).

  python -m jaxat.main --config=configs/grad_align.py:cifar10 --workdir=runs/grad_align_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/grad_align.py:cifar10,eps16 --workdir=runs/grad_align_c10_eps16 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.evaluate --workdir=runs/grad_align_c10 --attacks=clean,pgd50-10,aa
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxat.attacks import inits, projections, rng, steps
from jaxat.attacks import losses as attack_losses
from jaxat.methods import budgets, losses, maximizer
from jaxat.methods.base import Method
from jaxat.methods.single_step import validate_single_step_attack
from jaxat.models.forward import validate_bn_mode

EPS = 8 / 255
STEP_FACTOR = 1.25
LAMBDA_CIFAR10_EPS8 = 0.2


def input_gradient(ctx, params, batch_stats, x, labels, bn_mode):
  """(∇_x mean_i CE(f(x_i), y_i), batch_stats after the pass); differentiable in params."""

  def mean_ce(x_in, stats):
    logits, _, stats = ctx.model(params, stats, x_in, bn_mode)
    return jnp.mean(attack_losses.cross_entropy(logits, labels)), stats

  return jax.grad(mean_ce, has_aux=True)(x, batch_stats)


def alignment_penalty(g1: jax.Array, g2: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(1 − mean cos(g1_i, g2_i) over the examples whose two gradients are both non-zero,
  number of those examples). 0 when there are none. Safe to differentiate: the excluded
  examples contribute neither values nor NaN gradients."""
  g1 = g1.reshape(g1.shape[0], -1)
  g2 = g2.reshape(g2.shape[0], -1)
  sq1, sq2 = jnp.sum(g1 * g1, axis=1), jnp.sum(g2 * g2, axis=1)
  keep = (sq1 > 0) & (sq2 > 0)
  norm1 = jnp.sqrt(jnp.where(keep, sq1, 1.0))
  norm2 = jnp.sqrt(jnp.where(keep, sq2, 1.0))
  cos = jnp.sum((g1 / norm1[:, None]) * (g2 / norm2[:, None]), axis=1)
  count = jnp.sum(keep.astype(jnp.float32))
  mean_cos = jnp.sum(jnp.where(keep, cos, 0.0)) / jnp.maximum(count, 1.0)
  return jnp.where(count > 0, 1.0 - mean_cos, 0.0), count


class GradAlign(Method):
  name = "grad_align"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        attack=maximizer.attack_config(eps=EPS, step_size=STEP_FACTOR * EPS, num_steps=1,
                                       init="zero", bn_mode="train"),
        align_lambda=LAMBDA_CIFAR10_EPS8,   # λ; presets take it from the λ(ε) tables
        align_bn_mode="train",              # BatchNorm mode of the g2 pass
        step_ramp_epochs=0,                 # SVHN: 5 (the 1.25 factor ramps from 0)
    ))

  @classmethod
  def validate(cls, cfg, num_classes=None):
    validate_single_step_attack(cfg, cls.name)
    # GradAlign builds its own FGSM step (it needs the start point for the regulariser).
    maximizer.require_fixed_budget(cfg.attack, cls.name)
    if not cfg.align_lambda >= 0:
      raise ValueError(f"method.align_lambda must be >= 0 (0 = plain FGSM training), got "
                       f"{cfg.align_lambda}")
    validate_bn_mode(cfg.align_bn_mode, "method.align_bn_mode")
    ramp = cfg.step_ramp_epochs
    if isinstance(ramp, bool) or not isinstance(ramp, int) or ramp < 0:
      raise ValueError(f"method.step_ramp_epochs must be an integer >= 0 (0 = no ramp), got {ramp!r}")

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    cfg = self.cfg
    attack = cfg.attack
    budget = budgets.training_budget(attack, ctx, info)
    step_size = budget.step_size * budgets.ramp_scale(info, ctx, cfg.step_ramp_epochs)
    start_key, eta_key = rng.split(key)
    x0 = projections.project_linf(batch.images, inits.initialise(
        attack.init, start_key, batch.images, attack.init_eps or budget.eps), budget.eps)
    g1, batch_stats = input_gradient(ctx, params, batch_stats, x0, batch.labels, attack.bn_mode)
    x_adv = projections.project_linf(batch.images, x0 + steps.sign_step(g1, step_size), budget.eps)
    eta = rng.uniform(eta_key, batch.images.shape, batch.images.dtype, -1.0, 1.0) * budget.eps
    prepared = {"x_adv": jax.lax.stop_gradient(x_adv), "grad": jax.lax.stop_gradient(g1),
                "eta": eta}
    return prepared, batch_stats, method_state, {}

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    loss, (batch_stats, metrics, _) = self.loss_and_logits(ctx, params, batch_stats, batch,
                                                           prepared, key, info)
    return loss, (batch_stats, metrics)

  exposes_adversarial_logits = True

  def loss_and_logits(self, ctx, params, batch_stats, batch, prepared, key, info):
    logits, _, batch_stats = ctx.model(params, batch_stats, prepared["x_adv"], "train")
    ce = losses.cross_entropy(logits, batch.labels)
    g2, batch_stats = input_gradient(ctx, params, batch_stats, batch.images + prepared["eta"],
                                     batch.labels, self.cfg.align_bn_mode)
    reg, _ = alignment_penalty(prepared["grad"], g2)
    loss = ce + self.cfg.align_lambda * reg
    return loss, (batch_stats, {"loss": loss, "adv_loss": ce, "align_reg": reg,
                                "adv_acc": losses.accuracy(logits, batch.labels)}, logits)
