"""Per-example attack objectives computed from logits.

Every function here maps logits of shape (B, K) (and labels/targets of shape (B,)) to a
per-example value of shape (B,). The sign convention is explicit in each name and
docstring: an *adversarial* attack ascends (maximises) `cross_entropy`, `negative_margin`,
`dlr_loss`, `targeted_dlr_loss` and `trades_kl`; an *inverse* attack descends them.
Drivers never negate silently: they take a `direction` argument (see `pgd.py`).

Gradients are those of the batch sum, which for per-example-independent models (BatchNorm
in inference mode) equals the per-example gradient, as in the reference implementations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """CE(z, y) = -log softmax(z)_y per example, shape (B,)."""
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def _true_logit(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def max_other_logit(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """max_{k != y} z_k per example, shape (B,). Ties with z_y are handled by masking y."""
  num_classes = logits.shape[-1]
  is_label = jax.nn.one_hot(labels, num_classes, dtype=bool)
  return jnp.max(jnp.where(is_label, -jnp.inf, logits), axis=-1)


def margin(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Classification margin z_y - max_{k != y} z_k, shape (B,). Positive means correct."""
  return _true_logit(logits, labels) - max_other_logit(logits, labels)


def negative_margin(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """CW-inf objective to *maximise*: -(z_y - max_{k != y} z_k), no kappa, no clamp.

  This is the loss of the Jia-family CW-20 evaluator (docs/evaluation.md#cw), per example.
  """
  return -margin(logits, labels)


def dlr_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Untargeted DLR (Croce & Hein 2020), to maximise, shape (B,).

  -(z_y - max_{j != y} z_j) / (z_(1) - z_(3) + 1e-12), z_(i) the i-th largest logit.
  Needs at least 3 classes.
  """
  if logits.shape[-1] < 3:
    raise ValueError(f"DLR loss needs at least 3 classes, got {logits.shape[-1]}")
  sorted_logits = jnp.sort(logits, axis=-1)
  denominator = sorted_logits[:, -1] - sorted_logits[:, -3] + 1e-12
  return -margin(logits, labels) / denominator


def targeted_dlr_loss(logits: jax.Array, labels: jax.Array, targets: jax.Array) -> jax.Array:
  """Targeted DLR of APGD-T, to maximise, shape (B,).

  -(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2 + 1e-12). Needs at least 4 classes.
  The gradient flows through the sorted values, as in the reference.
  """
  if logits.shape[-1] < 4:
    raise ValueError(f"targeted DLR loss needs at least 4 classes, got {logits.shape[-1]}")
  sorted_logits = jnp.sort(logits, axis=-1)
  denominator = sorted_logits[:, -1] - 0.5 * (sorted_logits[:, -3] + sorted_logits[:, -4]) + 1e-12
  true_logit = _true_logit(logits, labels)
  target_logit = _true_logit(logits, targets)
  return -(true_logit - target_logit) / denominator


def kl_divergence(target_logits: jax.Array, logits: jax.Array) -> jax.Array:
  """KL(p || q) per example with p = softmax(target_logits), q = softmax(logits), shape (B,).

  Equals PyTorch `KLDivLoss(reduction='none')(log_softmax(logits), softmax(target_logits))`
  summed over classes (xlogy semantics: terms with p_k = 0 contribute 0).
  """
  target_log_probs = jax.nn.log_softmax(target_logits, axis=-1)
  log_q = jax.nn.log_softmax(logits, axis=-1)
  # log p from log_softmax, not xlogy(p, p): a class whose p underflows to 0 then adds 0 with
  # gradient 0 (PyTorch's kl_div masks it), where xlogy's derivative at 0 makes gradients NaN.
  return jnp.sum(jnp.exp(target_log_probs) * (target_log_probs - log_q), axis=-1)


def kl_divergence_from_probs(target_probs: jax.Array, logits: jax.Array) -> jax.Array:
  """KL(p || softmax(logits)) per example for a given probability target p, shape (B,)."""
  log_q = jax.nn.log_softmax(logits, axis=-1)
  # p·log p with 0·log 0 = 0 and a zero (not NaN, as xlogy's) gradient where p = 0, so a
  # target differentiated through (UIAT's target_gradient) stays finite when p underflows.
  positive = target_probs > 0
  p_log_p = jnp.where(positive, target_probs * jnp.log(jnp.where(positive, target_probs, 1.0)), 0.0)
  return jnp.sum(p_log_p - target_probs * log_q, axis=-1)


def trades_kl(clean_logits: jax.Array, adv_logits: jax.Array) -> jax.Array:
  """TRADES attack objective KL(p(x) || p(x')), to maximise, shape (B,)."""
  return kl_divergence(clean_logits, adv_logits)
