"""AWP: the per-layer relative perturbation and the proxy step by hand, the warm-up, and the
engine's perturb -> optimiser step -> restore, by hand on a tiny pytree and with the real
method on a tiny BatchNorm CNN (the proxy's statistics must not leak into the model's)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxat.methods.awp import (AWP, adversarial_weight_perturbation, proxy_ascent,
                               relative_perturbation, weight_perturbation_config)
from jaxat.methods.base import Batch, Method, StepContext, epoch_start_info
from jaxat.methods.pgd_at import PGDAT
from jaxat.models.forward import ModelFn
from jaxat.models.small_cnn import SmallCNN
from jaxat.train import keys, sharding
from jaxat.train.state import TrainState
from jaxat.train.step import build_step_fn
from tiny_runs import load_config

PARAMS = {
    "dense": {"kernel": jnp.array([[3.0, 4.0]]), "bias": jnp.array([1.0])},
    "conv": {"kernel": jnp.array([0.0, 2.0]).reshape(1, 1, 1, 2)},
    "bn": {"scale": jnp.array([1.0, 1.0]), "bias": jnp.array([0.0, 0.0])},
    "table": {"embedding": jnp.array([[1.0, 1.0]])},
}
# A loss linear in the parameters: its gradient is COEFFICIENTS, exactly.
COEFFICIENTS = {
    "dense": {"kernel": jnp.array([[1.0, 0.0]]), "bias": jnp.array([1.0])},
    "conv": {"kernel": jnp.array([1.0, 0.0]).reshape(1, 1, 1, 2)},
    "bn": {"scale": jnp.array([1.0, 1.0]), "bias": jnp.array([1.0, 1.0])},
    "table": {"embedding": jnp.array([[1.0, 1.0]])},
}


def linear_loss(params):
  return sum(jnp.sum(p * c) for p, c in zip(jax.tree.leaves(params), jax.tree.leaves(COEFFICIENTS)))


def test_proxy_ascent_is_one_plain_sgd_step_up_the_loss():
  proxy = proxy_ascent(linear_loss, PARAMS, 0.5)
  np.testing.assert_array_equal(proxy["dense"]["kernel"], [[3.5, 4.0]])
  np.testing.assert_array_equal(proxy["dense"]["bias"], [1.5])
  np.testing.assert_array_equal(proxy["conv"]["kernel"].ravel(), [0.5, 2.0])


def test_relative_perturbation_by_hand_only_for_kernels():
  v = relative_perturbation(PARAMS, proxy_ascent(linear_loss, PARAMS, 0.5))
  # dense: ||w|| = 5, d = (0.5, 0) -> v = 5 / 0.5 · d = (5, 0).
  np.testing.assert_allclose(v["dense"]["kernel"], [[5.0, 0.0]], rtol=1e-6)
  # conv: ||w|| = 2, d = (0.5, 0) -> v = (2, 0); the layer's norm is kept: ||v|| = ||w||.
  np.testing.assert_allclose(v["conv"]["kernel"].ravel(), [2.0, 0.0], rtol=1e-6)
  # Biases, BatchNorm parameters and 2-D leaves that are not kernels are not perturbed.
  for leaf in (v["dense"]["bias"], v["bn"]["scale"], v["bn"]["bias"], v["table"]["embedding"]):
    np.testing.assert_array_equal(leaf, np.zeros_like(leaf))


def test_zero_proxy_step_gives_zero_perturbation():
  v = relative_perturbation(PARAMS, PARAMS)
  for leaf in jax.tree.leaves(v):
    np.testing.assert_array_equal(leaf, np.zeros_like(leaf))


def test_warm_up_switches_on_at_the_given_epoch():
  cfg = weight_perturbation_config(gamma=0.1, warmup_epochs=2, proxy_lr=0.5)
  perturb = jax.jit(lambda epoch: adversarial_weight_perturbation(linear_loss, PARAMS, cfg, epoch))
  for leaf in jax.tree.leaves(perturb(jnp.int32(1))):
    np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
  np.testing.assert_allclose(perturb(jnp.int32(2))["dense"]["kernel"], [[0.5, 0.0]], rtol=1e-6)
  np.testing.assert_allclose(perturb(jnp.int32(7))["conv"]["kernel"].ravel(), [0.2, 0.0], rtol=1e-6)


class _FixedPerturbation(Method):
  """Loss linear in one parameter, a fixed perturbation: the engine's arithmetic by hand."""

  name = "fixed_perturbation"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict({"name": cls.name})

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    return {}, batch_stats, method_state, {}

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    return jnp.sum(params["w"]), (batch_stats, {})

  def weight_perturbation(self, ctx, params, batch_stats, batch, prepared, key, info):
    return {"w": jnp.array([1.0, 0.0])}


def engine_config(seed=0):
  return ml_collections.ConfigDict(dict(
      seed=seed, ema=dict(decay=0.0), augment=dict(crop_padding=0, padding_mode="zero", flip=False)))


def tiny_data(n=8, size=4):
  images = jax.random.randint(jax.random.key(5), (n, size, size, 1), 0, 256).astype(jnp.uint8)
  labels = (jnp.arange(n) % 3).astype(jnp.int32)
  return images, labels, jnp.arange(n, dtype=jnp.int32)


def test_engine_steps_at_the_perturbed_weights_and_restores_exactly():
  # Weight decay 0.5, lr 0.5, momentum 0.9 (fresh buffer). w = (3, 3), v = (1, 0):
  # at w + v = (4, 3) the gradient is 1 + 0.5·(4, 3) = (3, 2.5), the step -0.5·(3, 2.5);
  # restoring gives (4 - 1.5 - 1, 3 - 1.25) = (1.5, 1.75) — exact in float32.
  tx = optax.chain(optax.add_decayed_weights(0.5), optax.sgd(0.5, momentum=0.9))
  params = {"w": jnp.array([3.0, 3.0])}
  ctx = StepContext(model=None, num_classes=3, num_train=8, image_shape=(4, 4, 1),
                    steps_per_epoch=2, num_epochs=1, batch_size=4)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                     opt_state=tx.init(params), ema_params={}, ema_batch_stats={}, method_state={})
  step_fn = build_step_fn(_FixedPerturbation(_FixedPerturbation.default_config()), ctx, tx,
                          engine_config(), sharding.make_mesh(1), optax.constant_schedule(0.5))
  new_state, _ = jax.jit(step_fn)(state, *tiny_data())
  np.testing.assert_array_equal(new_state.params["w"], [1.5, 1.75])
  # Without the perturbation the decay would act on (3, 3): (3 - 0.5·2.5, ...) = (1.75, 1.75).


def tiny_cnn_run(method, seed=0):
  """One jitted engine step of `method` on a 3-class BatchNorm CNN; returns (state, new_state, ctx)."""
  module = SmallCNN(num_classes=3, channels=(2, 3), batch_norm=True)
  ctx = StepContext(model=ModelFn(module), num_classes=3, num_train=8, image_shape=(4, 4, 1),
                    steps_per_epoch=2, num_epochs=1, batch_size=4)
  init = jax.jit(lambda key: module.init(key, jnp.zeros((1, 4, 4, 1)), train=False))
  variables = init(jax.random.key(seed))
  tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
  params, batch_stats = variables["params"], variables["batch_stats"]
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                     opt_state=tx.init(params), ema_params={}, ema_batch_stats={}, method_state={})
  step_fn = build_step_fn(method, ctx, tx, engine_config(seed), sharding.make_mesh(1),
                          optax.constant_schedule(0.1))
  new_state, _ = jax.jit(step_fn)(state, *tiny_data())
  return state, new_state, ctx, tx


def awp_method(gamma, base="pgd_at", **attack):
  cfg = AWP.default_config(base)
  cfg.weight_perturbation.gamma = gamma
  cfg.attack.update(eps=16 / 255, step_size=4 / 255, num_steps=2, **attack)
  AWP.validate(cfg, 3)
  return AWP(cfg)


def test_awp_step_by_hand_on_a_tiny_cnn():
  method = awp_method(gamma=0.5)
  state, new_state, ctx, tx = tiny_cnn_run(method)
  # The engine's batch and keys for step 0, recomputed: the permutation is arange(8), so
  # the first batch is rows 0..3 (no augmentation).
  images, labels, _ = tiny_data()
  batch = Batch(images[:4].astype(jnp.float32) / 255.0, labels[:4], jnp.arange(4, dtype=jnp.int32))
  _, key_prepare, key_perturb, key_loss = jax.random.split(
      jax.random.fold_in(keys.stream(0, keys.STEP), 0), 4)
  info = epoch_start_info(0, ctx)

  @jax.jit
  def by_hand(params, batch_stats, opt_state):
    prepared, stats, _, _ = method.prepare(ctx, params, batch_stats, {}, batch, key_prepare, info)
    v = method.weight_perturbation(ctx, params, stats, batch, prepared, key_perturb, info)
    perturbed = jax.tree.map(jnp.add, params, v)
    loss_fn = lambda p: method.loss(ctx, p, stats, batch, prepared, key_loss, info)
    (_, (stats_after, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(perturbed)
    updates, _ = tx.update(grads, opt_state, perturbed)
    restored = jax.tree.map(jnp.subtract, optax.apply_updates(perturbed, updates), v)
    # The same step at the unperturbed weights, for contrast.
    (_, _), plain_grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    plain_updates, _ = tx.update(plain_grads, opt_state, params)
    return restored, stats_after, optax.apply_updates(params, plain_updates), v

  restored, stats_after, plain, v = by_hand(state.params, state.batch_stats, state.opt_state)
  # Only conv and dense kernels move, each by gamma·||w_l||.
  for path, leaf in jax.tree_util.tree_flatten_with_path(v)[0]:
    weight = state.params
    for entry in path:
      weight = weight[entry.key]
    if path[-1].key == "kernel":
      np.testing.assert_allclose(jnp.linalg.norm(leaf), 0.5 * jnp.linalg.norm(weight), rtol=1e-5)
    else:
      np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
  # Separately compiled programs may differ in the last bit; the exact arithmetic of
  # perturb -> step -> restore is the hand-computed test above.
  for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(restored)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  # BatchNorm statistics are those of the forward at the perturbed weights (no proxy leak).
  for got, want in zip(jax.tree.leaves(new_state.batch_stats), jax.tree.leaves(stats_after)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  moved = max(float(jnp.max(jnp.abs(a - b)))
              for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(plain)))
  assert moved > 1e-4  # the gradient was taken at the perturbed point


def test_gamma_zero_is_exactly_the_base_method_step():
  _, awp_state, _, _ = tiny_cnn_run(awp_method(gamma=0.0))
  base_cfg = PGDAT.default_config()
  base_cfg.attack.update(eps=16 / 255, step_size=4 / 255, num_steps=2)
  _, base_state, _, _ = tiny_cnn_run(PGDAT(base_cfg))
  for a, b in zip(jax.tree.leaves((awp_state.params, awp_state.batch_stats)),
                  jax.tree.leaves((base_state.params, base_state.batch_stats))):
    np.testing.assert_array_equal(a, b)


def test_official_defaults_and_presets():
  at = AWP.default_config()
  assert (at.base, at.weight_perturbation.gamma, at.weight_perturbation.warmup_epochs,
          at.weight_perturbation.proxy_lr) == ("pgd_at", 0.01, 0, 0.01)
  assert at.attack.bn_mode == "train" and at.attack.init == "uniform"
  trades = AWP.default_config("trades")
  assert (trades.weight_perturbation.gamma, trades.weight_perturbation.warmup_epochs,
          trades.weight_perturbation.proxy_lr, trades.beta) == (0.005, 9, 0.1, 6.0)
  assert trades.attack.objective == "kl" and trades.attack.step_size == pytest.approx(2 / 255)
  assert load_config("awp", "cifar10").augment.padding_mode == "reflect"
  assert load_config("awp", "svhn").method.weight_perturbation.warmup_epochs == 5
  c10_trades = load_config("awp", "cifar10,trades")
  assert (c10_trades.model.name, c10_trades.num_epochs, c10_trades.schedule.per_epoch) == (
      "wide_resnet", 200, True)


def test_fields_of_another_base_are_refused():
  cfg = AWP.default_config("pgd_at")
  with cfg.unlocked():
    cfg.base = "trades"
  with pytest.raises(ValueError, match="configs/awp.py:<dataset>,trades"):
    AWP.validate(cfg)


@pytest.mark.parametrize("path, value, match", [
    ("base", "awp", "grad_align, hat, iat, mart, n_fgsm, pgd_at"),
    ("weight_perturbation.gamma", -0.01, "gamma"),
    ("weight_perturbation.warmup_epochs", -1, "warmup_epochs"),
    ("weight_perturbation.proxy_lr", 0.0, "proxy_lr"),
    ("attack.bn_mode", "frozen", "bn_mode"),
])
def test_invalid_fields_are_refused(path, value, match):
  cfg = AWP.default_config()
  cfg.update_from_flattened_dict({path: value})
  with pytest.raises(ValueError, match=match):
    AWP.validate(cfg)


def test_config_arg_with_two_bases_is_refused():
  with pytest.raises(ValueError, match="several AWP base methods"):
    load_config("awp", "digits,pgd_at,trades")


def test_awp_wraps_a_method_with_its_own_state_end_to_end():
  # UIAT keeps class-wise perturbations and a per-example momentum buffer in method_state:
  # under AWP they are created, updated and kept exactly as by UIAT alone.
  from tiny_runs import train_all_epochs
  config = load_config("awp", "synthetic,uiat,smoke")
  config.update_from_flattened_dict({"num_epochs": 2, "batch_size": 32, "dataset.max_train": 96,
                                     "dataset.num_train": 96, "method.attack.num_steps": 1,
                                     "method.momentum_start": 0.5, "log.progress": "none"})
  assert (config.method.name, config.method.base) == ("awp", "uiat")
  exp, state, sums = train_all_epochs(config)
  assert np.isfinite(sums["loss"]) and sums["count"] == 2 * exp.ctx.steps_per_epoch
  written = np.asarray(state.method_state["target"]["written_epoch"])
  assert written.max() == 1 and set(state.method_state) == {"universal", "target"}
