"""FGSM-SDI (jaxat/methods/fgsm_sdi.py, jaxat/models/init_generator.py): the generator against
a numpy forward and a hand parameter count, the adversarial example against closed forms on
a linear classifier, the generator's ascent step against Adam's first step in closed form
and finite differences, the every-k schedule, BatchNorm pass counts, validation, and a tiny
run resumed from a mid-run checkpoint."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxat.methods.base import Batch, StepContext, step_info
from jaxat.methods.fgsm_sdi import FGSMSDI
from jaxat.models.forward import ModelFn
from jaxat.models.init_generator import InitGenerator
from tiny_runs import load_config, tiny_config

K, SHAPE, B, WIDTH = 3, (8, 8, 3), 4, 4
SPE, EVERY = 7, 3            # steps per epoch, generator_every (tests share one compilation)
D = int(np.prod(SHAPE))
EPS, F, LR, WD = 0.1, 0.5, 1e-3, 5e-4


class CountingLinear(nn.Module):
  """logits = flatten(x)·W + b, plus a BatchNorm fed with ones whose running mean counts
  the train-mode passes: after n of them it is 1 − 0.9ⁿ (the logits do not depend on it)."""

  @nn.compact
  def __call__(self, x, train):
    features = x.reshape((x.shape[0], -1))
    counter = nn.BatchNorm(use_running_average=not train, momentum=0.9, use_scale=False,
                           use_bias=False, name="counter")(jnp.ones((x.shape[0], 1)))
    return nn.Dense(K, name="dense")(features) + 0.0 * jnp.sum(counter), features


def passes(batch_stats):
  """Train-mode passes recorded by CountingLinear's counter."""
  mean = float(np.asarray(batch_stats["counter"]["mean"])[0])
  return int(round(np.log(1.0 - mean) / np.log(0.9))) if mean > 0 else 0


def context(steps_per_epoch=SPE, num_train=40):
  return StepContext(model=ModelFn(CountingLinear()), num_classes=K, num_train=num_train,
                     image_shape=SHAPE, steps_per_epoch=steps_per_epoch, num_epochs=3,
                     batch_size=B)


@jax.jit
def _classifier_variables(key):
  return CountingLinear().init(key, jnp.zeros((1,) + SHAPE), train=False)


def classifier(seed=0):
  variables = _classifier_variables(jax.random.key(seed))
  return variables["params"], variables["batch_stats"]


def make_method(**overrides):
  cfg = FGSMSDI.default_config()
  cfg.update_from_flattened_dict({"eps": EPS, "step_size": EPS, "label_smoothing": F,
                                  "generator_every": EVERY, "generator_width": WIDTH, "generator_lr": LR,
                                  "generator_weight_decay": WD, **overrides})
  FGSMSDI.validate(cfg, K)
  return FGSMSDI(cfg)


def data(seed=1):
  """B images with pixels at exactly 0 and 1 (x + δ leaves the box there), labels."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(0.0, 1.0, (B,) + SHAPE).astype(np.float32)
  x[:, :2] = 0.0
  x[:, -2:] = 1.0
  return x, np.array([0, 2, 1, 2])


def batch_of(x, labels):
  return Batch(jnp.asarray(x), jnp.asarray(labels, jnp.int32), jnp.arange(B, dtype=jnp.int32))


_COMPILED = {}


def jitted_prepare(method, ctx):
  """(params, batch_stats, method_state, batch, step) -> prepare's outputs, compiled once per
  method config and context (tests share them: compilation dominates their time)."""
  key = (method.cfg.to_json(), ctx.steps_per_epoch, ctx.num_train)
  if key not in _COMPILED:
    _COMPILED[key] = jax.jit(lambda params, batch_stats, state, batch, step: method.prepare(
        ctx, params, batch_stats, state, batch, None, step_info(step, ctx, 0.1)))
  return _COMPILED[key]


def initial_state(method, ctx, params, batch_stats, seed=5):
  cfg = method.cfg   # the generator's initial state depends on these fields only
  key = ("init", cfg.eps, cfg.generator_width, cfg.generator_optimizer, cfg.generator_lr,
         cfg.generator_weight_decay, seed)
  if key not in _COMPILED:
    _COMPILED[key] = jax.jit(lambda: method.init_state(jax.random.key(seed), ctx, params, batch_stats))()
  return _COMPILED[key]


def unstacked(generator):
  """The generator state without the replica axis (read independently of the method)."""
  return jax.tree.map(lambda leaf: leaf[0], generator)


# -- closed forms on the linear classifier (numpy, float64) ---------------------------------
def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def linear_logits(params, x):
  w = np.asarray(params["dense"]["kernel"], np.float64)
  b = np.asarray(params["dense"]["bias"], np.float64)
  return np.asarray(x, np.float64).reshape(len(x), -1) @ w + b


def ce_input_grad(params, x, labels):
  """∇_x of the batch-mean CE of the linear model: (p − onehot)/B · Wᵀ."""
  w = np.asarray(params["dense"]["kernel"], np.float64)
  p = softmax(linear_logits(params, x))
  return (((p - np.eye(K)[labels]) / len(x)) @ w.T).reshape(np.shape(x))


def smoothed(labels, f=F):
  one_hot = np.eye(K)[labels]
  return one_hot * f + (1.0 - one_hot) * (1.0 - f) / (K - 1)


def lsce(z, labels, f=F):
  logp = z - z.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  return float(np.mean(-np.sum(smoothed(labels, f) * logp, -1)))


def ce(z, labels):
  return lsce(z, labels, 1.0)


def hand_adversarial(params, x, labels, eta, eps, alpha, clip=False):
  """(x₁, x_adv) of the official formula, by hand."""
  x = np.asarray(x, np.float64)
  x1 = x + eta
  if clip:
    x1 = np.clip(x1, 0, 1)
  g1 = ce_input_grad(params, x1, labels)
  x_adv = x + np.clip(eta + np.clip(alpha * np.sign(g1), -eps, eps), -eps, eps)
  return x1, (np.clip(x_adv, 0, 1) if clip else x_adv)


# -- the generator ----------------------------------------------------------------------------
def np_conv3x3(h, kernel, bias=None):
  padded = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
  height, width = h.shape[1:3]
  out = sum(padded[:, i:i + height, j:j + width] @ np.asarray(kernel, np.float64)[i, j]
            for i in range(3) for j in range(3))
  return out if bias is None else out + np.asarray(bias, np.float64)


def np_batch_norm(h, eps, scale=None, bias=None):
  mean, var = h.mean((0, 1, 2)), h.var((0, 1, 2))
  out = (h - mean) / np.sqrt(var + eps)
  if scale is not None:
    out = out * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)
  return out, mean, var


def np_generator(p, x, grad_sign, eps):
  """One_Layer_Attacker in train mode, by hand; returns (η, batch statistics per BN)."""
  prelu = lambda h, a: np.where(h >= 0, h, float(a) * h)
  stats = {}
  h = np_conv3x3(np.concatenate([x, grad_sign], -1).astype(np.float64), p["stem_conv"]["kernel"])
  h, *stats["stem_bn"] = np_batch_norm(h, 1e-3, p["stem_bn"]["scale"], p["stem_bn"]["bias"])
  h = np.maximum(h, 0)
  r, *stats["block_bn1"] = np_batch_norm(h, 1e-5)
  r = np_conv3x3(prelu(r, p["block_prelu1"]["negative_slope"]), p["block_conv1"]["kernel"],
                 p["block_conv1"]["bias"])
  r, *stats["block_bn2"] = np_batch_norm(r, 1e-5)
  r = np_conv3x3(prelu(r, p["block_prelu2"]["negative_slope"]), p["block_conv2"]["kernel"],
                 p["block_conv2"]["bias"])
  h, *stats["head_bn"] = np_batch_norm(h + r, 1e-5)
  return eps * np.tanh(np_conv3x3(h, p["head_conv"]["kernel"], p["head_conv"]["bias"])), stats


def hand_count(channels, width):
  """stem conv (no bias) + affine BN; block: 2 convs with bias + 2 PReLU slopes; head conv."""
  stem = 3 * 3 * (2 * channels) * width + 2 * width
  block = 2 * (3 * 3 * width * width + width) + 2
  head = 3 * 3 * width * channels + channels
  return stem + block + head


@pytest.mark.parametrize("channels,width,count", [(3, 64, 79173), (1, 4, 415)])
def test_generator_layout_and_parameter_count(channels, width, count):
  assert hand_count(channels, width) == count
  module = InitGenerator(eps=EPS, width=width)
  x = jnp.zeros((1, 8, 8, channels))
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), x, x, train=False))
  shapes = jax.tree.map(lambda leaf: leaf.shape, variables["params"])
  assert shapes == {
      "stem_conv": {"kernel": (3, 3, 2 * channels, width)},
      "stem_bn": {"scale": (width,), "bias": (width,)},
      "block_prelu1": {"negative_slope": ()}, "block_prelu2": {"negative_slope": ()},
      "block_conv1": {"kernel": (3, 3, width, width), "bias": (width,)},
      "block_conv2": {"kernel": (3, 3, width, width), "bias": (width,)},
      "head_conv": {"kernel": (3, 3, width, channels), "bias": (channels,)}}
  assert sum(int(np.prod(s)) for s in jax.tree.leaves(shapes, is_leaf=lambda s: isinstance(s, tuple))) == count
  stats = jax.tree.map(lambda leaf: leaf.shape, variables["batch_stats"])
  assert set(stats) == {"stem_bn", "block_bn1", "block_bn2", "head_bn"}
  assert all(s == {"mean": (width,), "var": (width,)} for s in stats.values())


def test_generator_initialisation():
  module = InitGenerator(eps=EPS, width=64)
  x = jnp.zeros((1, 8, 8, 3))
  p = jax.jit(lambda: module.init(jax.random.key(3), x, x, train=False))()["params"]
  assert float(p["block_prelu1"]["negative_slope"]) == 0.25 == float(p["block_prelu2"]["negative_slope"])
  bound = np.sqrt(2.0) * np.sqrt(6.0 / (9 * 64 + 9 * 64))     # xavier_uniform_(gain=√2)
  for name in ("block_conv1", "block_conv2"):
    kernel = np.asarray(p[name]["kernel"])
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.03)
    assert np.abs(np.asarray(p[name]["bias"])).max() <= 1 / np.sqrt(9 * 64)
  stem = np.asarray(p["stem_conv"]["kernel"])       # PyTorch default: U(±1/√fan_in)
  assert np.abs(stem).max() <= 1 / np.sqrt(9 * 6) and np.abs(stem).max() > 0.9 / np.sqrt(9 * 6)
  np.testing.assert_array_equal(p["stem_bn"]["scale"], 1.0)


def test_generator_forward_matches_a_numpy_forward_and_stays_in_the_eps_ball():
  module = InitGenerator(eps=EPS, width=WIDTH)
  x, _ = data()
  grad_sign = np.sign(np.random.default_rng(2).normal(size=x.shape)).astype(np.float32)
  variables = jax.jit(lambda: module.init(jax.random.key(4), jnp.asarray(x), jnp.asarray(grad_sign),
                                          train=False))()
  apply = jax.jit(module.apply, static_argnames=("train", "mutable"))
  eta, updates = apply(variables, x, grad_sign, train=True, mutable=("batch_stats",))
  expected, stats = np_generator(variables["params"], x, grad_sign, EPS)
  np.testing.assert_allclose(eta, expected, rtol=1e-4, atol=1e-6)
  for name, (mean, var) in stats.items():   # PyTorch momentum 0.1 (Flax keeps the biased var)
    np.testing.assert_allclose(updates["batch_stats"][name]["mean"], 0.1 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"][name]["var"], 0.9 + 0.1 * var, rtol=1e-4)
  assert eta.shape == x.shape and np.abs(eta).max() < EPS and eta.min() < 0 < eta.max()
  # Saturated: a huge head still gives |η| ≤ ε.
  params = jax.tree.map(lambda a: a, variables["params"])
  params["head_conv"] = {"kernel": params["head_conv"]["kernel"] * 1e4,
                         "bias": params["head_conv"]["bias"]}
  big = apply({**variables, "params": params}, x, grad_sign, train=False)
  assert np.abs(big).max() <= EPS and np.abs(big).max() > 0.999 * EPS


# -- the adversarial example ----------------------------------------------------------------------
@jax.jit
def eval_generator(generator, x, grad_sign):
  """η = G(x, sign g) in eval mode, with the module itself (not the method's helpers)."""
  variables = {"params": generator["params"], "batch_stats": generator["batch_stats"]}
  return InitGenerator(eps=EPS, width=WIDTH).apply(variables, x, grad_sign, train=False)


def initial_eta(state, params, x, labels):
  """η of the generator in `state` (eval mode) at sign ∇_x CE of the linear classifier."""
  grad_sign = np.sign(ce_input_grad(params, x, labels)).astype(np.float32)
  return np.asarray(eval_generator(unstacked(state["generator"]), x, grad_sign), np.float64)


def check_adversarial(x_adv, x, expected, clip):
  np.testing.assert_allclose(x_adv, expected, atol=1e-6)
  delta = np.asarray(x_adv, np.float64) - x
  assert np.abs(delta).max() <= EPS + 1e-6
  outside = (np.asarray(x_adv) < 0) | (np.asarray(x_adv) > 1)
  assert outside.any() != clip           # not clipped to [0, 1] unless asked


def test_adversarial_example_against_the_hand_formula():
  ctx = context()
  params, batch_stats = classifier()
  method = make_method()
  state = initial_state(method, ctx, params, batch_stats)
  x, labels = data()
  # Step 1: no generator update (k = 3), so η comes from the initial generator in eval mode.
  prepared, _, new_state, metrics = jitted_prepare(method, ctx)(
      params, batch_stats, state, batch_of(x, labels), 1)
  jax.tree.map(np.testing.assert_array_equal, new_state, state)
  eta = initial_eta(state, params, x, labels)
  assert eta.min() < 0 < eta.max() and np.abs(eta).max() < EPS
  x1, x_adv = hand_adversarial(params, x, labels, eta, EPS, EPS)
  check_adversarial(prepared["x_adv"], x, x_adv, clip=False)
  np.testing.assert_allclose(metrics["clean_ce"], ce(linear_logits(params, x), labels), rtol=1e-5)
  # CE at the unclipped x₁ = x + η, which leaves the box.
  assert ((x1 < 0) | (x1 > 1)).any()
  np.testing.assert_allclose(metrics["init_ce"], ce(linear_logits(params, x1), labels), rtol=1e-5)
  np.testing.assert_allclose(metrics["init_size"], np.mean(np.abs(eta)) / EPS, rtol=1e-5)


def test_inner_projection_and_the_clip_option():
  """α > ε: the step α·sign g₁ is projected to [−ε, ε] before it is added to η (which
  changes δ wherever η and the step have opposite signs); clip_to_image: x + η and x + δ
  are clipped to [0, 1]."""
  ctx = context()
  params, batch_stats = classifier()
  alpha, clip = 2 * EPS, True
  method = make_method(step_size=alpha, clip_to_image=clip)
  state = initial_state(method, ctx, params, batch_stats)
  x, labels = data()
  eta = initial_eta(state, params, x, labels)
  got, init_ce, _ = jax.jit(lambda e: method.adversarial_from(ctx, params, batch_stats, x, labels, e))(
      jnp.asarray(eta, jnp.float32))
  x1, x_adv = hand_adversarial(params, x, labels, eta, EPS, alpha, clip)
  check_adversarial(got, x, x_adv, clip)
  np.testing.assert_allclose(init_ce, ce(linear_logits(params, x1), labels), rtol=1e-5)


def test_loss_is_lsce_at_x_adv_and_the_classifier_gradient_comes_from_it_alone():
  ctx = context()
  params, batch_stats = classifier()
  method = make_method()
  state = initial_state(method, ctx, params, batch_stats)
  x, labels = data()
  batch = batch_of(x, labels)
  # At a generator-update step: the engine differentiates only `loss` (prepare returns no
  # classifier parameters), so the classifier's gradient is that of LSCE at x_adv alone.
  prepared, stats, _, _ = jitted_prepare(method, ctx)(params, batch_stats, state, batch, 0)
  info = step_info(0, ctx, 0.1)

  def loss_fn(p):
    loss, (_, metrics, logits) = method.loss_and_logits(ctx, p, stats, batch, prepared, None, info)
    return loss, (logits, metrics)

  (loss, (logits, metrics)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
  np.testing.assert_allclose(method.loss(ctx, params, stats, batch, prepared, None, info)[0], loss,
                             rtol=1e-6)
  x_adv = np.asarray(prepared["x_adv"], np.float64)
  z = linear_logits(params, x_adv)
  np.testing.assert_allclose(logits, z, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(loss, lsce(z, labels), rtol=1e-5)
  np.testing.assert_allclose(metrics["adv_acc"], np.mean(z.argmax(1) == labels))
  residual = (softmax(z) - smoothed(labels)) / B
  np.testing.assert_allclose(grads["dense"]["kernel"], x_adv.reshape(B, -1).T @ residual,
                             rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(grads["dense"]["bias"], residual.sum(0), rtol=1e-4, atol=1e-7)


# -- the generator's ascent step -----------------------------------------------------------------
def generator_lsce(method_generator, params, batch_stats, x, labels, grad_sign):
  """LSCE_f(f(x_adv), y) as a function of G's parameters, G in train mode, with the linear
  model's input gradient at x₁ in closed form (a constant for G), written independently."""
  module = InitGenerator(eps=EPS, width=WIDTH)
  w, b = params["dense"]["kernel"], params["dense"]["bias"]

  def value(gparams):
    eta, _ = module.apply({"params": gparams, "batch_stats": method_generator["batch_stats"]},
                          x, grad_sign, train=True, mutable=["batch_stats"])
    x1 = jax.lax.stop_gradient(x + eta)
    p1 = jax.nn.softmax(x1.reshape(B, -1) @ w + b)
    g1 = ((p1 - jax.nn.one_hot(labels, K)) / B) @ w.T
    step = jnp.clip(EPS * jnp.sign(g1.reshape(x.shape)), -EPS, EPS)
    x_adv = x + jnp.clip(eta + step, -EPS, EPS)
    logp = jax.nn.log_softmax(x_adv.reshape(B, -1) @ w + b)
    return -jnp.mean(jnp.sum(jnp.asarray(smoothed(labels)) * logp, -1))

  return value


def test_generator_takes_one_adam_ascent_step_on_lsce():
  ctx = context()
  params, batch_stats = classifier()
  method = make_method()
  state = initial_state(method, ctx, params, batch_stats, seed=6)
  x, labels = data()
  grad_sign = jnp.asarray(np.sign(ce_input_grad(params, x, labels)), jnp.float32)
  prepared, _, new_state, _ = jitted_prepare(method, ctx)(params, batch_stats, state,
                                                          batch_of(x, labels), 0)
  before, after = unstacked(state["generator"]), unstacked(new_state["generator"])
  value_and_grad = jax.jit(jax.value_and_grad(generator_lsce(
      before, params, batch_stats, jnp.asarray(x), jnp.asarray(labels), grad_sign)))
  value = lambda p: value_and_grad(p)[0]
  ascent = value_and_grad(before["params"])[1]
  # Finite differences confirm the independent gradient on a few parameters.
  h = 1e-2
  # (A bias in front of an affine-free BatchNorm, e.g. block_conv2's, gets no gradient.)
  for path, index in ((("head_conv", "bias"), (1,)), (("stem_bn", "bias"), (2,)),
                      (("block_prelu2", "negative_slope"), ()),
                      (("block_conv1", "kernel"), (1, 2, 0, 3))):
    def at(shift):
      p = jax.tree.map(lambda a: a, before["params"])
      leaf = p[path[0]][path[1]]
      p[path[0]] = {**p[path[0]], path[1]: leaf.at[index].add(shift)}
      return float(value(p))
    numeric = (at(h) - at(-h)) / (2 * h)
    analytic = float(ascent[path[0]][path[1]][index])
    assert abs(analytic) > 1e-4, path
    np.testing.assert_allclose(analytic, numeric, rtol=5e-2, atol=1e-4)
  # Adam's first step in closed form: m̂ = u, v̂ = u², θ ← θ − lr·u/(|u| + 1e-8), with
  # u = ∇(−LSCE) + wd·θ (PyTorch's coupled L2 decay).
  def first_adam_step(theta, g):
    u = -np.asarray(g, np.float64) + WD * np.asarray(theta, np.float64)
    return np.asarray(theta, np.float64) - LR * u / (np.abs(u) + 1e-8)

  expected = jax.tree.map(first_adam_step, before["params"], ascent)
  jax.tree.map(lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=LR * 1e-2),
               after["params"], expected)
  assert float(value(after["params"])) > float(value(before["params"]))   # an ascent step
  # G's running statistics were updated by its train-mode pass; the optimiser counted 1 step.
  assert not np.allclose(after["batch_stats"]["head_bn"]["mean"], before["batch_stats"]["head_bn"]["mean"])
  assert int(after["opt_state"][1][0].count) == 1          # chain(decay, adam): adam's count
  # The classifier's step on the same batch uses the updated G (eval mode).
  eta = np.asarray(eval_generator(after, x, grad_sign), np.float64)
  np.testing.assert_allclose(prepared["x_adv"], hand_adversarial(params, x, labels, eta, EPS, EPS)[1],
                             atol=1e-6)


# -- schedule and BatchNorm passes ------------------------------------------------------------
def test_generator_updates_at_batches_0_k_2k_of_every_epoch_and_counts_bn_passes():
  spe = SPE
  ctx = context()
  params, batch_stats = classifier()
  method = make_method()
  state = initial_state(method, ctx, params, batch_stats, seed=7)
  x, labels = data()
  prepare = jitted_prepare(method, ctx)
  updated = []
  for step in range(2 * spe):
    _, stats, new_state, _ = prepare(params, batch_stats, state, batch_of(x, labels), step)
    old, new = unstacked(state["generator"]), unstacked(new_state["generator"])
    updated.append(not np.array_equal(old["params"]["head_conv"]["bias"],
                                      new["params"]["head_conv"]["bias"]))
    if updated[-1]:   # G's statistics and Adam's step count move with its parameters
      assert not np.array_equal(old["batch_stats"]["head_bn"]["mean"], new["batch_stats"]["head_bn"]["mean"])
      assert int(new["opt_state"][1][0].count) == int(old["opt_state"][1][0].count) + 1
    else:
      jax.tree.map(np.testing.assert_array_equal, new, old)
    # Train-mode classifier passes: clean and x₁ (2), plus x₁ and x_adv of the generator update.
    assert passes(stats) == (4 if updated[-1] else 2)
    state = new_state
  assert EVERY == 3 and [s for s in range(2 * spe) if updated[s]] == [0, 3, 6, 7, 10, 13]


def test_generator_state_is_replicated_not_per_example():
  ctx = context(num_train=WIDTH)          # example_rows equal to the generator's width
  params, batch_stats = classifier()
  method = make_method()
  state = jax.eval_shape(lambda: method.init_state(jax.random.key(8), ctx, params, batch_stats))
  leaves = jax.tree.leaves(state)
  assert leaves and all(np.shape(leaf)[0] == 1 for leaf in leaves)
  assert not any(np.shape(leaf)[0] == ctx.example_rows for leaf in leaves)


# -- configuration ----------------------------------------------------------------------------
def test_defaults_are_the_official_ones():
  c = FGSMSDI.default_config()
  assert (c.eps, c.step_size) == (pytest.approx(8 / 255), pytest.approx(8 / 255))
  assert (c.label_smoothing, c.generator_every, c.generator_lr, c.generator_weight_decay) == (
      0.5, 20, 1e-3, 5e-4)
  assert (c.generator_optimizer, c.generator_width, c.bn_mode, c.clip_to_image) == (
      "adam", 64, "train", False)
  cifar = load_config("fgsm_sdi", "cifar10")
  assert (cifar.model.name, cifar.model.normalization, cifar.num_epochs, cifar.batch_size) == (
      "resnet18", "none", 110, 128)
  assert (cifar.schedule.name, cifar.schedule.lr_max, cifar.schedule.per_epoch) == ("multistep", 0.1, False)
  np.testing.assert_allclose(cifar.schedule.boundaries, (100 / 110, 105 / 110))
  assert (cifar.optimizer.momentum, cifar.optimizer.weight_decay) == (0.9, 5e-4)
  assert cifar.method.generator_every == 20 and cifar.method.generator_width == 64


@pytest.mark.parametrize("field,value", [
    ("eps", 8.0), ("step_size", -0.1), ("label_smoothing", 0.0), ("label_smoothing", 1.5),
    ("generator_every", 0), ("generator_every", 2.5), ("generator_lr", 0.0),
    ("generator_weight_decay", -1e-4), ("generator_optimizer", "rmsprop"),
    ("generator_width", 0), ("bn_mode", "frozen"), ("clip_to_image", "yes")])
def test_invalid_values_raise_one_line_naming_field_and_value(field, value):
  cfg = ml_collections.ConfigDict({**FGSMSDI.default_config().to_dict(), field: value})
  with pytest.raises(ValueError) as error:
    FGSMSDI.validate(cfg, K)
  message = str(error.value)
  assert "\n" not in message and f"method.{field}" in message and repr(value) in message, message
  assert "valid" in message


# -- end to end, and a resume from a mid-run checkpoint ----------------------------------------
def test_trains_end_to_end_and_resumes_bit_identically(tmp_path):
  from jaxat.train import sharding
  from jaxat.train.checkpoint import Checkpointer
  from jaxat.train.experiment import build_experiment, epoch_permutation_fn, init_state, put_train_data
  from jaxat.train.step import FIRST_NONFINITE, init_sums, make_train_step, metric_shapes

  config = tiny_config("fgsm_sdi", "synthetic", **{
      "num_epochs": 2, "batch_size": 32, "method.generator_every": 3, "method.generator_width": 4})
  exp = build_experiment(config)
  spe = exp.ctx.steps_per_epoch
  assert spe == 4
  images, labels = put_train_data(exp)
  permutation_of = epoch_permutation_fn(exp)
  initial = jax.jit(lambda: init_state(exp))   # the engine's initial state, compiled once
  fresh = initial()
  step, step_fn = make_train_step(exp.method, exp.ctx, exp.tx, config, exp.mesh, exp.schedule,
                                  sharding.state_sharding(fresh, exp.mesh, exp.ctx.example_rows))
  shapes = metric_shapes(step_fn, fresh, images, labels, permutation_of(0))
  assert {"clean_ce", "init_ce", "init_size", "loss", "adv_acc"} <= set(shapes)

  def zero_sums():   # placed as the engine places them (else the second call recompiles)
    return init_sums(shapes, fresh.step.sharding)

  def run(state, sums, first, last):
    for s in range(first, last):
      state, sums = step(state, sums, images, labels, permutation_of(s // spe))
    return state, sums

  initial_generator = jax.device_get(fresh.method_state["generator"])
  straight, sums = run(initial(), zero_sums(), 0, 2 * spe)
  sums = jax.device_get(sums)
  assert sums[FIRST_NONFINITE] == -1 and np.isfinite(sums["loss"])
  assert sums["count"] == 2 * spe
  final_generator = jax.device_get(straight.method_state["generator"])
  assert not np.array_equal(final_generator["params"]["head_conv"]["bias"],
                            initial_generator["params"]["head_conv"]["bias"])

  # Interrupted after step 5 (mid-epoch, between generator updates), saved, restored, finished.
  checkpointer = Checkpointer(str(tmp_path), keep=2)
  partial, partial_sums = run(initial(), zero_sums(), 0, 5)
  checkpointer.save_last(5, partial, partial_sums, {"epoch": 1})
  restored, restored_sums, _ = checkpointer.restore_last(initial(), zero_sums())
  checkpointer.close()
  assert int(restored.step) == 5
  resumed, _ = run(restored, restored_sums, 5, 2 * spe)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.method_state),
               jax.device_get(straight.method_state))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.params),
               jax.device_get(straight.params))


def test_generator_convolution_gradients_match_lax():
  from jax import lax
  from jaxat.models.init_generator import same_conv3x3
  rng = np.random.default_rng(9)
  x, kernel = rng.normal(size=(3, 5, 6, 4)), rng.normal(size=(3, 3, 4, 2))
  cotangent = rng.normal(size=(3, 5, 6, 2))
  reference = lambda a, k: lax.conv_general_dilated(a, k, (1, 1), ((1, 1), (1, 1)),
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours, ours_vjp = jax.vjp(same_conv3x3, jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32))
  theirs, theirs_vjp = jax.vjp(reference, jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32))
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
  for got, want in zip(ours_vjp(jnp.asarray(cotangent, jnp.float32)),
                       theirs_vjp(jnp.asarray(cotangent, jnp.float32))):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
