"""Prior-guided FGSM (FGSM-BP / FGSM-EP / FGSM-MEP; jaxat/methods/fgsm_pgi.py and the prior
buffers of jaxat/methods/prior_init.py): buffer updates, regulariser and loss computed by
hand in numpy on a toy linear model, the reset, the batch prior, the gradient through z0,
SIGTERM/resume and tiny end-to-end runs."""

import json
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.methods import losses
from jaxat.methods.base import Batch, StepContext, epoch_start_info
from jaxat.methods.fgsm_pgi import FGSMBP, FGSMEP, FGSMMEP
from jaxat.models.forward import ModelFn
from jaxat.train.step import FIRST_NONFINITE
from tiny_runs import interrupted_and_straight_runs, run_cli, tiny_config, train_all_epochs

NUM_CLASSES, SHAPE, NUM_TRAIN, B = 4, (2, 2, 1), 7, 3
EPS, ALPHA, MU, LAM, F = 0.3, 0.2, 0.3, 10.0, 0.6


class TinyLinear(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    features = x.reshape((x.shape[0], -1))
    return nn.Dense(NUM_CLASSES, name="dense")(features), features


def toy(num_epochs, low=0.2, high=0.8):
  module = TinyLinear()
  params = module.init(jax.random.key(0), jnp.zeros((1,) + SHAPE), train=False)["params"]
  ctx = StepContext(model=ModelFn(module), num_classes=NUM_CLASSES, num_train=NUM_TRAIN,
                    image_shape=SHAPE, steps_per_epoch=2, num_epochs=num_epochs, batch_size=B)
  images = jax.random.uniform(jax.random.key(1), (NUM_TRAIN,) + SHAPE, minval=low, maxval=high)
  labels = jnp.array([0, 1, 2, 3, 1, 2, 0])
  return ctx, params, images, labels


def make_method(cls, **overrides):
  cfg = cls.default_config()
  cfg.update_from_flattened_dict({"eps": EPS, "step_size": ALPHA, "momentum_decay": MU,
                                  "reg_weight": LAM, "label_smoothing": F, **overrides})
  cls.validate(cfg)
  return cls(cfg)


def batch_of(images, labels, indices):
  indices = jnp.asarray(indices, jnp.int32)
  return Batch(images[indices], labels[indices], indices)


def jitted_step(method, ctx):
  """(params, state, batch, key, epoch) -> (prepared, new state, loss, grads); compiled once."""

  @jax.jit
  def step(params, state, batch, key, epoch):
    info = epoch_start_info(epoch, ctx)
    prepared, _, new_state, _ = method.prepare(ctx, params, {}, state, batch, key, info)
    loss_fn = lambda p: method.loss(ctx, p, {}, batch, prepared, key, info)[0]
    loss, grads = jax.value_and_grad(loss_fn)(params)
    return prepared, new_state, loss, grads

  return step


def shifted(params, amount):
  return jax.tree.map(lambda p: p + amount, params)


# -- the hand computation (numpy, float64) --------------------------------------------------
def targets(labels):
  """The official FGSM-PGI targets: one_hot·f + (one_hot − 1)·((f − 1)/(K − 1))."""
  one_hot = np.eye(NUM_CLASSES)[np.asarray(labels)]
  return one_hot * F + (one_hot - 1.0) * ((F - 1.0) / (NUM_CLASSES - 1))


def linear(params, x):
  w = np.asarray(params["dense"]["kernel"], np.float64)
  b = np.asarray(params["dense"]["bias"], np.float64)
  return np.asarray(x, np.float64).reshape(len(x), -1) @ w + b, w


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def lsce(z, labels):
  logp = z - z.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  return float(np.mean(-np.sum(targets(labels) * logp, -1)))


def hand_step(params, x, labels, eta, momentum):
  """(z0, g, δ, m_next, η_next (MEP), loss) of one step on the linear model, by hand."""
  x = np.asarray(x, np.float64)
  z0, w = linear(params, x + eta)                     # η not clipped to the image box
  g = ((softmax(z0) - targets(labels)) / len(x)) @ w.T  # ∇_η of the batch-mean LSCE
  g = g.reshape(x.shape)
  delta = np.clip(x + np.clip(eta + ALPHA * np.sign(g), -EPS, EPS), 0, 1) - x
  m_next = eta_next = None
  if momentum is not None:
    m_next = g / np.sum(np.abs(g)) + MU * momentum    # one L1 norm for the whole batch
    eta_next = np.clip(x + np.clip(eta + ALPHA * np.sign(m_next), -EPS, EPS), 0, 1) - x
  z, _ = linear(params, x + delta)
  loss = lsce(z, labels) + LAM * np.mean((z - z0) ** 2)  # mean over all B·K logits
  return z0, g, delta, m_next, eta_next, loss


def test_label_smoothing_0_6_is_the_true_class_mass():
  # K = 4 classes: with K = 3 the PyTorch reading (label_smoothing=0.6, true-class mass
  # 1 − 0.6·(K−1)/K) would coincide with 0.6.
  logits = jnp.array([[1.0, -0.5, 0.3, 0.0], [0.2, 0.1, -1.0, 0.4]])
  labels = jnp.array([2, 0])
  np.testing.assert_allclose(targets(labels)[0], [0.4 / 3, 0.4 / 3, 0.6, 0.4 / 3])
  np.testing.assert_allclose(float(losses.cross_entropy(logits, labels, 0.6)),
                             lsce(np.asarray(logits, np.float64), labels), rtol=1e-6)
  assert FGSMMEP.default_config().label_smoothing == 0.6


def known_state(kind, rng):
  """Buffers as if written at epoch 0 with known values (η ±ε, m nonzero)."""
  shape = (NUM_TRAIN,) + SHAPE
  eta = EPS * np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)
  state = {"eta": jnp.asarray(eta, jnp.float32), "written_epoch": jnp.zeros((NUM_TRAIN,), jnp.int32)}
  if kind == "momentum_epoch":
    state["momentum"] = jnp.asarray(rng.normal(scale=0.1, size=shape), jnp.float32)
  return {"prior": state}


@pytest.mark.parametrize("cls", [FGSMMEP, FGSMEP])
def test_per_example_priors_over_two_epochs(cls):
  ctx, params, images, labels = toy(num_epochs=2)
  method = make_method(cls)
  kind = cls.prior_kind
  initial = method.init_state(jax.random.key(2), ctx, params, {})
  assert initial["prior"]["eta"].shape == (NUM_TRAIN,) + SHAPE
  assert ("momentum" in initial["prior"]) == (kind == "momentum_epoch")
  state = known_state(kind, np.random.default_rng(0))
  expected_eta = np.asarray(state["prior"]["eta"], np.float64)
  expected_m = np.asarray(state["prior"]["momentum"], np.float64) if "momentum" in state["prior"] else None
  expected_epoch = np.zeros(NUM_TRAIN, np.int64)
  step = jitted_step(method, ctx)
  # Epoch 0 sees 0..5 (index 6 is dropped); epoch 1 sees 6, 0, 3, 5, 1, 2 (index 4 dropped).
  schedule = [(0, [3, 1, 4], params), (0, [0, 2, 5], shifted(params, 0.1)),
              (1, [6, 0, 3], shifted(params, 0.3)), (1, [5, 1, 2], shifted(params, -0.2))]
  clipped_forward = False
  for t, (epoch, indices, weights) in enumerate(schedule):
    batch = batch_of(images, labels, indices)
    x = np.asarray(batch.images, np.float64)
    eta = expected_eta[indices]
    momentum = expected_m[indices] if expected_m is not None else None
    clipped_forward |= bool(np.any((x + eta > 1) | (x + eta < 0)))
    z0, g, delta, m_next, eta_next, loss = hand_step(weights, x, batch.labels, eta, momentum)
    prepared, state, got_loss, _ = step(weights, state, batch, jax.random.key(10 + t), jnp.int32(epoch))
    np.testing.assert_allclose(prepared["x_prior"], x + eta, atol=1e-6)
    np.testing.assert_allclose(prepared["x_adv"], x + delta, atol=1e-6)
    np.testing.assert_allclose(float(got_loss), loss, rtol=1e-5)
    if kind == "momentum_epoch":
      expected_m[indices] = m_next
      expected_eta[indices] = eta_next
      np.testing.assert_allclose(state["prior"]["momentum"], expected_m, rtol=1e-5, atol=1e-7)
    else:
      expected_eta[indices] = delta      # EP stores the current adversarial perturbation
    expected_epoch[indices] = epoch
    np.testing.assert_allclose(state["prior"]["eta"], expected_eta, atol=1e-6)
    np.testing.assert_array_equal(state["prior"]["written_epoch"], expected_epoch)
  # Index 4, missing from epoch 1, kept its epoch-0 rows; some forward at x + η left the box.
  assert expected_epoch.tolist() == [1, 1, 1, 1, 0, 1, 1]
  assert clipped_forward


def test_priors_are_redrawn_every_reset_epochs():
  ctx, params, images, labels = toy(num_epochs=4)
  method = make_method(FGSMMEP, reset_epochs=2)
  state = method.init_state(jax.random.key(2), ctx, params, {})
  np.testing.assert_array_equal(state["prior"]["written_epoch"], -1)
  step = jitted_step(method, ctx)
  stored_eta = np.zeros((NUM_TRAIN,) + SHAPE)
  stored_m = np.zeros((NUM_TRAIN,) + SHAPE)
  # Index 6 misses epochs 0 and 2 (the reset epochs); index 4 misses epoch 3.
  schedule = [(0, [3, 1, 4]), (0, [0, 2, 5]), (1, [6, 0, 3]), (1, [5, 1, 4]),
              (2, [2, 1, 0]), (2, [5, 4, 3]), (3, [6, 0, 3]), (3, [5, 1, 2])]
  last_written = {}
  for t, (epoch, indices) in enumerate(schedule):
    weights = shifted(params, 0.05 * t)
    batch = batch_of(images, labels, indices)
    x = np.asarray(batch.images, np.float64)
    prepared, state, _, _ = step(weights, state, batch, jax.random.key(20 + t), jnp.int32(epoch))
    eta = np.asarray(prepared["x_prior"], np.float64) - x
    # Redrawn: at the reset epochs 0 and 2, and whenever a row was last written before the
    # last reset (index 6 at epoch 1: never written; at epoch 3: last written at epoch 1).
    redrawn = [epoch in (0, 2) or last_written.get(i, -1) < (epoch // 2) * 2 for i in indices]
    assert redrawn == [epoch in (0, 2) or (epoch, i) in ((1, 6), (3, 6)) for i in indices]
    for row, i in enumerate(indices):
      if redrawn[row]:
        # clip(α·sign(u), −ε, ε) with α < ε: ±α per element, not the old prior.
        np.testing.assert_allclose(np.abs(eta[row]), ALPHA, rtol=1e-5)
        if i in last_written:
          assert np.any(np.abs(eta[row] - stored_eta[i]) > 1e-3)
      else:
        np.testing.assert_allclose(eta[row], stored_eta[i], atol=1e-6)
    momentum_in = np.stack([np.zeros(SHAPE) if r else stored_m[i] for r, i in zip(redrawn, indices)])
    _, _, _, m_next, eta_next, _ = hand_step(weights, x, batch.labels, eta, momentum_in)
    stored_m[indices], stored_eta[indices] = m_next, eta_next
    np.testing.assert_allclose(state["prior"]["momentum"][np.asarray(indices)], m_next, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(state["prior"]["eta"][np.asarray(indices)], eta_next, atol=1e-6)
    for i in indices:
      last_written[i] = epoch
  np.testing.assert_array_equal(state["prior"]["written_epoch"], [3, 3, 3, 3, 2, 3, 3])


def test_batch_prior_is_the_previous_batchs_perturbation():
  ctx, params, images, labels = toy(num_epochs=1)
  images = images.at[0].set(0.98).at[2].set(0.02)   # near the box edges (batch 2)
  method = make_method(FGSMBP)
  state = method.init_state(jax.random.key(2), ctx, params, {})
  assert state["prior"]["eta"].shape == (B,) + SHAPE     # one batch, not per example
  step = jitted_step(method, ctx)
  first, second = batch_of(images, labels, [3, 1, 4]), batch_of(images, labels, [0, 2, 6])
  prepared, state, _, _ = step(params, state, first, jax.random.key(5), jnp.int32(0))
  x1 = np.asarray(first.images, np.float64)
  eta1 = np.asarray(prepared["x_prior"], np.float64) - x1
  np.testing.assert_allclose(np.abs(eta1), ALPHA, rtol=1e-5)  # a fresh draw at the start
  _, _, delta1, _, _, _ = hand_step(params, x1, first.labels, eta1, None)
  np.testing.assert_allclose(state["prior"]["eta"], delta1, atol=1e-6)
  weights = shifted(params, 0.2)
  prepared, state, loss, _ = step(weights, state, second, jax.random.key(6), jnp.int32(0))
  x2 = np.asarray(second.images, np.float64)
  # Batch 2 starts at x2 + δ1 (other images; not clipped to the box before the forward).
  assert np.any((x2 + delta1 > 1) | (x2 + delta1 < 0))
  np.testing.assert_allclose(prepared["x_prior"], x2 + delta1, atol=1e-6)
  _, _, delta2, _, _, hand_loss = hand_step(weights, x2, second.labels, delta1, None)
  np.testing.assert_allclose(prepared["x_adv"], x2 + delta2, atol=1e-6)
  np.testing.assert_allclose(float(loss), hand_loss, rtol=1e-5)
  np.testing.assert_allclose(state["prior"]["eta"], delta2, atol=1e-6)


def test_loss_gradient_flows_through_the_forward_at_the_prior():
  ctx, params, images, labels = toy(num_epochs=1)
  method = make_method(FGSMMEP)
  state = known_state("momentum_epoch", np.random.default_rng(1))
  batch = batch_of(images, labels, [0, 1, 2])
  info = epoch_start_info(0, ctx)
  prepared, _, _, _ = method.prepare(ctx, params, {}, state, batch, jax.random.key(3), info)
  loss_fn = jax.jit(lambda p: method.loss(ctx, p, {}, batch, prepared, None, info)[0])
  grads = jax.grad(loss_fn)(params)

  def detached(p):  # the same loss with z0 as a constant
    z0 = jax.lax.stop_gradient(ctx.model(p, {}, prepared["x_prior"], "eval")[0])
    z = ctx.model(p, {}, prepared["x_adv"], "eval")[0]
    return losses.cross_entropy(z, batch.labels, F) + LAM * jnp.mean((z - z0) ** 2)

  detached_grads = jax.grad(detached)(params)
  h = 1e-2
  kernel = np.asarray(params["dense"]["kernel"])
  far_from_detached = 0
  for i in range(kernel.shape[0]):
    for k in range(kernel.shape[1]):
      def at(v):
        return float(loss_fn({"dense": {"kernel": params["dense"]["kernel"].at[i, k].set(v),
                                        "bias": params["dense"]["bias"]}}))
      numeric = (at(kernel[i, k] + h) - at(kernel[i, k] - h)) / (2 * h)
      np.testing.assert_allclose(grads["dense"]["kernel"][i, k], numeric, rtol=2e-3, atol=2e-3)
      far_from_detached += abs(float(detached_grads["dense"]["kernel"][i, k]) - numeric) > 2e-2
  assert far_from_detached >= 3


RESUME_ARGS = ["-m", "jaxat.main", "--config=configs/fgsm_mep.py:synthetic,smoke",
               "--config.log.progress=plain", "--config.num_epochs=2", "--config.batch_size=16",
               "--config.dataset.max_train=64", "--config.dataset.num_train=64",
               "--config.eval.pgd_steps=2", "--config.eval.every_epochs=2",
               "--config.method.reset_epochs=1"]
TOTAL_STEPS = 2 * (64 // 16)


@pytest.mark.slow
def test_sigterm_resume_keeps_prior_buffers(tmp_path):
  from jaxat.train.restore import load_trained_model
  interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
  results = interrupted_and_straight_runs(RESUME_ARGS, tmp_path, TOTAL_STEPS)
  assert results[0]["fingerprint"] == results[1]["fingerprint"]
  a = jax.device_get(load_trained_model(str(interrupted)).state.method_state)
  b = jax.device_get(load_trained_model(str(straight)).state.method_state)
  assert set(a["prior"]) == {"eta", "momentum", "written_epoch"}
  jax.tree.map(np.testing.assert_array_equal, a, b)
  # Live buffers: every example written in the last epoch (a reset epoch with R = 1).
  assert np.asarray(a["prior"]["written_epoch"]).min() == 1
  assert np.abs(np.asarray(a["prior"]["momentum"])).max() > 0


@pytest.mark.parametrize("name,dataset,dtype", [("fgsm_mep", "digits", "float32"),
                                                ("fgsm_ep", "synthetic", "bfloat16"),
                                                ("fgsm_bp", "synthetic", "float32")])
def test_methods_train_end_to_end(name, dataset, dtype):
  config = tiny_config(name, dataset, **{"num_epochs": 2, "batch_size": 32,
                                         "method.buffer_dtype": dtype, "method.reset_epochs": 1})
  exp, state, sums = train_all_epochs(config)
  assert sums[FIRST_NONFINITE] == -1
  assert np.isfinite(sums["loss"]) and sums["count"] == 2 * exp.ctx.steps_per_epoch
  prior = jax.device_get(state.method_state["prior"])
  assert str(prior["eta"].dtype) == dtype
  eta = np.asarray(prior["eta"], np.float32)
  assert np.abs(eta).max() <= config.method.eps * (1 + 1e-2)
  written = np.asarray(prior["written_epoch"])
  if name == "fgsm_bp":
    assert eta.shape[0] == config.batch_size and int(written) == 1
  else:
    assert eta.shape[0] == exp.ctx.num_train and written.max() == 1
    assert (written == 1).sum() == exp.ctx.steps_per_epoch * config.batch_size


TWO_DEVICES = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
    import jax, numpy as np
    from tiny_runs import tiny_config, train_all_epochs
    assert jax.device_count() == 2, jax.devices()
    out = {}
    for n in (1, 2):
        config = tiny_config("fgsm_mep", **{"num_devices": n, "num_epochs": 2, "batch_size": 32,
                                            "method.reset_epochs": 1})
        _, state, _ = train_all_epochs(config)
        if n == 2:
            prior = state.method_state["prior"]
            shards = {name: [[str(s.device), list(s.data.shape)] for s in prior[name].addressable_shards]
                      for name in ("eta", "momentum")}
        out[n] = jax.device_get(state.method_state["prior"])
    a, b = out[1], out[2]
    print(json.dumps({
        "rows": int(a["eta"].shape[0]), "shards": shards,
        "written_equal": bool(np.array_equal(a["written_epoch"], b["written_epoch"])),
        "eta_equal_fraction": float(np.mean(a["eta"] == b["eta"])),
        "momentum_max_rel_diff": float(np.max(np.abs(a["momentum"] - b["momentum"]))
                                       / np.max(np.abs(a["momentum"]))),
    }))
""")


@pytest.mark.slow
def test_prior_buffers_agree_between_one_and_two_devices():
  proc = run_cli(["-c", TWO_DEVICES], env_extra={
      "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  # Index bookkeeping and the fresh draws are exact; values agree up to float32
  # reassociation of the sharded batch (a sign may flip where a gradient is within rounding
  # of zero).
  assert report["written_equal"], report
  # Sharded by example: each of the 2 devices holds its own half of the rows, not a copy.
  half = report["rows"] // 2
  for name, shards in report["shards"].items():
    assert len({device for device, _ in shards}) == 2, (name, shards)
    assert [shape[0] for _, shape in shards] == [half, half], (name, shards)
  assert report["eta_equal_fraction"] >= 0.99, report
  assert report["momentum_max_rel_diff"] <= 1e-3, report
