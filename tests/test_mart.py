"""MART: the loss and its weights by hand, gradients into the clean branch, the preset."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.methods.mart import MART, mart_loss, misclassification_weights, most_likely_wrong_class
from jaxat.train.schedules import make_schedule
from finite_differences import central_difference_gradient
from tiny_runs import load_config

# Two examples with hand-chosen probabilities (labels 0 and 2).
CLEAN_PROBS = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
ADV_PROBS = np.array([[0.5, 0.3, 0.2], [0.1, 0.7, 0.2]])
LABELS = jnp.array([0, 2])


def test_most_likely_wrong_class_skips_the_label():
  probs = jnp.array([[0.5, 0.3, 0.2], [0.1, 0.7, 0.2], [0.2, 0.1, 0.7]])
  np.testing.assert_array_equal(most_likely_wrong_class(probs, jnp.array([0, 2, 2])), [1, 1, 0])


def test_weights_are_one_minus_the_clean_true_class_probability():
  weights = misclassification_weights(jnp.log(jnp.asarray(CLEAN_PROBS)), LABELS)
  np.testing.assert_allclose(weights, [1.0000001 - 0.6, 1.0000001 - 0.6], rtol=1e-6)


def test_mart_loss_by_hand():
  clean, adv = jnp.log(jnp.asarray(CLEAN_PROBS)), jnp.log(jnp.asarray(ADV_PROBS))
  loss, adversarial, robust = mart_loss(clean, adv, LABELS, beta=6.0)
  # L_adv: CE(adv) = (-log 0.5 - log 0.2)/2; boosted: the wrong classes are 1 (0.3) and 1 (0.7).
  ce = (-math.log(0.5) - math.log(0.2)) / 2
  boost = (-math.log(1.0001 - 0.3 + 1e-12) - math.log(1.0001 - 0.7 + 1e-12)) / 2
  np.testing.assert_allclose(adversarial, ce + boost, rtol=1e-5)
  # L_rob: KL(nat || adv) per example times (1.0000001 - p_nat,y), averaged over the batch.
  kl0 = 0.6 * math.log(0.6 / 0.5) + 0.3 * math.log(0.3 / 0.3) + 0.1 * math.log(0.1 / 0.2)
  kl1 = 0.2 * math.log(0.2 / 0.1) + 0.2 * math.log(0.2 / 0.7) + 0.6 * math.log(0.6 / 0.2)
  expected_robust = (kl0 * (1.0000001 - 0.6) + kl1 * (1.0000001 - 0.6)) / 2
  np.testing.assert_allclose(robust, expected_robust, rtol=1e-5)
  np.testing.assert_allclose(loss, ce + boost + 6.0 * expected_robust, rtol=1e-5)


def test_clean_branch_gets_gradients_through_the_kl_target_and_the_weight():
  # The autodiff gradient through the clean logits (KL target and weight 1 - p_y) equals
  # the derivative of the loss value; detaching either would break the equality.
  clean, adv = np.log(CLEAN_PROBS), jnp.log(jnp.asarray(ADV_PROBS, jnp.float32))

  def loss_of_clean(logits):
    return mart_loss(jnp.asarray(logits, jnp.float32), adv, LABELS, 6.0)[0]

  def weights_of_clean(logits):
    return misclassification_weights(jnp.asarray(logits, jnp.float32), LABELS).sum()

  for fn in (loss_of_clean, weights_of_clean):
    numeric = central_difference_gradient(fn, clean)
    np.testing.assert_allclose(jax.grad(fn)(jnp.asarray(clean, jnp.float32)), numeric, atol=2e-4)
    assert np.max(np.abs(numeric)) > 0.05


def test_identical_predictions_leave_only_the_adversarial_term():
  logits = jnp.log(jnp.asarray(ADV_PROBS))
  loss, adversarial, robust = mart_loss(logits, logits, LABELS, beta=6.0)
  np.testing.assert_allclose(robust, 0.0, atol=1e-6)
  np.testing.assert_allclose(loss, adversarial, atol=6e-6)


def test_defaults_follow_the_official_code():
  cfg = MART.default_config()
  assert cfg.beta == 6.0
  assert (cfg.attack.objective, cfg.attack.init, cfg.attack.bn_mode) == ("ce", "normal", "eval")
  assert (cfg.attack.eps, cfg.attack.step_size, cfg.attack.num_steps) == (0.031, 0.007, 10)


@pytest.mark.parametrize("field, value, match", [
    ("beta", -0.5, "method.beta"),
    ("label_smoothing", 1.2, "true-class mass"),
])
def test_invalid_fields_are_refused(field, value, match):
  cfg = MART.default_config()
  cfg[field] = value
  with pytest.raises(ValueError, match=match):
    MART.validate(cfg)


@pytest.mark.parametrize("arg, model, beta, lr, decay_epochs", [
    ("cifar10", "wide_resnet", 6.0, 0.1, {74: 1.0, 75: 0.1, 89: 0.1, 90: 0.01}),
    ("cifar10,resnet18", "resnet18", 5.0, 0.01, {74: 1.0, 75: 0.1, 90: 0.01, 99: 0.01, 100: 0.001}),
])
def test_official_presets_decay_at_the_official_epochs(arg, model, beta, lr, decay_epochs):
  config = load_config("mart", arg)
  assert config.model.name == model and config.method.beta == beta
  schedule = make_schedule(config.schedule, 10, config.num_epochs)
  for epoch, factor in decay_epochs.items():  # 1-based epochs, as in mart's adjust_learning_rate
    assert float(schedule(10 * (epoch - 1))) == pytest.approx(lr * factor, rel=1e-6), epoch


def test_gradients_stay_finite_when_a_clean_probability_underflows():
  clean = jnp.array([[0.0, 200.0, 0.0], [1.0, 0.0, -1.0]])  # first row: p_nat = (0, 1, 0) exactly
  adv = jnp.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
  grads = jax.grad(lambda c, a: mart_loss(c, a, jnp.array([1, 0]), 6.0)[0], argnums=(0, 1))(clean, adv)
  assert all(np.all(np.isfinite(g)) for g in grads)
