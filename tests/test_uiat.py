"""UIAT / one-off UIAT / IAT (jaxat/methods/uiat.py): buffers, schedules, loss, configs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.config.validate import validate_config
from jaxat.methods import inverse
from jaxat.methods.base import Batch, StepContext, epoch_start_info
from jaxat.methods.pgd_at import PGDAT
from jaxat.methods.registry import get_method_class
from jaxat.methods.uiat import IAT, UIAT, UIATOneOff, oneoff_phase, phase_epoch
from jaxat.models.forward import ModelFn
from jaxat.train.experiment import build_experiment, epoch_permutation_fn
from jaxat.train.step import FIRST_NONFINITE
from tiny_runs import load_config, tiny_config, train_all_epochs

NUM_CLASSES, SHAPE, NUM_TRAIN = 3, (2, 2, 1), 7


class TinyLinear(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    features = x.reshape((x.shape[0], -1))
    return nn.Dense(NUM_CLASSES, name="dense")(features), features


def toy(num_epochs):
  module = TinyLinear()
  params = module.init(jax.random.key(0), jnp.zeros((1,) + SHAPE), train=False)["params"]
  ctx = StepContext(model=ModelFn(module), num_classes=NUM_CLASSES, num_train=NUM_TRAIN,
                    image_shape=SHAPE, steps_per_epoch=2, num_epochs=num_epochs, batch_size=3)
  key = jax.random.key(1)
  images = jax.random.uniform(key, (NUM_TRAIN,) + SHAPE, minval=0.2, maxval=0.8)
  labels = jnp.array([0, 1, 2, 0, 1, 2, 0])
  return ctx, params, images, labels


def batch_of(images, labels, indices):
  indices = jnp.asarray(indices, jnp.int32)
  return Batch(images[indices], labels[indices], indices)


def jitted_prepare(method, ctx):
  # Compiled once: the epoch is an array, so phase switches must not be Python ifs.
  return jax.jit(lambda params, state, batch, key, epoch: method.prepare(
      ctx, params, {}, state, batch, key, epoch_start_info(epoch, ctx)))


def jitted_step(method, ctx):
  """(params, state, batch, key, epoch) -> (prepared, new state, loss, loss metrics, grads)."""

  @jax.jit
  def step(params, state, batch, key, epoch):
    info = epoch_start_info(epoch, ctx)
    prepared, _, new_state, _ = method.prepare(ctx, params, {}, state, batch, key, info)
    loss_fn = lambda p: method.loss(ctx, p, {}, batch, prepared, key, info)
    (loss, (_, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return prepared, new_state, loss, metrics, grads

  return step


def probs_at(ctx, params, x):
  return jax.nn.softmax(ctx.model(params, {}, x, "eval")[0], axis=-1)


def shifted(params, amount):
  """Different weights, standing in for the training between two epochs."""
  return jax.tree.map(lambda p: p + amount, params)


def test_phase_epochs_are_fractions_of_training():
  assert phase_epoch(0.75, 100) == 75 and phase_epoch(0.8, 100) == 80
  assert phase_epoch(0.875, 400) == 350 and phase_epoch(0.8, 400) == 320
  assert phase_epoch(0.8, 30) == 24 and phase_epoch(0.8, 2) == 1 and phase_epoch(0.29, 100) == 29
  phases = [int(oneoff_phase(jnp.int32(e), 80)) for e in (0, 79, 80, 81, 99)]
  assert phases == [0, 0, 1, 2, 2]


def test_momentum_buffer_follows_eq8_over_two_epochs():
  ctx, params, images, labels = toy(num_epochs=2)
  cfg = UIAT.default_config()
  cfg.update_from_flattened_dict({"momentum_start": 0.5, "attack.num_steps": 1})  # T = epoch 1
  method = UIAT(cfg)
  state = method.init_state(jax.random.key(2), ctx, params, {})
  assert state["target"]["probs"].shape == (NUM_TRAIN, NUM_CLASSES)
  np.testing.assert_array_equal(state["target"]["written_epoch"], -1)
  prepare = jitted_prepare(method, ctx)
  gamma = np.float32(cfg.gamma)
  # Epoch 0 sees 0..5 (index 6 is dropped); epoch 1 sees 6, 0, 3, 5, 1, 2 (index 4 dropped).
  schedule = [(0, [3, 1, 4], params), (0, [0, 2, 5], params),
              (1, [6, 0, 3], shifted(params, 0.3)), (1, [5, 1, 2], shifted(params, -0.2))]
  expected = np.zeros((NUM_TRAIN, NUM_CLASSES), np.float32)
  expected_epoch = np.full((NUM_TRAIN,), -1)
  for step, (epoch, indices, weights) in enumerate(schedule):
    batch = batch_of(images, labels, indices)
    before = state
    prepared, _, state, _ = prepare(weights, state, batch, jax.random.key(10 + step), jnp.int32(epoch))
    # p(x̃) with the *updated* z, computed independently.
    x_inv = inverse.apply_universal(batch.images, state["universal"], batch.labels)
    fresh = np.asarray(probs_at(ctx, weights, x_inv))
    for row, i in enumerate(indices):
      if epoch >= 1 and expected_epoch[i] >= 0:
        expected[i] = gamma * expected[i] + (1 - gamma) * fresh[row]
      else:
        expected[i] = fresh[row]
      expected_epoch[i] = epoch
    np.testing.assert_allclose(state["target"]["probs"], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(state["target"]["written_epoch"], expected_epoch)
    np.testing.assert_allclose(prepared["target"], expected[indices], rtol=1e-6, atol=1e-7)
    absent = sorted(set(range(NUM_CLASSES)) - set(np.asarray(batch.labels).tolist()))
    np.testing.assert_array_equal(np.asarray(state["universal"])[absent],
                                  np.asarray(before["universal"])[absent])
  # Index 6 was first seen at epoch 1 >= T: it fell back to p(x̃) (checked above), and
  # index 4, unseen in epoch 1, kept its epoch-0 value.
  assert expected_epoch.tolist() == [1, 1, 1, 1, 0, 1, 1]


def test_oneoff_target_switches_at_t_prime_and_freezes_afterwards():
  ctx, params, images, labels = toy(num_epochs=5)
  cfg = UIATOneOff.default_config()
  cfg.update_from_flattened_dict({"oneoff_start": 0.4, "attack.num_steps": 1})  # T' = epoch 2
  method = UIATOneOff(cfg)
  state = method.init_state(jax.random.key(2), ctx, params, {})
  prepare = jitted_prepare(method, ctx)
  z0 = np.asarray(state["universal"])

  # Before T': the target is the clean prediction p(x); nothing inverse is computed or stored.
  batch = batch_of(images, labels, [3, 1, 4])
  prepared, _, state, _ = prepare(params, state, batch, jax.random.key(3), jnp.int32(1))
  np.testing.assert_allclose(prepared["target"], probs_at(ctx, params, batch.images), rtol=1e-6)
  np.testing.assert_array_equal(state["universal"], z0)
  np.testing.assert_array_equal(state["target"]["written_epoch"], -1)

  # At T': p(x̃) with the updated z, stored per example.
  for indices in ([3, 1, 4], [0, 2, 5]):   # index 6 is not seen during epoch T'
    batch = batch_of(images, labels, indices)
    prepared, _, state, _ = prepare(params, state, batch, jax.random.key(4), jnp.int32(2))
    x_inv = inverse.apply_universal(batch.images, state["universal"], batch.labels)
    np.testing.assert_allclose(prepared["target"], probs_at(ctx, params, x_inv), rtol=1e-6)
    np.testing.assert_array_equal(state["target"]["probs"][np.array(indices)], prepared["target"])
  assert np.asarray(state["target"]["written_epoch"]).tolist() == [2, 2, 2, 2, 2, 2, -1]
  assert not np.array_equal(state["universal"], z0)
  frozen = jax.tree.map(np.asarray, state)

  # After T': the stored values, whatever the weights; z and the buffer stay frozen.
  for epoch, amount in ((3, 0.5), (4, -0.7)):
    batch = batch_of(images, labels, [5, 0, 3])
    prepared, _, state, _ = prepare(shifted(params, amount), state, batch, jax.random.key(5),
                                    jnp.int32(epoch))
    np.testing.assert_array_equal(prepared["target"], frozen["target"]["probs"][np.array([5, 0, 3])])
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state), frozen)

  # An example never stored falls back to p(x̃) once and is then frozen; the others keep theirs.
  moved = shifted(params, 0.5)
  batch = batch_of(images, labels, [6, 1, 2])
  prepared, _, state, _ = prepare(moved, state, batch, jax.random.key(6), jnp.int32(3))
  x_inv = inverse.apply_universal(batch.images, state["universal"], batch.labels)
  np.testing.assert_allclose(prepared["target"][0], probs_at(ctx, moved, x_inv)[0], rtol=1e-6)
  np.testing.assert_array_equal(prepared["target"][1:], frozen["target"]["probs"][np.array([1, 2])])
  assert np.asarray(state["target"]["written_epoch"]).tolist() == [2, 2, 2, 2, 2, 2, 3]
  np.testing.assert_array_equal(state["target"]["probs"][:6], frozen["target"]["probs"][:6])


def test_target_after_update_false_uses_the_incoming_universal_perturbation():
  ctx, params, images, labels = toy(num_epochs=2)
  cfg = UIAT.default_config()
  cfg.update_from_flattened_dict({"momentum": False, "attack.num_steps": 1,
                                  "inverse.target_after_update": False})
  method = UIAT(cfg)
  state = method.init_state(jax.random.key(2), ctx, params, {})
  batch = batch_of(images, labels, [0, 1, 2])
  prepared, _, new_state, _ = jitted_prepare(method, ctx)(params, state, batch, jax.random.key(3),
                                                         jnp.int32(0))
  incoming = inverse.apply_universal(batch.images, state["universal"], batch.labels)
  np.testing.assert_allclose(prepared["target"], probs_at(ctx, params, incoming), rtol=1e-6)
  assert not np.array_equal(new_state["universal"], state["universal"])   # z still moves


def test_target_gradient_flows_through_the_current_term_only_when_asked():
  ctx, params, images, labels = toy(num_epochs=2)
  batch = batch_of(images, labels, [0, 1, 2])
  key, epoch = jax.random.key(3), jnp.int32(0)
  results = {}
  for flag in (False, True):
    cfg = UIAT.default_config()
    cfg.update_from_flattened_dict({"momentum": False, "attack.num_steps": 1,
                                    "target_gradient": flag})
    method = UIAT(cfg)
    state = method.init_state(jax.random.key(2), ctx, params, {})
    results[flag] = jitted_step(method, ctx)(params, state, batch, key, epoch)
  np.testing.assert_allclose(results[True][2], results[False][2], rtol=1e-6)
  prepared, new_state = results[True][0], results[True][1]
  x_inv = inverse.apply_universal(batch.images, new_state["universal"], batch.labels)
  np.testing.assert_array_equal(prepared["target_input"], x_inv)

  @jax.jit
  def by_hand(p):
    def loss(p, with_gradient):
      logits_adv = ctx.model(p, {}, prepared["x_adv"], "eval")[0]
      target = probs_at(ctx, p, x_inv)
      target = target if with_gradient else jax.lax.stop_gradient(target)
      log_q = jax.nn.log_softmax(logits_adv)
      kl = jnp.mean(jnp.sum(target * (jnp.log(target) - log_q), axis=-1))
      ce = -jnp.mean(jnp.take_along_axis(log_q, batch.labels[:, None], axis=-1))
      return ce + 3.5 * kl
    return {flag: jax.grad(loss)(p, flag) for flag in (False, True)}

  expected = by_hand(params)
  for flag in (False, True):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 results[flag][4], expected[flag])


def test_kl_reduction_mean_divides_batchmean_by_the_number_of_classes():
  ctx, params, images, labels = toy(num_epochs=2)
  batch = batch_of(images, labels, [0, 1, 2])
  kl = {}
  for reduction in ("batchmean", "mean"):
    cfg = UIAT.default_config()
    cfg.update_from_flattened_dict({"momentum": False, "attack.num_steps": 1,
                                    "kl_reduction": reduction})
    method = UIAT(cfg)
    state = method.init_state(jax.random.key(2), ctx, params, {})
    kl[reduction] = float(jitted_step(method, ctx)(params, state, batch, jax.random.key(3),
                                                   jnp.int32(0))[3]["kl"])
  assert kl["mean"] == pytest.approx(kl["batchmean"] / NUM_CLASSES) and kl["mean"] > 0


def test_with_lambda_zero_the_loss_and_gradient_equal_pgd_at():
  # Eval-mode inverse passes leave the running statistics to the attack and the training
  # forward, exactly as in PGD-AT.
  config = tiny_config("uiat", **{"method.kl_weight": 0.0, "method.attack.num_steps": 2,
                                  "method.inverse.bn_mode": "eval"})
  exp = build_experiment(config)
  pgd_cfg = PGDAT.default_config()
  pgd_cfg.attack = config.method.attack
  pgd = PGDAT(pgd_cfg)
  variables = exp.model.module.init(jax.random.key(0), jnp.zeros((1,) + exp.ctx.image_shape), train=False)
  params, batch_stats = variables["params"], variables["batch_stats"]
  indices = jnp.arange(16, dtype=jnp.int32)
  batch = Batch(jnp.asarray(exp.train.images[:16], jnp.float32) / 255.0,
                jnp.asarray(exp.train.labels[:16]), indices)
  key, epoch = jax.random.key(7), jnp.int32(0)
  results = []
  for method in (exp.method, pgd):
    state = method.init_state(jax.random.key(1), exp.ctx, params, batch_stats)

    @jax.jit
    def step(params, batch_stats, state):
      info = epoch_start_info(epoch, exp.ctx)
      prepared, bs, _, _ = method.prepare(exp.ctx, params, batch_stats, state, batch, key, info)
      loss_fn = lambda p: method.loss(exp.ctx, p, bs, batch, prepared, key, info)
      (loss, (new_bs, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      return loss, grads, new_bs

    results.append(step(params, batch_stats, state))
  (loss_u, grads_u, bs_u), (loss_p, grads_p, bs_p) = results
  assert float(loss_u) == float(loss_p)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8), grads_u, grads_p)
  jax.tree.map(np.testing.assert_array_equal, bs_u, bs_p)


def test_train_mode_batchnorm_option_updates_running_statistics():
  # One-off with T' = 0: the inverse branch of the lax.switch runs. (In eval mode the
  # statistics stay untouched: see the λ = 0 comparison with PGD-AT above.)
  config = tiny_config("uiat_oneoff", **{"method.attack.num_steps": 1, "method.oneoff_start": 0.0,
                                         "method.inverse.bn_mode": "train"})
  exp = build_experiment(config)
  variables = exp.model.module.init(jax.random.key(0), jnp.zeros((1,) + exp.ctx.image_shape), train=False)
  params, batch_stats = variables["params"], variables["batch_stats"]
  batch = Batch(jnp.asarray(exp.train.images[:16], jnp.float32) / 255.0,
                jnp.asarray(exp.train.labels[:16]), jnp.arange(16, dtype=jnp.int32))
  state = exp.method.init_state(jax.random.key(1), exp.ctx, params, batch_stats)
  _, new_stats, new_state, _ = jax.jit(lambda s: exp.method.prepare(
      exp.ctx, params, batch_stats, s, batch, jax.random.key(2), epoch_start_info(0, exp.ctx)))(state)
  assert not any(np.array_equal(a, b) for a, b in
                 zip(jax.tree.leaves(new_stats), jax.tree.leaves(batch_stats)))
  assert np.all(np.asarray(new_state["target"]["written_epoch"])[:16] == 0)


@pytest.mark.parametrize("overrides, message", [
    ({"generation": "pixel"}, "universal, instance"),
    ({"momentum": True, "oneoff": True}, "cannot be combined"),
    ({"momentum_start": 1.5}, "momentum_start"),
    ({"oneoff_start": -0.1}, "oneoff_start"),
    ({"gamma": 1.0}, "gamma"),
    ({"kl_weight": -1.0}, "kl_weight"),
    ({"inverse.bn_mode": "training"}, "eval, batch_stats, train"),
    ({"inverse.num_steps": 0}, "num_steps"),
    ({"inverse.beta": -1.0}, "beta"),
    ({"inverse.eps": 4.0}, "inverse.eps"),
    ({"inverse.feature_reduction": "max"}, "sum, mean"),
    ({"kl_reduction": "sum"}, "batchmean, mean"),
    ({"generation": "instance", "inverse.target_after_update": False}, "target_after_update"),
])
def test_invalid_settings_are_rejected_with_the_valid_choices(overrides, message):
  cfg = UIAT.default_config()
  cfg.update_from_flattened_dict(overrides)
  with pytest.raises(ValueError, match=message):
    UIAT.validate(cfg)


def test_three_names_share_one_implementation_with_their_defaults():
  u, o, i = (get_method_class(n).default_config() for n in ("uiat", "uiat_oneoff", "iat"))
  assert (u.generation, u.momentum, u.oneoff, u.inverse.num_steps) == ("universal", True, False, 1)
  assert (o.generation, o.momentum, o.oneoff) == ("universal", False, True)
  assert (i.generation, i.momentum, i.oneoff, i.inverse.num_steps) == ("instance", False, False, 5)
  assert i.inverse.step_size == pytest.approx(2 / 255) and u.inverse.step_size == pytest.approx(4 / 255)
  assert u.inverse.eps == pytest.approx(4 / 255) and u.inverse.beta == 1.0 and u.kl_weight == 3.5
  # Train-mode BatchNorm in the attack and inverse passes (eval mode collapsed BatchNorm
  # models on the CIFAR-10 subset; docs/inverse_adversarial_training.md).
  for cfg in (u, o, i):
    assert cfg.attack.bn_mode == "train" and cfg.inverse.bn_mode == "train"
  assert not u.target_gradient
  # One implementation: the three classes differ only in their defaults.
  assert UIAT.prepare is UIATOneOff.prepare is IAT.prepare
  assert UIAT.loss is UIATOneOff.loss is IAT.loss


@pytest.mark.parametrize("name", ["uiat", "uiat_oneoff", "iat"])
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn"])
def test_paper_presets(name, dataset):
  c = load_config(name, dataset)
  validate_config(c, 1)
  assert (c.model.name, c.batch_size, c.schedule.name, c.schedule.lr_max) == ("resnet18", 128, "onecycle", 0.1)
  assert c.optimizer.nesterov and c.optimizer.momentum == 0.9 and c.optimizer.weight_decay == 5e-4
  assert c.num_epochs == (30 if dataset == "svhn" else 100)
  assert c.method.kl_weight == (3.0 if dataset == "svhn" else 3.5)
  assert c.method.attack.step_size == pytest.approx((1 if dataset == "svhn" else 2) / 255)
  assert (c.method.attack.eps, c.method.attack.num_steps) == (pytest.approx(8 / 255), 10)
  assert c.method.inverse.eps == pytest.approx(4 / 255) and c.method.inverse.beta == 1.0


def test_digits_smoke_and_single_step_presets():
  digits = load_config("uiat", "")
  eps = digits.method.attack.eps
  assert digits.dataset.name == "digits" and eps > 8 / 255
  assert digits.method.inverse.eps == pytest.approx(eps / 2)          # paper: 4/255 of 8/255
  assert digits.method.inverse.step_size == pytest.approx(eps / 2)    # universal α' = ε'
  assert load_config("iat", "digits").method.inverse.step_size == pytest.approx(eps / 4)
  assert load_config("uiat_oneoff", "digits,smoke").num_epochs == 2
  n = load_config("uiat_oneoff", "cifar10,n_fgsm")
  assert (n.method.attack.num_steps, n.method.attack.project, n.method.inverse.beta) == (1, False, 0.0)
  assert n.method.attack.init_eps == pytest.approx(16 / 255) and n.method.attack.bn_mode == "train"
  assert (n.num_epochs, n.schedule.name, n.model.name) == (30, "cyclic", "preact_resnet18")
  r = load_config("uiat_oneoff", "cifar10,fgsm_rs")
  assert r.method.attack.step_size == pytest.approx(10 / 255) and r.num_epochs == 15
  for c in (n, r):
    validate_config(c, 1)
  with pytest.raises(ValueError, match="fgsm_rs, n_fgsm"):
    load_config("uiat_oneoff", "fgsm_rs,n_fgsm")
  with pytest.raises(ValueError, match="fgsm_rs"):
    load_config("pgd_at", "fgsm_rs")
  with pytest.raises(ValueError, match="fgsm_rs"):
    load_config("uiat", "fgsm_rs")


def _seen(exp, epoch):
  """Dataset indices the engine visits in an epoch (drop-last batching)."""
  permutation = np.asarray(epoch_permutation_fn(exp)(epoch))
  return permutation[:exp.ctx.steps_per_epoch * exp.ctx.batch_size]


@pytest.mark.parametrize("name, overrides", [
    ("uiat", {"method.momentum_start": 0.5}),
    ("uiat_oneoff", {"method.oneoff_start": 0.5}),
    ("iat", {"method.inverse.num_steps": 2}),
])
def test_training_keeps_the_buffers_indexed_by_dataset_index(name, overrides):
  # 128 examples in batches of 48: 32 are dropped each epoch, with crop augmentation.
  config = tiny_config(name, **{"num_epochs": 4, "batch_size": 48, "augment.crop_padding": 1,
                                "method.attack.num_steps": 2, **overrides})
  exp, state, sums = train_all_epochs(config)
  assert sums[FIRST_NONFINITE] == -1 and np.isfinite(sums["kl"]) and sums["kl"] >= 0
  method_state = jax.device_get(state.method_state)
  if name == "iat":
    assert method_state == {}   # instance-wise, no momentum: nothing persists
    return
  assert method_state["universal"].shape == (exp.ctx.num_classes,) + exp.ctx.image_shape
  assert float(np.max(np.abs(method_state["universal"]))) <= config.method.inverse.eps + 1e-7
  written = np.asarray(method_state["target"]["written_epoch"])
  expected = np.full(exp.ctx.num_train, -1)
  if name == "uiat":   # the last epoch each example was seen in
    for epoch in range(4):
      expected[_seen(exp, epoch)] = epoch
  else:                # seen at T' = 2, else first seen after T' (fallback), else never
    expected[_seen(exp, 2)] = 2
    expected[np.setdiff1d(_seen(exp, 3), _seen(exp, 2))] = 3
  np.testing.assert_array_equal(written, expected)
  probs = np.asarray(method_state["target"]["probs"])
  np.testing.assert_allclose(probs[written >= 0].sum(axis=1), 1.0, rtol=1e-5)
  assert not np.any(probs[written < 0])
