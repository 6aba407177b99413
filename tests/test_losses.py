"""Batch-reduced training losses (jaxat/methods/losses.py) against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxat.methods import losses


def test_smoothed_targets_put_the_true_class_mass_on_the_label():
  got = losses.smoothed_targets(jnp.array([0, 2]), 3, 0.7)
  np.testing.assert_allclose(got, [[0.7, 0.15, 0.15], [0.15, 0.15, 0.7]], rtol=1e-6)


def test_true_class_mass_one_is_one_hot():
  np.testing.assert_array_equal(losses.smoothed_targets(jnp.array([1]), 4, 1.0), [[0, 1, 0, 0]])


def test_label_smoothed_cross_entropy_by_hand():
  # softmax = (0.5, 0.25, 0.25); targets (0.7, 0.15, 0.15):
  # -(0.7 log 0.5 + 0.3 log 0.25) = 0.7 log 2 + 0.6 log 2 = 1.3 log 2.
  logits = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
  got = losses.cross_entropy(logits, jnp.array([0]), true_class_mass=0.7)
  np.testing.assert_allclose(got, 1.3 * math.log(2.0), rtol=1e-6)


def test_plain_cross_entropy_is_the_batch_mean():
  logits = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]))
  got = losses.cross_entropy(logits, jnp.array([0, 1]))
  np.testing.assert_allclose(got, (math.log(2.0) + math.log(4.0)) / 2, rtol=1e-6)


def test_true_class_mass_is_not_optax_smoothing_alpha():
  # f = 1 - alpha (K - 1) / K: alpha = 0.3 with K = 3 is f = 0.8, not 0.7.
  logits = jnp.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
  labels = jnp.array([0, 2])
  alpha = 0.3
  reference = optax.softmax_cross_entropy(logits, optax.smooth_labels(jnp.eye(3)[labels], alpha)).mean()
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, 1 - alpha * 2 / 3), reference, rtol=1e-6)
  assert abs(float(losses.cross_entropy(logits, labels, 1 - alpha)) - float(reference)) > 1e-3


def test_uniform_logits_give_log_k_whatever_the_smoothing():
  logits = jnp.zeros((2, 4))
  for mass in (1.0, 0.9, 0.25):
    got = losses.cross_entropy(logits, jnp.array([0, 3]), mass)
    np.testing.assert_allclose(got, math.log(4.0), rtol=1e-6)


@pytest.mark.parametrize("mass", [0.0, -0.1, 1.5])
def test_invalid_true_class_mass_is_refused(mass):
  with pytest.raises(ValueError, match="true_class_mass"):
    losses.smoothed_targets(jnp.array([0]), 3, mass)


def test_kl_batchmean_by_hand():
  # KL((0.5, 0.5) || (0.25, 0.75)) = 0.5 log 2 + 0.5 log(2/3); the second row has KL 0.
  target = jnp.log(jnp.array([[0.5, 0.5], [0.3, 0.7]]))
  logits = jnp.log(jnp.array([[0.25, 0.75], [0.3, 0.7]]))
  expected = (0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)) / 2
  np.testing.assert_allclose(losses.kl_batchmean(target, logits), expected, rtol=1e-5, atol=1e-7)


def test_accuracy():
  logits = jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
  assert float(losses.accuracy(logits, jnp.array([0, 0, 0]))) == pytest.approx(2 / 3)


def test_kl_gradients_stay_finite_when_a_target_probability_underflows():
  # softmax((0, 200, 0)) is exactly (0, 1, 0) in float32; PyTorch's kl_div masks the
  # target gradient there, xlogy(p, p) would give NaN.
  target = jnp.array([[0.0, 200.0, 0.0]])
  logits = jnp.array([[1.0, 2.0, 3.0]])
  target_grad, logits_grad = jax.grad(losses.kl_batchmean, argnums=(0, 1))(target, logits)
  assert np.all(np.isfinite(target_grad)) and np.all(np.isfinite(logits_grad))
  # KL((0, 1, 0) || softmax(1, 2, 3)) = -log softmax(1, 2, 3)_1.
  np.testing.assert_allclose(losses.kl_batchmean(target, logits),
                             -float(jax.nn.log_softmax(logits)[0, 1]), rtol=1e-6)


def test_kl_from_probabilities_has_finite_gradients_at_zero_target_mass():
  from jaxat.attacks import losses as attack_losses
  target = jnp.array([[0.0, 1.0, 0.0]])
  logits = jnp.array([[1.0, 2.0, 3.0]])
  kl = lambda p, z: jnp.sum(attack_losses.kl_divergence_from_probs(p, z))
  target_grad, logits_grad = jax.grad(kl, argnums=(0, 1))(target, logits)
  assert np.all(np.isfinite(target_grad)) and np.all(np.isfinite(logits_grad))
  np.testing.assert_allclose(kl(target, logits), -float(jax.nn.log_softmax(logits)[0, 1]), rtol=1e-6)
