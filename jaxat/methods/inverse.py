"""Inverse adversaries (UIAT/IAT, Dong et al. CVPR 2023): the loss of Eq. 4 and the two ways
of descending it, as pure functions.

- `inverse_loss`: per-example L_inv(x̃, y) = CE(f(x̃), y) + β·[‖F(x̃) − F(x)‖₁ − ‖F(x̃) − F(x̂)‖₁]
  (Eq. 4). Every output row depends only on the same row of the inputs, so it can be
  vmapped over single examples and its batch sum has the per-example gradients.
- `inverse_objective`: that loss over a classifier in a named BatchNorm mode, in the
  objective signature of `attacks.pgd`.
- `instance_inverse_examples`: instance-wise inverse adversaries (Eq. 3, Algorithm 2):
  PGD *descent* on L_inv from x + 0.001·N(0,1) inside the L-inf ball of radius ε'.
- `universal_inverse_step`: the class-wise universal step (Eq. 5-6, Algorithm 1 lines
  4-12): x̃_j = clip(x_j + z_{y_j}, 0, 1); one backward pass of Σ_j L_inv(x̃_j, y_j) gives
  every class c the gradient of its own sum l_c; each class present in the batch moves by
  one signed step z_c ← clip(z_c − α'·sign(∇_{z_c} l_c), −ε', ε'); absent classes keep z_c.

Shapes: images NHWC (B,H,W,C) in [0,1]; universal perturbations z (K,H,W,C); features
(B,D); logits (B,K). Radii and step sizes are in [0,1] pixel units (4/255 = 0.0157).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxat.attacks import losses as attack_losses
from jaxat.attacks import pgd as pgd_lib
from jaxat.attacks.budget import Budget
from jaxat.attacks.projections import clip_to_image
from jaxat.models.forward import ModelFn


FEATURE_REDUCTIONS = ("sum", "mean")


def feature_l1(a: jax.Array, b: jax.Array, reduction: str = "sum") -> jax.Array:
  """‖a − b‖₁ per example, (B,D), (B,D) -> (B,): summed over the feature dimensions
  ('sum', docs/inverse_adversarial_training.md#feature-term-reduction) or averaged over
  them ('mean', what PyTorch's nn.L1Loss() gives per example; it scales β by 1/D)."""
  if reduction not in FEATURE_REDUCTIONS:
    raise ValueError(f"unknown feature reduction {reduction!r}; valid choices: "
                     f"{', '.join(FEATURE_REDUCTIONS)}")
  reduce = jnp.sum if reduction == "sum" else jnp.mean
  return reduce(jnp.abs(a - b), axis=tuple(range(1, a.ndim)))


def inverse_loss(logits: jax.Array, features: jax.Array, labels: jax.Array,
                 clean_features: jax.Array, adv_features: jax.Array, beta: float,
                 feature_reduction: str = "sum") -> jax.Array:
  """Eq. 4 per example, shape (B,): CE(f(x̃), y) + β·(‖F(x̃) − F(x)‖₁ − ‖F(x̃) − F(x̂)‖₁).

  logits, features: f(x̃) (B,K) and F(x̃) (B,D) of the inverse candidates.
  clean_features, adv_features: F(x) and F(x̂) (B,D); treated as constants (stop-gradient).
  beta: weight of the feature-level regularisation (FR); 0 gives plain CE (Table 6 rows
    without FR, the single-step plug-in of Appendix B.3). With β = 0 the features are not
    read, so callers may pass None for clean_features/adv_features.
  feature_reduction: see `feature_l1`.
  The batch reduction (mean over examples,
  docs/inverse_adversarial_training.md#batch-reduction-of-the-inverse-loss) is the caller's;
  descent directions only use the sign, which does not depend on it.
  """
  ce = attack_losses.cross_entropy(logits, labels)
  if beta == 0:
    return ce
  clean_features = jax.lax.stop_gradient(clean_features)
  adv_features = jax.lax.stop_gradient(adv_features)
  return ce + beta * (feature_l1(features, clean_features, feature_reduction) -
                      feature_l1(features, adv_features, feature_reduction))


def inverse_objective(model: ModelFn, params: Any, labels: jax.Array, bn_mode: str,
                      clean_features: jax.Array | None, adv_features: jax.Array | None,
                      beta: float, feature_reduction: str = "sum") -> pgd_lib.ObjectiveFn:
  """L_inv over the classifier as a PGD objective `(x_inv, batch_stats) -> ((B,), (logits,
  batch_stats))`; BatchNorm statistics are updated (and threaded) only in 'train' mode."""

  def objective(x_inv, batch_stats):
    logits, features, batch_stats = model(params, batch_stats, x_inv, bn_mode)
    value = inverse_loss(logits, features, labels, clean_features, adv_features, beta,
                         feature_reduction)
    return value, (logits, batch_stats)

  return objective


def instance_inverse_examples(objective: pgd_lib.ObjectiveFn, x: jax.Array, labels: jax.Array,
                              key: jax.Array, eps: float, step_size: float, num_steps: int,
                              aux: Any = None) -> tuple[jax.Array, Any]:
  """Instance-wise inverse adversaries x̃ (B,H,W,C) (Eq. 3, Algorithm 2 lines 5-10).

  Start x + 0.001·N(0,1), then `num_steps` times x̃ ← Π_{B(x,ε')∩[0,1]}(x̃ − α'·sign(∇L_inv)).
  Returns (x̃ without gradient, threaded aux).
  """
  result = pgd_lib.pgd(objective, x, labels, key, Budget(eps, step_size, num_steps),
                       max_steps=num_steps, init="normal", norm="linf", direction=-1.0,
                       evaluate_final=False, aux=aux)
  return jax.lax.stop_gradient(result.x_adv), result.aux


def init_universal(key: jax.Array, num_classes: int, image_shape: tuple[int, ...],
                   scale: float = 0.001) -> jax.Array:
  """z_c ~ scale·N(0,1) for every class (Algorithm 1 line 1): (K,H,W,C) float32."""
  return scale * jax.random.normal(key, (num_classes,) + tuple(image_shape), jnp.float32)


def apply_universal(x: jax.Array, universal: jax.Array, labels: jax.Array) -> jax.Array:
  """x̃_j = clip(x_j + z_{y_j}, 0, 1): (B,H,W,C), (K,H,W,C), (B,) -> (B,H,W,C)."""
  return clip_to_image(x + universal[labels])


def present_classes(labels: jax.Array, num_classes: int) -> jax.Array:
  """(K,) bool: which classes occur in the batch."""
  return jnp.any(jax.nn.one_hot(labels, num_classes, dtype=jnp.bool_), axis=0)


def universal_inverse_step(objective: pgd_lib.ObjectiveFn, universal: jax.Array, x: jax.Array,
                           labels: jax.Array, eps: float, step_size: float, num_steps: int = 1,
                           aux: Any = None) -> tuple[jax.Array, jax.Array, Any]:
  """Class-wise descent on L_inv (Algorithm 1 lines 4-12, Eq. 6).

  Each of `num_steps` iterations takes one backward pass of Σ_j L_inv(clip(x_j + z_{y_j}),
  y_j) with respect to z: the gather z[y] turns it into per-class sums, so row c of the
  gradient is ∇_{z_c} l_c. Classes present in the batch step by −α'·sign(∇) and are
  clipped to [−ε', ε']; absent classes keep their perturbation exactly (their gradient
  row is zero, and they are masked anyway). The paper takes one step (num_steps = 1).

  Returns (updated z (K,H,W,C), logits (B,K) at x̃ of the incoming z (the first forward
  pass), aux).
  """
  num_classes = universal.shape[0]
  moves = present_classes(labels, num_classes).reshape((num_classes,) + (1,) * (universal.ndim - 1))

  def summed(z, aux):
    value, (logits, aux) = objective(apply_universal(x, z, labels), aux)
    return jnp.sum(value), (logits, aux)

  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  z, incoming_logits = universal, None
  for _ in range(num_steps):  # static and tiny (1 in the paper): unrolled
    grad, (logits, aux) = jax.grad(summed, has_aux=True)(z, aux)
    incoming_logits = logits if incoming_logits is None else incoming_logits
    stepped = jnp.clip(z - step_size * jnp.sign(grad), -eps, eps)
    z = jnp.where(moves, stepped, z)
  return jax.lax.stop_gradient(z), jax.lax.stop_gradient(incoming_logits), aux
