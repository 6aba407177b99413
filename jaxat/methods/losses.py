"""Outer (training) losses shared by the methods, reduced over the batch.

Reductions follow the official codes (docs/baselines.md#loss-reductions): cross-entropy is a batch mean; KL
terms are summed over classes and averaged over the batch ("batchmean").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxat.attacks import losses as per_example


def smoothed_targets(labels: jax.Array, num_classes: int, true_class_mass: float) -> jax.Array:
  """Label-smoothed targets with the "true-class mass" convention (docs/baselines.md#label-smoothing-as-true-class-mass).

  t_y = f and t_k = (1 - f) / (K - 1) for k != y, with f = `true_class_mass`; f = 1 gives
  one-hot labels. This is NOT optax.smooth_labels(alpha): f = 1 - alpha (K - 1) / K.
  Returns (B, K) float32.
  """
  if not 0.0 < true_class_mass <= 1.0:
    raise ValueError(f"true_class_mass must be in (0, 1], got {true_class_mass}")
  one_hot = jax.nn.one_hot(labels, num_classes)
  off_mass = (1.0 - true_class_mass) / (num_classes - 1)
  return one_hot * true_class_mass + (1.0 - one_hot) * off_mass


def cross_entropy(logits: jax.Array, labels: jax.Array, true_class_mass: float = 1.0) -> jax.Array:
  """Batch-mean cross-entropy; label-smoothed when true_class_mass < 1 (LSCE_f)."""
  if true_class_mass == 1.0:
    return jnp.mean(per_example.cross_entropy(logits, labels))
  targets = smoothed_targets(labels, logits.shape[-1], true_class_mass)
  return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def kl_batchmean(target_logits: jax.Array, logits: jax.Array) -> jax.Array:
  """(1/B) sum_i KL(softmax(target_logits_i) || softmax(logits_i)); gradients flow into
  both arguments unless the caller stops them."""
  return jnp.mean(per_example.kl_divergence(target_logits, logits))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of argmax(logits) == labels, float32 scalar."""
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
