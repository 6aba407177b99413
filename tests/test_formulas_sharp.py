"""Tests that fail on a wrong formula: each compares what a method computes, through its
public API, with a value derived independently here (closed-form gradients of linear and
two-layer models in float64 numpy, finite differences, the paper's numbers), never with the
implementation's own helpers.

- the class-wise UIAT step with beta > 0, its target, the momentum of Eq. 8 and the one-off
  switch of Eq. 10, on a linear model whose features and input gradients are closed-form;
- the attack start 0.001·N(0,1) of TRADES, MART and HAT, and the direction of their first
  ascent step;
- AWP's weight perturbation against one computed by hand on a two-layer model;
- the UIAT presets against the paper's values.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.methods.awp import AWP
from jaxat.methods.base import Batch, StepContext, epoch_start_info
from jaxat.methods.hat import HAT, HelperModel
from jaxat.methods.mart import MART
from jaxat.methods.trades import TRADES
from jaxat.methods.uiat import IAT, UIAT, UIATOneOff, phase_epoch
from tiny_runs import load_config

NUM_CLASSES = 3
FEATURES = 5
IMAGE_SHAPE = (2, 2, 1)           # d = 4 input dimensions
LABELS = np.array([0, 0, 1, 1, 0, 1], np.int32)   # class 2 is absent from the batch


@dataclasses.dataclass(frozen=True, eq=False)
class LinearModel:
  """features F(x) = (flatten(x) − 0.5)·W, logits f(x) = F(x)·V; no BatchNorm, so every
  mode is the same function and the input gradients are closed-form. (Centring keeps the
  logits of mid-grey images near 0, so softmax does not saturate.)"""

  def __call__(self, params, batch_stats, x, mode):
    features = (x.reshape(x.shape[0], -1) - 0.5) @ params["W"]
    return features @ params["V"], features, batch_stats

  def logits(self, params, batch_stats, x, mode="eval"):
    return self(params, batch_stats, x, mode)[0]


def linear_params(seed=0, input_dim=4, feature_scale=1.0, logit_scale=1.0):
  rng = np.random.default_rng(seed)
  return {"W": jnp.asarray(feature_scale * rng.normal(size=(input_dim, FEATURES)), jnp.float32),
          "V": jnp.asarray(logit_scale * rng.normal(size=(FEATURES, NUM_CLASSES)), jnp.float32)}


def context(image_shape, num_train, num_epochs=100):
  return StepContext(model=LinearModel(), num_classes=NUM_CLASSES, num_train=num_train,
                     image_shape=image_shape, steps_per_epoch=1, num_epochs=num_epochs,
                     batch_size=num_train)


def interior_batch(seed, shape, labels):
  """Images in [0.3, 0.7], so no clip to [0,1] is active for perturbations below 0.1."""
  images = np.random.default_rng(seed).uniform(0.3, 0.7, size=(len(labels),) + shape)
  return Batch(jnp.asarray(images, jnp.float32), jnp.asarray(labels),
               jnp.arange(len(labels), dtype=jnp.int32))


def softmax(logits):
  shifted = logits - logits.max(axis=-1, keepdims=True)
  e = np.exp(shifted)
  return e / e.sum(axis=-1, keepdims=True)


def one_hot(labels, k=NUM_CLASSES):
  return np.eye(k)[labels]


def f64(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def features_of(params, x):
  """F(x) of LinearModel in float64 numpy."""
  return (x.reshape(len(x), -1) - 0.5) @ params["W"]


def probs_of(params, x):
  return softmax(features_of(params, x) @ params["V"])


# --- UIAT: the class-wise universal step with beta > 0 -----------------------------------


def expected_universal_step(params, x, x_adv, labels, z, beta, step_size, eps, reduction="sum"):
  """z after one class-wise descent step on Σ_j L_inv(clip(x_j + z_{y_j}), y_j), by hand.

  For the linear model, with x̃ = x + z_y (no clip active):
    ∂L_inv/∂x̃ = W·( V·(softmax(f(x̃)) − e_y) + β'·(sign(F(x̃) − F(x)) − sign(F(x̃) − F(x̂))) )
  with β' = β ('sum' over feature dims) or β/D ('mean').
  """
  W, V = params["W"], params["V"]
  x_inv = x + z[labels]
  f_inv, f_clean, f_adv = (features_of(params, a) for a in (x_inv, x, x_adv))
  ce_grad_features = (softmax(f_inv @ V) - one_hot(labels)) @ V.T
  scale = beta if reduction == "sum" else beta / FEATURES
  feature_grad = scale * (np.sign(f_inv - f_clean) - np.sign(f_inv - f_adv))
  input_grad = (ce_grad_features + feature_grad) @ W.T                 # (B, d)
  new_z = z.copy()
  for c in range(z.shape[0]):
    members = labels == c
    if members.any():
      class_grad = input_grad[members].sum(axis=0).reshape(z.shape[1:])
      new_z[c] = np.clip(z[c] - step_size * np.sign(class_grad), -eps, eps)
  return new_z


def uiat_prepare(method_cls, seed=0, epoch=0, beta=1.0, reduction="sum", state_edit=None,
                 **fields):
  cfg = method_cls.default_config()
  cfg.inverse.update(beta=beta, feature_reduction=reduction)
  cfg.update(fields)
  method_cls.validate(cfg)
  method = method_cls(cfg)
  ctx = context(IMAGE_SHAPE, num_train=len(LABELS))
  params = linear_params(seed)
  batch = interior_batch(seed + 1, IMAGE_SHAPE, LABELS)
  state = method.init_state(jax.random.key(seed), ctx, params, {})
  if state_edit is not None:
    state = state_edit(state)
  prepared, _, new_state, _ = method.prepare(ctx, params, {}, state, batch, jax.random.key(seed + 2),
                                             epoch_start_info(epoch, ctx))
  return cfg, params, batch, state, prepared, new_state


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_universal_step_with_feature_term_matches_the_closed_form_gradient_sign(reduction):
  cfg, params, batch, state, prepared, new_state = uiat_prepare(UIAT, beta=1.0, reduction=reduction)
  p, x, x_adv, z = f64(params), f64(batch.images), f64(prepared["x_adv"]), f64(state["universal"])
  labels = np.asarray(batch.labels)
  expected = expected_universal_step(p, x, x_adv, labels, z, 1.0, cfg.inverse.step_size,
                                     cfg.inverse.eps, reduction)
  np.testing.assert_allclose(np.asarray(new_state["universal"]), expected, rtol=0, atol=1e-7)
  # The test can tell the readings apart: the feature term (and its reduction) changes the step.
  without_fr = expected_universal_step(p, x, x_adv, labels, z, 0.0, cfg.inverse.step_size,
                                       cfg.inverse.eps)
  other = expected_universal_step(p, x, x_adv, labels, z, 1.0, cfg.inverse.step_size,
                                  cfg.inverse.eps, "mean" if reduction == "sum" else "sum")
  assert np.any(expected != without_fr) and np.any(expected != other)
  # The absent class keeps its perturbation exactly.
  np.testing.assert_array_equal(np.asarray(new_state["universal"])[2], np.asarray(state["universal"])[2])


def test_the_target_is_the_prediction_at_the_updated_universal_perturbation():
  _, params, batch, _, prepared, new_state = uiat_prepare(UIAT)
  p, x = f64(params), f64(batch.images)
  x_inv = x + np.asarray(new_state["universal"], np.float64)[np.asarray(batch.labels)]
  np.testing.assert_allclose(np.asarray(prepared["target"]), probs_of(p, x_inv), rtol=0, atol=1e-6)


def test_momentum_mixes_gamma_of_the_stored_target_from_epoch_T_on():
  """Eq. 8: p̄ = p(x̃) before T = 75, γ·p̄_old + (1 − γ)·p(x̃) from T on (γ = 0.9)."""
  stored = np.tile(np.array([0.7, 0.2, 0.1], np.float32), (len(LABELS), 1))

  def fill(state):
    return {**state, "target": {"probs": jnp.asarray(stored),
                                "written_epoch": jnp.zeros(len(LABELS), jnp.int32)}}

  targets = {}
  for epoch in (74, 75):
    _, params, batch, _, prepared, new_state = uiat_prepare(UIAT, epoch=epoch, state_edit=fill)
    p, x = f64(params), f64(batch.images)
    x_inv = x + np.asarray(new_state["universal"], np.float64)[np.asarray(batch.labels)]
    targets[epoch] = (np.asarray(prepared["target"]), probs_of(p, x_inv))
  np.testing.assert_allclose(targets[74][0], targets[74][1], atol=1e-6)
  np.testing.assert_allclose(targets[75][0], 0.9 * stored + 0.1 * targets[75][1], atol=1e-6)


def test_one_off_target_is_the_clean_prediction_before_T_prime_and_inverse_at_T_prime():
  """Eq. 10 with T' = 80 of 100 epochs."""
  _, params, batch, _, before, _ = uiat_prepare(UIATOneOff, epoch=79)
  p, x = f64(params), f64(batch.images)
  np.testing.assert_allclose(np.asarray(before["target"]), probs_of(p, x), atol=1e-6)
  _, _, _, _, at, new_state = uiat_prepare(UIATOneOff, epoch=80)
  x_inv = x + np.asarray(new_state["universal"], np.float64)[np.asarray(batch.labels)]
  np.testing.assert_allclose(np.asarray(at["target"]), probs_of(p, x_inv), atol=1e-6)


# --- TRADES / MART / HAT: attack start and ascent direction ------------------------------

BIG_SHAPE = (8, 8, 1)          # 16 images x 64 pixels = 1024 start draws
BIG_LABELS = np.arange(16, dtype=np.int32) % NUM_CLASSES


def prepared_attack(method_cls, step_size, num_steps=1, seed=0):
  """(x, x_adv, params) of the method's own `prepare` with its default attack, except for
  the step size and count."""
  cfg = method_cls.default_config()
  cfg.attack.update(step_size=float(step_size), num_steps=num_steps)
  method_cls.validate(cfg)
  method = method_cls(cfg)
  ctx = context(BIG_SHAPE, num_train=len(BIG_LABELS))
  params = linear_params(seed, input_dim=int(np.prod(BIG_SHAPE)), feature_scale=0.5)
  batch = interior_batch(seed + 1, BIG_SHAPE, BIG_LABELS)
  state = {}
  if method_cls is HAT:
    method.attach_helper(HelperModel(model=LinearModel(), params=params, batch_stats={},
                                     num_classes=NUM_CLASSES, image_shape=BIG_SHAPE, workdir=""))
    state = {"helper": {"params": params, "batch_stats": {}}}
  prepared, _, _, _ = method.prepare(ctx, params, {}, state, batch, jax.random.key(seed + 2),
                                     epoch_start_info(0, ctx))
  return cfg, np.asarray(batch.images, np.float64), np.asarray(prepared["x_adv"], np.float64), f64(params)


@pytest.mark.parametrize("method_cls", [TRADES, MART, HAT], ids=["trades", "mart", "hat"])
def test_attack_starts_at_x_plus_0_001_standard_normal_noise(method_cls):
  _, x, x_start, _ = prepared_attack(method_cls, step_size=0.0)
  noise = (x_start - x).ravel()
  assert abs(noise.mean()) < 1e-4
  assert 0.00092 < noise.std() < 0.00108
  # Gaussian, not uniform of the same scale: about 4.6% of N(0,1) draws exceed 2 sigma;
  # a uniform with standard deviation 0.001 never exceeds 0.0018.
  assert 0.02 < np.mean(np.abs(noise) > 0.002) < 0.08


def kl_rows(p, q):
  return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def kl_input_gradient(clean_probs, adv_probs, M):
  """d/dx' Σ_i KL(p(x_i) || softmax(x'_i M)) = M·(softmax(x'M) − p(x)) per example."""
  return (adv_probs - clean_probs) @ M.T


def swapped_kl_input_gradient(clean_probs, adv_probs, M):
  """The gradient of the wrong objective KL(p(x') || p(x)): q ⊙ (log q − log p − KL) per row."""
  kl = kl_rows(adv_probs, clean_probs)[:, None]
  return (adv_probs * (np.log(adv_probs) - np.log(clean_probs) - kl)) @ M.T


@pytest.mark.parametrize("method_cls", [TRADES, HAT], ids=["trades", "hat"])
def test_kl_attack_steps_are_signed_gradients_of_kl_clean_to_adversarial(method_cls):
  """The first two steps. Near x both KL directions agree to first order, so the second
  step, taken where p(x') is far from p(x), is what tells KL(p(x) || p(x')) from the
  swapped KL(p(x') || p(x))."""
  cfg, x, x_start, p = prepared_attack(method_cls, step_size=0.0)
  eps, step = cfg.attack.eps, cfg.attack.eps
  M = p["W"] @ p["V"]
  flat = lambda a: a.reshape(len(a), -1)
  clean = probs_of(p, x)
  point = flat(x_start)
  for num_steps in (1, 2):
    adv = probs_of(p, point)
    grad = kl_input_gradient(clean, adv, M)
    expected = np.clip(np.clip(point + step * np.sign(grad), flat(x) - eps, flat(x) + eps), 0, 1)
    _, _, x_steps, _ = prepared_attack(method_cls, step_size=step, num_steps=num_steps)
    np.testing.assert_allclose(flat(x_steps), expected, rtol=0, atol=1e-6)
    assert np.all(kl_rows(clean, probs_of(p, x_steps)) > kl_rows(clean, adv))
    point = expected
  # At the second step the swapped objective would move some pixels the other way.
  assert np.any(np.sign(swapped_kl_input_gradient(clean, adv, M)) != np.sign(grad))


def test_mart_first_step_ascends_the_cross_entropy():
  cfg, x, x_start, p = prepared_attack(MART, step_size=0.0)
  step = 0.5 * cfg.attack.eps
  _, _, x_one_step, _ = prepared_attack(MART, step_size=step)
  M = p["W"] @ p["V"]
  flat = lambda a: a.reshape(len(a), -1)
  grad = (probs_of(p, x_start) - one_hot(BIG_LABELS)) @ M.T
  expected = np.clip(flat(x_start) + step * np.sign(grad), flat(x) - cfg.attack.eps,
                     flat(x) + cfg.attack.eps)
  np.testing.assert_allclose(flat(x_one_step), expected, rtol=0, atol=1e-6)


# --- AWP: the perturbation of a two-layer model, by hand ---------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class TwoLayerModel:
  """logits = relu(flatten(x)·W1 + b1)·W2 + b2, Flax-style parameter names."""

  def __call__(self, params, batch_stats, x, mode):
    hidden = jax.nn.relu(x.reshape(x.shape[0], -1) @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    return hidden @ params["out"]["kernel"] + params["out"]["bias"], hidden, batch_stats


def test_awp_perturbation_matches_a_hand_computed_one_on_a_two_layer_model():
  cfg = AWP.default_config("pgd_at")
  AWP.validate(cfg)
  method = AWP(cfg)
  rng = np.random.default_rng(0)
  d, hidden, batch_size = 4, 6, 5
  params64 = {"hidden": {"kernel": rng.normal(size=(d, hidden)), "bias": 0.1 * rng.normal(size=hidden)},
              "out": {"kernel": rng.normal(size=(hidden, NUM_CLASSES)), "bias": 0.1 * rng.normal(size=NUM_CLASSES)}}
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params64)
  params64 = f64(params)
  x_adv = rng.uniform(size=(batch_size,) + IMAGE_SHAPE)
  labels = rng.integers(0, NUM_CLASSES, size=batch_size).astype(np.int32)
  ctx = StepContext(model=TwoLayerModel(), num_classes=NUM_CLASSES, num_train=batch_size,
                    image_shape=IMAGE_SHAPE, steps_per_epoch=1, num_epochs=1, batch_size=batch_size)
  batch = Batch(jnp.asarray(x_adv, jnp.float32), jnp.asarray(labels), jnp.arange(batch_size))
  prepared = {"x_adv": jnp.asarray(x_adv, jnp.float32)}
  perturbation = method.weight_perturbation(ctx, params, {}, batch, prepared, jax.random.key(0),
                                            epoch_start_info(0, ctx))

  # Backpropagation of the batch-mean CE at the unperturbed weights, by hand.
  x = np.asarray(prepared["x_adv"], np.float64).reshape(batch_size, -1)
  W1, b1 = params64["hidden"]["kernel"], params64["hidden"]["bias"]
  W2, b2 = params64["out"]["kernel"], params64["out"]["bias"]
  pre = x @ W1 + b1
  h = np.maximum(pre, 0)
  dlogits = (softmax(h @ W2 + b2) - one_hot(labels)) / batch_size
  grad_W2 = h.T @ dlogits
  grad_W1 = x.T @ ((dlogits @ W2.T) * (pre > 0))
  # One ascent step of the proxy: d_l = proxy_lr · grad_l; v_l = ||w_l|| / ||d_l|| · d_l.
  wp = cfg.weight_perturbation
  expected = {}
  for name, weight, grad in (("hidden", W1, grad_W1), ("out", W2, grad_W2)):
    diff = wp.proxy_lr * grad
    expected[name] = wp.gamma * np.linalg.norm(weight) / (np.linalg.norm(diff) + 1e-20) * diff
  for name in ("hidden", "out"):
    # The proxy difference w_proxy - w cancels in float32 (|lr·grad| << |w|): about 1e-3
    # relative error, far below what a wrong scaling or direction changes.
    np.testing.assert_allclose(np.asarray(perturbation[name]["kernel"]), expected[name],
                               rtol=1e-3, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(perturbation[name]["bias"]), 0.0)
    # Layer-wise: each kernel's perturbation has gamma times that kernel's own norm.
    np.testing.assert_allclose(np.linalg.norm(np.asarray(perturbation[name]["kernel"])),
                               wp.gamma * np.linalg.norm(params64[name]["kernel"]), rtol=1e-5)


def test_awp_perturbation_is_exactly_zero_during_the_warm_up():
  cfg = AWP.default_config("trades")
  method = AWP(cfg)
  params = {"out": {"kernel": jnp.ones((4, NUM_CLASSES)), "bias": jnp.zeros(NUM_CLASSES)}}

  class Linear:
    def __call__(self, params, batch_stats, x, mode):
      logits = x.reshape(x.shape[0], -1) @ params["out"]["kernel"] + params["out"]["bias"]
      return logits, logits, batch_stats

  ctx = StepContext(model=Linear(), num_classes=NUM_CLASSES, num_train=2, image_shape=IMAGE_SHAPE,
                    steps_per_epoch=1, num_epochs=20, batch_size=2)
  x = jnp.full((2,) + IMAGE_SHAPE, 0.5)
  batch = Batch(x, jnp.array([0, 1]), jnp.arange(2))
  last_warmup = cfg.weight_perturbation.warmup_epochs - 1
  before = method.weight_perturbation(ctx, params, {}, batch, {"x_adv": x + 0.01}, jax.random.key(0),
                                      epoch_start_info(last_warmup, ctx))
  after = method.weight_perturbation(ctx, params, {}, batch, {"x_adv": x + 0.01}, jax.random.key(0),
                                     epoch_start_info(last_warmup + 1, ctx))
  assert not np.any(np.asarray(before["out"]["kernel"]))
  assert np.any(np.asarray(after["out"]["kernel"]))


# --- UIAT presets against the paper -------------------------------------------------------


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn"])
@pytest.mark.parametrize("name", ["uiat", "uiat_oneoff", "iat"])
def test_presets_use_the_papers_values(name, dataset):
  c = load_config(name, dataset)
  m = c.method
  universal = name != "iat"
  assert m.inverse.eps == pytest.approx(4 / 255)                                # ε'
  assert m.inverse.step_size == pytest.approx(4 / 255 if universal else 2 / 255)  # α'
  assert m.inverse.num_steps == (1 if universal else 5)
  assert m.inverse.beta == 1.0
  assert m.kl_weight == (3.0 if dataset == "svhn" else 3.5)                     # λ
  assert m.attack.eps == pytest.approx(8 / 255)
  assert m.attack.step_size == pytest.approx(1 / 255 if dataset == "svhn" else 2 / 255)
  assert m.attack.num_steps == 10
  assert c.num_epochs == (30 if dataset == "svhn" else 100)
  assert m.momentum == (name == "uiat") and m.oneoff == (name == "uiat_oneoff")
  assert m.gamma == 0.9                                                          # γ
  if dataset != "svhn":
    # T = 75 and T' = 80 of 100 epochs (0-based epoch index of the switch).
    assert phase_epoch(m.momentum_start, c.num_epochs) == 75
    assert phase_epoch(m.oneoff_start, c.num_epochs) == 80
  assert (c.model.name, c.batch_size, c.schedule.name, c.schedule.lr_max) == (
      "resnet18", 128, "onecycle", 0.1)
  assert (c.optimizer.nesterov, c.optimizer.momentum, c.optimizer.weight_decay) == (True, 0.9, 5e-4)


def test_phase_epoch_is_the_floor_of_the_fraction_of_training():
  assert [phase_epoch(0.75, 100), phase_epoch(0.8, 100), phase_epoch(0.75, 30)] == [
      75, 80, math.floor(0.75 * 30)]
