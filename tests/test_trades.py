"""TRADES: the loss by hand, x_adv = x reduces it to CE, gradients into both branches,
the BatchNorm effect of the official second clean forward, the attack and the preset."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.methods.base import Batch, StepContext, epoch_start_info
from jaxat.methods.trades import TRADES, trades_loss
from jaxat.models.forward import ModelFn
from jaxat.models.small_cnn import SmallCNN
from jaxat.train.schedules import make_schedule
from finite_differences import central_difference_gradient
from tiny_runs import load_config


def tiny_model_and_batch(seed=0):
  module = SmallCNN(num_classes=3, channels=(2, 3), batch_norm=True)
  ctx = StepContext(model=ModelFn(module), num_classes=3, num_train=4, image_shape=(4, 4, 1),
                    steps_per_epoch=1, num_epochs=1, batch_size=4)
  # jit: an eager Flax init compiles every primitive on its own (seconds on a busy CPU).
  variables = jax.jit(lambda key: module.init(key, jnp.zeros((1, 4, 4, 1)), train=False))(
      jax.random.key(seed))
  images = jax.random.uniform(jax.random.key(seed + 1), (4, 4, 4, 1))
  batch = Batch(images, jnp.array([0, 1, 2, 1], jnp.int32), jnp.arange(4, dtype=jnp.int32))
  return ctx, variables["params"], variables["batch_stats"], batch


def method(**fields):
  cfg = TRADES.default_config()
  cfg.update(fields)
  TRADES.validate(cfg)
  return TRADES(cfg)


def test_trades_loss_by_hand():
  # natural: CE of softmax (0.5, 0.25, 0.25) at label 0 = log 2.
  # robust: KL((0.5, 0.25, 0.25) || (0.25, 0.5, 0.25)) = 0.5 log 2 + 0.25 log(1/2) = 0.25 log 2.
  clean = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
  adv = jnp.log(jnp.array([[0.25, 0.5, 0.25]]))
  loss, natural, robust = trades_loss(clean, adv, clean, jnp.array([0]), beta=6.0)
  np.testing.assert_allclose(natural, math.log(2.0), rtol=1e-6)
  np.testing.assert_allclose(robust, 0.25 * math.log(2.0), rtol=1e-5)
  np.testing.assert_allclose(loss, math.log(2.0) * (1 + 6 * 0.25), rtol=1e-5)


def test_the_kl_target_is_not_detached():
  # The autodiff gradient of the loss through the clean branch (CE and KL target) equals
  # the derivative of its value; a detached target would leave out beta * dKL/dtarget.
  clean = np.array([[1.0, 0.0, -1.0], [0.2, -0.5, 0.4]])
  adv = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.3, -0.2]])
  labels = jnp.array([0, 2])

  def loss_of_clean(logits):
    logits = jnp.asarray(logits, jnp.float32)
    return trades_loss(logits, adv, logits, labels, 6.0)[0]

  numeric = central_difference_gradient(loss_of_clean, clean)
  np.testing.assert_allclose(jax.grad(loss_of_clean)(jnp.asarray(clean, jnp.float32)), numeric,
                             atol=2e-4)
  ce_only = (jax.nn.softmax(clean) - np.eye(3)[[0, 2]]) / 2   # what a detached target leaves
  assert np.max(np.abs(numeric - ce_only)) > 0.1


@pytest.mark.parametrize("kl_target_forward", ["separate", "shared"])
def test_adversarial_equal_to_clean_gives_plain_cross_entropy(kl_target_forward):
  ctx, params, batch_stats, batch = tiny_model_and_batch()
  trades = method(kl_target_forward=kl_target_forward)
  loss, (_, metrics) = jax.jit(trades.loss, static_argnums=0)(
      ctx, params, batch_stats, batch, {"x_adv": batch.images}, jax.random.key(0), epoch_start_info(0, ctx))
  logits, _, _ = jax.jit(ctx.model, static_argnums=3)(params, batch_stats, batch.images, "train")
  ce = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), batch.labels])
  np.testing.assert_allclose(loss, ce, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(metrics["robust_loss"], 0.0, atol=1e-6)


def test_second_clean_forward_changes_only_the_running_statistics():
  ctx, params, batch_stats, batch = tiny_model_and_batch()
  x_adv = jnp.clip(batch.images + 0.1 * jnp.sign(jnp.sin(7.0 * batch.images)), 0.0, 1.0)
  prepared = {"x_adv": x_adv}
  results = {}
  for option in ("separate", "shared"):
    trades = method(kl_target_forward=option)
    loss_fn = lambda p: trades.loss(ctx, p, batch_stats, batch, prepared, jax.random.key(0), epoch_start_info(0, ctx))
    (loss, (stats, _)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    results[option] = (loss, stats, grads)
  np.testing.assert_allclose(results["separate"][0], results["shared"][0], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(results["separate"][2]), jax.tree.leaves(results["shared"][2])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # Running means start at 0; one train-mode forward from 0 leaves 0.1·batch mean.
  forward = jax.jit(ctx.model, static_argnums=3)
  after_clean = forward(params, batch_stats, batch.images, "train")[2]
  after_adv = forward(params, batch_stats, x_adv, "train")[2]
  for layer in ("bn1", "bn2"):
    clean_part, adv_part = after_clean[layer]["mean"], after_adv[layer]["mean"]
    # separate: clean, adv, clean -> 0.181 c + 0.09 a; shared: clean, adv -> 0.09 c + 0.1 a.
    np.testing.assert_allclose(results["separate"][1][layer]["mean"],
                               1.81 * clean_part + 0.9 * adv_part, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(results["shared"][1][layer]["mean"],
                               0.9 * clean_part + adv_part, rtol=1e-5, atol=1e-7)


def test_the_second_clean_forward_adds_no_convolution_to_the_gradient():
  # 'separate' replays the official second clean forward's running-average update: the
  # compiled loss-and-gradient holds exactly the convolutions of 'shared' (two forwards,
  # two backwards). Running or differentiating that forward adds some (a third forward's
  # convolutions that XLA does not merge with the first's, or a third backward).
  ctx, params, batch_stats, batch = tiny_model_and_batch()
  prepared = {"x_adv": jnp.clip(batch.images + 0.1, 0.0, 1.0)}
  counts = {}
  for option in ("separate", "shared"):
    trades = method(kl_target_forward=option)
    loss_fn = lambda p: trades.loss(ctx, p, batch_stats, batch, prepared, jax.random.key(0),
                                    epoch_start_info(0, ctx))
    text = jax.jit(jax.value_and_grad(loss_fn, has_aux=True)).lower(params).compile().as_text()
    counts[option] = text.count(" convolution(")
  assert counts["shared"] > 0
  assert counts["separate"] == counts["shared"], counts


def test_the_attack_is_the_kl_attack_in_eval_mode_inside_the_ball():
  ctx, params, batch_stats, batch = tiny_model_and_batch()
  trades = method()
  prepared, stats, _, _ = jax.jit(trades.prepare, static_argnums=0)(
      ctx, params, batch_stats, {}, batch, jax.random.key(3), jnp.int32(0))
  x_adv = prepared["x_adv"]
  assert float(jnp.max(jnp.abs(x_adv - batch.images))) <= 0.031 + 1e-6
  assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0
  # Ten steps of 0.007 reach the 0.031 boundary somewhere.
  assert float(jnp.max(jnp.abs(x_adv - batch.images))) > 0.03
  # Eval-mode attack: the running statistics are untouched.
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(batch_stats)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("field, value, match", [
    ("kl_target_forward", "twice", "separate, shared"),
    ("beta", -1.0, "method.beta"),
    ("label_smoothing", 0.0, "true-class mass"),
])
def test_invalid_fields_are_refused(field, value, match):
  cfg = TRADES.default_config()
  cfg[field] = value
  with pytest.raises(ValueError, match=match):
    TRADES.validate(cfg)


def test_official_cifar10_preset_decays_at_epoch_75_of_76():
  config = load_config("trades", "cifar10")
  assert (config.model.name, config.model.depth, config.model.width) == ("wide_resnet", 34, 10)
  assert config.method.beta == 6.0 and config.optimizer.weight_decay == 2e-4
  assert config.method.attack.objective == "kl" and config.method.attack.bn_mode == "eval"
  schedule = make_schedule(config.schedule, 10, config.num_epochs)
  # 1-based epoch e covers steps 10(e-1) .. 10e-1.
  lrs = {epoch: float(schedule(10 * (epoch - 1))) for epoch in (1, 74, 75, 76)}
  np.testing.assert_allclose([lrs[1], lrs[74], lrs[75], lrs[76]], [0.1, 0.1, 0.01, 0.01], rtol=1e-6)
  assert float(schedule(10 * 75 - 1)) == pytest.approx(0.01)
