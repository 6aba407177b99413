"""HAT: the loss by hand (TRADES- and AT-based), helper examples and helper labels, the
helper in method_state, the helper's config and validation. (The end-to-end run that
trains its own helper is in test_trades_mart_awp_hat_runs.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.methods.base import Batch, StepContext, epoch_start_info
from jaxat.methods.hat import HAT, HelperModel, hat_loss, helper_config
from jaxat.models.forward import ModelFn
from jaxat.models.small_cnn import SmallCNN
from finite_differences import central_difference_gradient
from tiny_runs import load_config, tiny_config

CLEAN = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
ADV = jnp.log(jnp.array([[0.25, 0.5, 0.25]]))
HELPER = jnp.log(jnp.array([[0.25, 0.25, 0.5]]))


def test_trades_based_loss_by_hand():
  # CE(clean, 0) = log 2; KL(clean || adv) = 0.25 log 2; CE(helper, ŷ = 2) = log 2.
  loss, natural, robust, helper = hat_loss(CLEAN, ADV, HELPER, jnp.array([0]), jnp.array([2]),
                                           beta=2.5, gamma=0.5)
  np.testing.assert_allclose([natural, robust, helper],
                             [math.log(2), 0.25 * math.log(2), math.log(2)], rtol=1e-5)
  np.testing.assert_allclose(loss, math.log(2) * (1 + 2.5 * 0.25 + 0.5), rtol=1e-5)


def test_at_based_loss_by_hand():
  # robust = CE(adv, 0) = log 4.
  loss, _, robust, _ = hat_loss(CLEAN, ADV, HELPER, jnp.array([0]), jnp.array([2]),
                                beta=2.5, gamma=0.5, robust_loss="ce")
  np.testing.assert_allclose(robust, math.log(4), rtol=1e-6)
  np.testing.assert_allclose(loss, math.log(2) + 2.5 * math.log(4) + 0.5 * math.log(2), rtol=1e-5)


def test_kl_target_is_not_detached():
  # The autodiff gradient through the clean logits (CE and KL target) equals the derivative
  # of the loss value; a detached KL target would leave out beta * dKL/dclean.
  def loss_of_clean(logits):
    return hat_loss(jnp.asarray(logits, jnp.float32), ADV, HELPER, jnp.array([0]),
                    jnp.array([2]), 2.5, 0.5)[0]

  clean = np.asarray(CLEAN, np.float64)
  numeric = central_difference_gradient(loss_of_clean, clean)
  np.testing.assert_allclose(jax.grad(loss_of_clean)(CLEAN), numeric, atol=2e-4)
  ce_only = jax.nn.softmax(clean) - np.eye(3)[[0]]   # what a detached target leaves
  assert np.max(np.abs(numeric - ce_only)) > 0.1


def tiny_cnn(seed):
  module = SmallCNN(num_classes=3, channels=(2, 3), batch_norm=True)
  init = jax.jit(lambda key: module.init(key, jnp.zeros((1, 4, 4, 1)), train=False))
  variables = init(jax.random.key(seed))
  return ModelFn(module), variables["params"], variables["batch_stats"]


@pytest.fixture(scope="module")
def hat_with_helper():
  model, params, batch_stats = tiny_cnn(0)
  helper_model, helper_params, helper_stats = tiny_cnn(1)
  cfg = HAT.default_config()
  cfg.attack.update(eps=16 / 255, step_size=8 / 255, num_steps=3)
  method = HAT(cfg)
  method.attach_helper(HelperModel(model=helper_model, params=helper_params, batch_stats=helper_stats,
                                   num_classes=3, image_shape=(4, 4, 1), workdir="in-memory"))
  ctx = StepContext(model=model, num_classes=3, num_train=6, image_shape=(4, 4, 1),
                    steps_per_epoch=1, num_epochs=1, batch_size=6)
  return method, ctx, params, batch_stats


def test_helper_examples_are_unclipped_and_labelled_by_the_helper_on_x_adv(hat_with_helper):
  method, ctx, params, batch_stats = hat_with_helper
  images = jax.random.uniform(jax.random.key(2), (6, 4, 4, 1))
  batch = Batch(images, jnp.array([0, 1, 2, 0, 1, 2], jnp.int32), jnp.arange(6, dtype=jnp.int32))
  state = method.init_state(jax.random.key(0), ctx, params, batch_stats)
  prepared, _, new_state, metrics = jax.jit(method.prepare, static_argnums=0)(
      ctx, params, batch_stats, state, batch, jax.random.key(4), epoch_start_info(0, ctx))
  x_adv, x_helper = prepared["x_adv"], prepared["x_helper"]
  np.testing.assert_allclose(x_helper, images + 2.0 * (x_adv - images), rtol=1e-6, atol=1e-7)
  # h = 2: up to twice the attack radius, not projected back to the eps-ball.
  assert float(jnp.max(jnp.abs(x_helper - images))) > 16 / 255 + 1e-3
  helper = state["helper"]
  helper_logits = jax.jit(method._require_helper().model.logits, static_argnums=3)(
      helper["params"], helper["batch_stats"], x_adv, "eval")
  expected = jnp.argmax(helper_logits, -1)
  np.testing.assert_array_equal(prepared["helper_labels"], expected)
  np.testing.assert_allclose(metrics["helper_label_agreement"], jnp.mean(expected == batch.labels), rtol=1e-6)
  # The helper rides in method_state unchanged.
  for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)


def test_helper_of_another_label_space_is_refused(hat_with_helper):
  method, ctx, params, batch_stats = hat_with_helper
  other = StepContext(model=ctx.model, num_classes=10, num_train=6, image_shape=(4, 4, 1),
                      steps_per_epoch=1, num_epochs=1, batch_size=6)
  with pytest.raises(ValueError, match="classifies 3 classes"):
    method.init_state(jax.random.key(0), other, params, batch_stats)


def test_without_prerequisites_the_helper_is_asked_for():
  with pytest.raises(RuntimeError, match="prerequisites"):
    HAT(HAT.default_config()).init_state(None, None, None, None)


def test_helper_config_is_standard_training_of_the_same_setup():
  config = tiny_config("hat")
  helper = helper_config(config, 3)
  assert helper.method.name == "standard" and helper.num_epochs == 3
  for field in ("dataset", "model", "optimizer", "schedule", "augment"):
    assert helper[field].to_dict() == config[field].to_dict(), field
  assert helper.seed == config.seed and helper.eval.final_attacks == "clean"


def test_readme_recipe_is_the_cifar10_preset():
  config = load_config("hat", "cifar10")
  assert (config.method.beta, config.method.gamma, config.method.h) == (2.5, 0.5, 2.0)
  assert (config.model.name, config.num_epochs, config.method.helper_epochs) == ("resnet18", 50, 50)
  assert (config.schedule.name, config.schedule.lr_max, config.optimizer.nesterov) == ("onecycle", 0.21, True)
  assert (config.method.attack.objective, config.method.attack.bn_mode) == ("kl", "eval")


@pytest.mark.parametrize("field, value, match", [
    ("robust_loss", "mse", "kl, ce"),
    ("helper_checkpoint", "first", "last, best"),
    ("helper_epochs", 0, "helper_epochs"),
    ("gamma", -1.0, "method.gamma"),
    ("helper_workdir", "/nonexistent/run", "no config.json"),
])
def test_invalid_fields_are_refused(field, value, match):
  cfg = HAT.default_config()
  cfg[field] = value
  with pytest.raises(ValueError, match=match):
    HAT.validate(cfg)
