"""Fast single-step methods (FGSM-RS, N-FGSM, GradAlign): their perturbations and GradAlign's
regulariser against closed forms on linear models, the ramps at given steps, validation,
presets, and tiny end-to-end runs."""

import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.config.validate import validate_config
from jaxat.methods.base import Batch, StepContext, epoch_start_info, step_info
from jaxat.methods.fgsm_rs import FGSMRS
from jaxat.methods.grad_align import GradAlign
from jaxat.methods.n_fgsm import NFGSM
from jaxat.methods.registry import get_method_class
from jaxat.models.forward import ModelFn
from jaxat.train.train import train_and_evaluate
from tiny_runs import load_config, tiny_config

SHAPE = (4, 4, 1)
D = 16


class Linear(nn.Module):
  """logits = relu(x − shift)·W + b on the flattened image (shift 0: plain linear)."""
  num_classes: int
  shift: float = 0.0

  @nn.compact
  def __call__(self, x, train):
    features = x.reshape((x.shape[0], -1))
    if self.shift:
      features = nn.relu(features - self.shift)
    return nn.Dense(self.num_classes, name="dense")(features), features


def context(num_classes, shift=0.0, steps_per_epoch=2, num_epochs=20, batch_size=4):
  return StepContext(model=ModelFn(Linear(num_classes, shift)), num_classes=num_classes,
                     num_train=8, image_shape=SHAPE, steps_per_epoch=steps_per_epoch,
                     num_epochs=num_epochs, batch_size=batch_size)


def linear_params(w, b):
  return {"dense": {"kernel": jnp.asarray(w, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}}


def make_method(cls, **overrides):
  cfg = cls.default_config()
  cfg.update_from_flattened_dict(overrides)
  cls.validate(cfg)
  return cls(cfg)


def prepare(method, ctx, params, images, labels, key, step=0):
  batch = Batch(jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32),
                jnp.arange(len(labels), dtype=jnp.int32))
  prepared, _, _, _ = method.prepare(ctx, params, {}, {}, batch, key, step_info(step, ctx, 0.1))
  return batch, jax.device_get(prepared)


def images_with_edges(rng):
  """4 images in [0.2, 0.8] with some pixels exactly at 0 and 1 (the [0,1] clip acts)."""
  x = rng.uniform(0.2, 0.8, (4,) + SHAPE).astype(np.float32)
  x[0, 0, :2] = 0.0
  x[1, 3, 2:] = 1.0
  return x


# Two classes, logits x·W + b: the mean-CE input gradient of example i is
# (1/B)·p_{1−y}·(W[:, 1−y] − W[:, y]), so its sign is sign(W[:, 1−y] − W[:, y]) anywhere.
W2 = np.random.default_rng(0).normal(0.0, 0.5, (D, 2)).astype(np.float32)


def binary_sign(labels):
  other = W2[:, 1 - np.asarray(labels)].T       # (B, D)
  own = W2[:, np.asarray(labels)].T
  return np.sign(other - own).reshape((len(labels),) + SHAPE)


def random_start(method, ctx, images, labels, key, step=0):
  """x_0 − x, read from a model whose gradient is exactly zero (W = 0): sign(0) = 0."""
  zero = linear_params(np.zeros((D, 2)), np.zeros(2))
  _, prepared = prepare(method, ctx, zero, images, labels, key, step)
  return prepared["x_adv"] - images


def test_fgsm_rs_is_one_projected_step_of_1_25_eps_from_the_random_start():
  eps = 0.1
  ctx = context(2)
  x = images_with_edges(np.random.default_rng(1))
  labels = np.array([0, 1, 1, 0])
  method = make_method(FGSMRS, **{"attack.eps": eps, "attack.step_size": 1.25 * eps})
  key = jax.random.key(3)
  start = random_start(method, ctx, x, labels, key)
  assert np.abs(start).max() <= eps + 1e-6 and np.abs(start).max() > 0.5 * eps
  _, prepared = prepare(method, ctx, linear_params(W2, [0.1, -0.2]), x, labels, key)
  expected = np.clip(x + np.clip(start + 1.25 * eps * binary_sign(labels), -eps, eps), 0.0, 1.0)
  np.testing.assert_allclose(prepared["x_adv"], expected, atol=1e-6)
  delta = prepared["x_adv"] - x
  assert np.abs(delta).max() <= eps + 1e-6
  assert prepared["x_adv"].min() >= 0.0 and prepared["x_adv"].max() <= 1.0
  # The step reaches the ball's edge wherever the start was within 0.25ε of the far side.
  assert np.mean(np.isclose(np.abs(delta), eps, atol=1e-6)) > 0.3


def test_n_fgsm_leaves_the_eps_ball_but_stays_within_k_plus_1_eps_and_the_image():
  eps, k = 0.05, 2.0
  ctx = context(2)
  x = images_with_edges(np.random.default_rng(2))
  labels = np.array([1, 0, 1, 0])
  method = make_method(NFGSM, **{"attack.eps": eps, "attack.step_size": eps,
                                 "attack.init_eps": k * eps})
  key = jax.random.key(4)
  start = random_start(method, ctx, x, labels, key)
  assert np.abs(start).max() <= k * eps + 1e-6
  _, prepared = prepare(method, ctx, linear_params(W2, [0.0, 0.3]), x, labels, key)
  # No projection to the ε-ball: x_adv = Π_img(x + η + ε·sign(g)).
  expected = np.clip(x + start + eps * binary_sign(labels), 0.0, 1.0)
  np.testing.assert_allclose(prepared["x_adv"], expected, atol=1e-6)
  delta = np.abs(prepared["x_adv"] - x)
  assert delta.max() > eps + 1e-3                   # outside the threat model
  assert delta.max() <= (k + 1) * eps + 1e-6
  assert prepared["x_adv"].min() >= 0.0 and prepared["x_adv"].max() <= 1.0


def test_default_configs_are_the_official_attacks():
  r, n, g = FGSMRS.default_config(), NFGSM.default_config(), GradAlign.default_config()
  for c in (r, n, g):
    assert (c.attack.eps, c.attack.num_steps, c.attack.bn_mode) == (pytest.approx(8 / 255), 1, "train")
  assert (r.attack.init, r.attack.step_size, r.attack.project) == ("uniform", pytest.approx(10 / 255), True)
  assert r.attack.init_eps == 0.0
  assert (n.attack.init, n.attack.step_size, n.attack.project) == ("uniform", pytest.approx(8 / 255), False)
  assert n.attack.init_eps == pytest.approx(16 / 255)
  assert (g.attack.init, g.attack.step_size, g.attack.project) == ("zero", pytest.approx(10 / 255), True)
  assert (g.align_lambda, g.align_bn_mode, g.step_ramp_epochs) == (pytest.approx(0.2), "train", 0)


@pytest.mark.parametrize("cls", [FGSMRS, NFGSM])
def test_single_step_loss_is_the_batch_mean_ce_at_x_adv(cls):
  ctx = context(2)
  x = images_with_edges(np.random.default_rng(15))
  labels = np.array([0, 1, 1, 0])
  method = make_method(cls)
  params = linear_params(W2, [0.1, -0.2])
  batch, prepared = prepare(method, ctx, params, x, labels, jax.random.key(16))
  loss, (_, metrics) = method.loss(ctx, params, {}, batch, prepared, jax.random.key(17),
                                   epoch_start_info(0, ctx))
  logits = prepared["x_adv"].reshape(4, -1).astype(np.float64) @ W2 + np.array([0.1, -0.2])
  p = softmax(logits)
  np.testing.assert_allclose(loss, -np.mean(np.log(p[np.arange(4), labels])), rtol=1e-5)
  np.testing.assert_allclose(metrics["adv_acc"], np.mean(p.argmax(1) == labels))


@pytest.mark.parametrize("step, scale", [(0, 0.1), (3, 0.4), (9, 1.0), (15, 1.0)])
def test_n_fgsm_ramp_scales_eps_step_and_noise_at_given_steps(step, scale):
  # 5 ramp epochs of 2 steps: scale = min(1, (step + 1) / 10).
  eps = 0.04
  ctx = context(2)
  x = np.random.default_rng(5).uniform(0.3, 0.7, (4,) + SHAPE).astype(np.float32)
  labels = np.array([0, 1, 0, 1])
  settings = {"attack.eps": eps, "attack.step_size": eps, "attack.init_eps": 2 * eps}
  fixed = make_method(NFGSM, **settings)
  ramped = make_method(NFGSM, **settings, **{"attack.ramp_epochs": 5})
  key = jax.random.key(6)
  full_start = random_start(fixed, ctx, x, labels, key, step)
  np.testing.assert_allclose(random_start(ramped, ctx, x, labels, key, step),
                             scale * full_start, atol=1e-6)
  _, prepared = prepare(ramped, ctx, linear_params(W2, [0.0, 0.0]), x, labels, key, step)
  np.testing.assert_allclose(prepared["x_adv"] - x,
                             scale * (full_start + eps * binary_sign(labels)), atol=1e-6)


@pytest.mark.parametrize("step, size", [(0, 0.125), (3, 0.5), (7, 1.0), (30, 1.0)])
def test_grad_align_step_ramp_at_given_steps(step, size):
  # α = min(1, (step + 1) / 10)·1.25ε from the zero start, clipped to ε; ε is not ramped.
  eps = 0.04
  ctx = context(2)
  x = np.random.default_rng(7).uniform(0.3, 0.7, (4,) + SHAPE).astype(np.float32)
  labels = np.array([1, 1, 0, 0])
  method = make_method(GradAlign, **{"attack.eps": eps, "attack.step_size": 1.25 * eps,
                                     "step_ramp_epochs": 5})
  _, prepared = prepare(method, ctx, linear_params(W2, [0.2, 0.0]), x, labels,
                        jax.random.key(8), step)
  np.testing.assert_allclose(prepared["x_adv"] - x, size * eps * binary_sign(labels), atol=1e-6)
  assert np.abs(prepared["eta"]).max() > 0.9 * eps      # the regulariser's η keeps the full ε


# GradAlign on logits = relu(x − 0.5)·W + b with 3 classes, ε = 0.1. Examples 0-2 have
# pixels in [0.42, 0.62], so the ReLU's active set differs between x and x + η (the two
# gradients are far from aligned); example 3 has every pixel below 0.5 − ε, so both of its
# input gradients are exactly zero; example 4 has every pixel in [0.45, 0.5): its gradient
# at x is zero but not at x + η. Examples 3 and 4 are left out of the mean.
SHIFT = 0.5
W3 = np.random.default_rng(9).normal(0.0, 1.0, (D, 3)).astype(np.float32)
B3 = np.array([0.1, -0.3, 0.2], np.float32)


def softmax(z):
  z = z - z.max(axis=1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=1, keepdims=True)


def ce_and_input_grad(w, b, x, labels):
  """Mean CE and its input gradient, by hand: (1/B)·W(p − e_y) on the active pixels."""
  flat = x.reshape(len(labels), -1).astype(np.float64)
  active = (flat > SHIFT).astype(np.float64)
  p = softmax(np.maximum(flat - SHIFT, 0.0) @ w + b)
  onehot = np.eye(w.shape[1])[labels]
  ce = -np.mean(np.log(p[np.arange(len(labels)), labels]))
  grad = active * ((p - onehot) @ w.T) / len(labels)
  return ce, grad


def grad_align_setup(eps=0.1, lam=0.7):
  rng = np.random.default_rng(10)
  x = rng.uniform(0.42, 0.62, (5,) + SHAPE).astype(np.float32)
  x[3] = rng.uniform(0.1, 0.38, SHAPE)
  x[4] = rng.uniform(0.45, 0.4999, SHAPE)
  labels = np.array([0, 2, 1, 0, 1])
  ctx = context(3, shift=SHIFT, batch_size=5)
  method = make_method(GradAlign, **{"attack.eps": eps, "attack.step_size": 1.25 * eps,
                                     "align_lambda": lam})
  params = linear_params(W3, B3)
  batch, prepared = prepare(method, ctx, params, x, labels, jax.random.key(11))
  return ctx, method, params, batch, prepared, x, labels


def loss_at(method, ctx, params, batch, prepared):
  loss, (_, metrics) = method.loss(ctx, params, {}, batch, prepared, jax.random.key(12),
                                   epoch_start_info(0, ctx))
  return loss, metrics


def test_grad_align_regulariser_is_one_minus_mean_cosine_by_hand():
  eps, lam = 0.1, 0.7
  ctx, method, params, batch, prepared, x, labels = grad_align_setup(eps, lam)
  w, b = W3.astype(np.float64), B3.astype(np.float64)
  _, g1 = ce_and_input_grad(w, b, x, labels)
  np.testing.assert_allclose(prepared["grad"].reshape(5, -1), g1, rtol=1e-4, atol=1e-7)
  # Zero start: the 1.25ε step is clipped to ε; example 3 (zero gradient) does not move.
  step = eps * np.sign(g1).reshape(x.shape)
  np.testing.assert_allclose(prepared["x_adv"], np.clip(x + step, 0, 1), atol=1e-6)
  np.testing.assert_array_equal(prepared["x_adv"][3:], x[3:])
  eta = prepared["eta"]
  assert np.abs(eta).max() <= eps and np.abs(eta).max() > 0.9 * eps
  _, g2 = ce_and_input_grad(w, b, x + eta, labels)
  assert not np.any(g1[3]) and not np.any(g2[3]) and not np.any(g1[4]) and np.any(g2[4])
  cos = [g1[i] @ g2[i] / (np.linalg.norm(g1[i]) * np.linalg.norm(g2[i])) for i in range(3)]
  reg = 1.0 - np.mean(cos)
  assert reg > 0.02                                  # the two gradients are not aligned
  ce_adv, _ = ce_and_input_grad(w, b, prepared["x_adv"], labels)
  loss, metrics = loss_at(method, ctx, params, batch, prepared)
  np.testing.assert_allclose(metrics["align_reg"], reg, rtol=1e-4)
  np.testing.assert_allclose(metrics["adv_loss"], ce_adv, rtol=1e-5)
  np.testing.assert_allclose(loss, ce_adv + lam * reg, rtol=1e-5)


def test_grad_align_loss_gradient_flows_through_the_second_gradient():
  # With g1 and x_adv fixed (prepared), d loss / dW by autodiff equals central finite
  # differences of the whole loss only if the regulariser's g2 is differentiated.
  ctx, method, params, batch, prepared, _, _ = grad_align_setup(lam=2.0)

  def loss_of(kernel):
    p = {"dense": {"kernel": kernel, "bias": params["dense"]["bias"]}}
    return loss_at(method, ctx, p, batch, prepared)

  kernel = params["dense"]["kernel"]
  grad = np.asarray(jax.grad(lambda k: loss_of(k)[0])(kernel))
  reg_grad = np.asarray(jax.grad(lambda k: loss_of(k)[1]["align_reg"])(kernel))
  assert np.abs(reg_grad).max() > 1e-2               # not detached
  h = 1e-2
  for index in [(0, 0), (3, 1), (7, 2), (12, 0), (15, 1)]:
    bump = np.zeros(kernel.shape, np.float32)
    bump[index] = h
    plus = float(loss_of(kernel + bump)[0])
    minus = float(loss_of(kernel - bump)[0])
    np.testing.assert_allclose(grad[index], (plus - minus) / (2 * h), rtol=2e-2, atol=2e-4)


def test_grad_align_without_any_aligned_pair_adds_nothing():
  # Every example below the ReLU: both gradients vanish, the regulariser is 0 (not NaN).
  ctx = context(3, shift=SHIFT)
  x = np.random.default_rng(13).uniform(0.1, 0.4, (4,) + SHAPE).astype(np.float32)
  labels = np.array([0, 1, 2, 0])
  method = make_method(GradAlign, **{"attack.eps": 0.05, "attack.step_size": 0.0625})
  batch, prepared = prepare(method, ctx, linear_params(W3, B3), x, labels, jax.random.key(14))
  loss, metrics = loss_at(method, ctx, linear_params(W3, B3), batch, prepared)
  assert float(metrics["align_reg"]) == 0.0 and np.isfinite(float(loss))


class NormedLinear(nn.Module):
  """BatchNorm over the flattened pixels, then a dense layer."""

  @nn.compact
  def __call__(self, x, train):
    features = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(
        x.reshape((x.shape[0], -1)))
    return nn.Dense(3, name="dense")(features), features


@pytest.mark.parametrize("cls", [FGSMRS, NFGSM, GradAlign])
def test_attack_passes_run_in_train_mode_batchnorm(cls):
  module = NormedLinear()
  variables = module.init(jax.random.key(0), jnp.zeros((1,) + SHAPE), train=False)
  ctx = StepContext(model=ModelFn(module), num_classes=3, num_train=4, image_shape=SHAPE,
                    steps_per_epoch=1, num_epochs=1, batch_size=4)
  batch = Batch(jax.random.uniform(jax.random.key(1), (4,) + SHAPE), jnp.array([0, 1, 2, 0]),
                jnp.arange(4))
  method = cls(cls.default_config())
  stats = variables["batch_stats"]
  _, new_stats, _, _ = method.prepare(ctx, variables["params"], stats, {}, batch,
                                      jax.random.key(2), epoch_start_info(0, ctx))
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), stats, new_stats)
  assert jax.tree.leaves(changed) and all(jax.tree.leaves(changed))


@pytest.mark.parametrize("name, overrides, message", [
    ("fgsm_rs", {"attack.num_steps": 2}, r"method\.attack\.num_steps=2 .*valid: 1"),
    ("n_fgsm", {"attack.restarts": 3}, r"method\.attack\.restarts=3 .*valid: 1"),
    ("n_fgsm", {"attack.eps": -0.1}, r"method\.attack\.eps must be >= 0.*-0\.1"),
    ("fgsm_rs", {"attack.objective": "kl"}, r"method\.attack\.objective='kl'.*valid choices: ce"),
    ("n_fgsm", {"attack.norm": "l2"}, r"method\.attack\.norm='l2'.*valid choices: linf"),
    ("n_fgsm", {"attack.init_eps": -1.0}, r"method\.attack\.init_eps must be >= 0.*-1\.0"),
    ("grad_align", {"align_lambda": -0.5}, r"method\.align_lambda must be >= 0.*-0\.5"),
    ("grad_align", {"step_ramp_epochs": -1}, r"method\.step_ramp_epochs must be an integer >= 0.*-1"),
    ("grad_align", {"align_bn_mode": "training"}, r"method\.align_bn_mode 'training'.*eval, batch_stats, train"),
    ("grad_align", {"attack.ramp_epochs": -2}, r"method\.attack\.ramp_epochs must be an integer >= 0.*-2"),
])
def test_invalid_settings_name_field_value_and_valid_range(name, overrides, message):
  cls = get_method_class(name)
  cfg = cls.default_config()
  cfg.update_from_flattened_dict(overrides)
  with pytest.raises(ValueError, match=message):
    cls.validate(cfg)


def test_config_arg_errors():
  with pytest.raises(ValueError, match="eps16"):
    load_config("n_fgsm", "eps17")
  with pytest.raises(ValueError, match="several radii"):
    load_config("fgsm_rs", "cifar10,eps4,eps8")
  with pytest.raises(ValueError, match="1/255..12/255"):
    load_config("grad_align", "svhn,eps16")


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn", "cifar10_subset"])
def test_real_data_presets(dataset):
  r, n, g = (load_config(m, dataset) for m in ("fgsm_rs", "n_fgsm", "grad_align"))
  svhn = dataset == "svhn"
  for c in (r, n, g):
    validate_config(c, 1)
    assert (c.model.name, c.batch_size, c.schedule.name) == ("preact_resnet18", 128, "cyclic")
    assert c.optimizer.momentum == 0.9 and not c.optimizer.nesterov and c.optimizer.weight_decay == 5e-4
    a = c.method.attack
    assert (a.num_steps, a.bn_mode, a.eps) == (1, "train", pytest.approx(8 / 255))
    assert c.dataset.val_size == (500 if dataset == "cifar10_subset" else 0)
  assert r.model.final_bn and n.model.final_bn and not g.model.final_bn
  assert r.model.normalization == n.model.normalization == "dataset" and g.model.normalization == "none"
  assert r.method.attack.step_size == pytest.approx(10 / 255) and r.method.attack.project
  assert r.method.attack.init == "uniform" and r.method.attack.init_eps == 0.0
  assert n.method.attack.step_size == pytest.approx(8 / 255) and not n.method.attack.project
  assert n.method.attack.init_eps == pytest.approx(16 / 255)
  assert g.method.attack.init == "zero" and g.method.attack.step_size == pytest.approx(10 / 255)
  assert (r.num_epochs, n.num_epochs, g.num_epochs) == (15, 30, 15 if svhn else 30)
  if svhn:
    for c in (r, n, g):
      assert (c.schedule.lr_max, c.schedule.pct_start) == (0.05, 0.4)
    assert r.method.attack.ramp_epochs == n.method.attack.ramp_epochs == 5
    assert g.method.attack.ramp_epochs == 0 and g.method.step_ramp_epochs == 5
    assert g.method.align_lambda == 2.5
  else:
    assert (r.schedule.lr_max, r.schedule.pct_start) == (0.2, 0.5)
    assert (n.schedule.lr_max, n.schedule.pct_start) == (0.2, 0.5)
    assert (g.schedule.lr_max, g.schedule.pct_start) == (0.3, 0.4)
    assert r.method.attack.ramp_epochs == n.method.attack.ramp_epochs == g.method.step_ramp_epochs == 0
    assert g.method.align_lambda == pytest.approx(0.2)


@pytest.mark.parametrize("arg, lam", [("cifar10,eps1", 0.027), ("cifar10,eps8", 0.2),
                                      ("cifar10,eps12", 0.632), ("cifar100,eps16", 2.0),
                                      ("svhn,eps1", 1.657), ("svhn,eps12", 3.162),
                                      ("digits", 0.2)])
def test_grad_align_lambda_table(arg, lam):
  assert load_config("grad_align", arg).method.align_lambda == pytest.approx(lam, abs=1e-3)


def test_eps_tokens_move_everything_tied_to_eps():
  n = load_config("n_fgsm", "svhn,eps12")          # official: k = 3 at SVHN ε = 12/255
  assert n.method.attack.init_eps == pytest.approx(36 / 255)
  assert n.method.attack.step_size == pytest.approx(12 / 255) and n.eval.eps == pytest.approx(12 / 255)
  assert load_config("n_fgsm", "cifar10,eps12").method.attack.init_eps == pytest.approx(24 / 255)
  r = load_config("fgsm_rs", "cifar10,eps16")
  assert r.method.attack.step_size == pytest.approx(20 / 255) and r.eval.step_size == pytest.approx(4 / 255)
  d = load_config("fgsm_rs", "digits")
  assert d.method.attack.step_size == pytest.approx(1.25 * d.method.attack.eps) and d.method.attack.eps > 8 / 255


TINY = {"log.progress": "none", "num_epochs": 1, "batch_size": 32, "eval.pgd_steps": 1,
        "dataset.max_train": 64, "dataset.max_test": 32, "eval_batch_size": 32}


@pytest.mark.parametrize("name", ["fgsm_rs", "n_fgsm", "grad_align"])
def test_method_trains_end_to_end_on_digits(name, tmp_path):
  config = tiny_config(name, dataset="digits", **TINY)
  assert config.dataset.name == "digits"
  workdir = str(tmp_path / name)
  results = train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["fingerprint"] == results["fingerprint"]
  assert 0.0 <= results["pgd20_acc"] <= results["clean_acc"] <= 1.0
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    record = json.loads(f.readline())
  assert math.isfinite(record["loss"]) and 0.0 <= record["adv_acc"] <= 1.0
  if name == "grad_align":
    assert 0.0 <= record["align_reg"] <= 2.0 and math.isfinite(record["adv_loss"])


def test_uiat_single_step_plug_in_reuses_the_fast_recipes():
  for token in ("fgsm_rs", "n_fgsm"):
    plug, own = load_config("uiat_oneoff", f"svhn,{token}"), load_config(token, "svhn")
    validate_config(plug, 1)
    for field in ("eps", "step_size", "init", "init_eps", "project", "num_steps", "bn_mode",
                  "ramp_epochs"):
      assert plug.method.attack[field] == own.method.attack[field], field
    assert plug.schedule.to_dict() == own.schedule.to_dict()
    assert plug.model.to_dict() == own.model.to_dict() and plug.num_epochs == own.num_epochs
    assert plug.method.inverse.beta == 0.0
