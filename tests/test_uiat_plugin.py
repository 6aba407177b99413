"""UIAT as a plug-in for a single-step method (Eq. 13 of Dong et al.; `method.base_method`,
jaxat/methods/uiat.py): the base makes x̂ and its own loss, UIAT adds λ·KL(p̄ ‖ p(x̂)) on
the logits of the base's training forward. Checked by hand in numpy on a toy linear
model with FGSM-MEP as the base, plus the config tokens, validation and a tiny run."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.methods.base import Batch, StepContext, epoch_start_info
from jaxat.methods.fgsm_pgi import FGSMMEP
from jaxat.methods.registry import create_method
from jaxat.methods.uiat import UIATOneOff
from jaxat.models.forward import ModelFn
from jaxat.train.step import FIRST_NONFINITE
from tiny_runs import load_config, tiny_config, train_all_epochs

NUM_CLASSES, SHAPE, NUM_TRAIN, B = 4, (2, 2, 1), 6, 3
LAM, INV_EPS = 2.0, 0.1
NUM_EPOCHS = 5   # T' = floor(0.8·5) = epoch 4


class TinyLinear(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    features = x.reshape((x.shape[0], -1))
    return nn.Dense(NUM_CLASSES, name="dense")(features), features


def toy():
  module = TinyLinear()
  params = module.init(jax.random.key(0), jnp.zeros((1,) + SHAPE), train=False)["params"]
  # Larger weights than the initialiser's, so the probabilities are far from uniform.
  params = jax.tree.map(lambda p: 3.0 * p + 0.1, params)
  ctx = StepContext(model=ModelFn(module), num_classes=NUM_CLASSES, num_train=NUM_TRAIN,
                    image_shape=SHAPE, steps_per_epoch=2, num_epochs=NUM_EPOCHS, batch_size=B)
  images = jax.random.uniform(jax.random.key(1), (NUM_TRAIN,) + SHAPE, minval=0.2, maxval=0.8)
  labels = jnp.array([0, 1, 2, 3, 1, 2])
  indices = jnp.array([4, 0, 2], jnp.int32)
  return ctx, params, Batch(images[indices], labels[indices], indices)


def base_config():
  cfg = FGSMMEP.default_config()
  cfg.update(eps=0.2, step_size=0.2, reg_weight=1.0)
  return cfg


def plugged():
  cfg = UIATOneOff.plug_into(base_config())
  cfg.update(kl_weight=LAM)
  cfg.inverse.update(eps=INV_EPS, step_size=INV_EPS)
  UIATOneOff.validate(cfg, NUM_CLASSES)
  return create_method(cfg)


def run_phase(method, ctx, params, batch, epoch):
  key = jax.random.key(7)
  info = epoch_start_info(epoch, ctx)
  state = method.init_state(jax.random.key(3), ctx, params, {})
  prepared, _, new_state, _ = method.prepare(ctx, params, {}, state, batch, key, info)
  loss_fn = lambda p: method.loss(ctx, p, {}, batch, prepared, key, info)[0]
  loss, grads = jax.value_and_grad(loss_fn)(params)
  return state, prepared, new_state, float(loss), grads


def np_linear(params, x):
  w = np.asarray(params["dense"]["kernel"], np.float64)
  b = np.asarray(params["dense"]["bias"], np.float64)
  flat = np.asarray(x, np.float64).reshape(len(x), -1)
  return flat @ w + b, flat


def np_softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("epoch", [0, 4], ids=["before_T'", "at_T'"])
def test_loss_is_the_base_loss_plus_lambda_kl_on_the_bases_logits(epoch):
  ctx, params, batch = toy()
  method = plugged()
  state, prepared, new_state, loss, grads = run_phase(method, ctx, params, batch, epoch)

  # The base alone, with the key it gets inside the plug-in: same x̂, same buffers.
  base = FGSMMEP(base_config())
  base_state = base.init_state(jax.random.fold_in(jax.random.key(3), 1), ctx, params, {})
  info = epoch_start_info(epoch, ctx)
  base_prepared, _, base_new_state, _ = base.prepare(ctx, params, {}, base_state, batch,
                                                     jax.random.key(7), info)
  x_adv = np.asarray(base_prepared["x_adv"])
  np.testing.assert_array_equal(prepared["base"]["x_adv"], x_adv)
  for name in ("eta", "momentum"):
    np.testing.assert_array_equal(new_state["base"]["prior"][name],
                                  base_new_state["prior"][name])
  base_loss_fn = lambda p: base.loss(ctx, p, {}, batch, base_prepared, jax.random.key(7), info)[0]
  base_loss, base_grads = jax.value_and_grad(base_loss_fn)(params)

  # The target by hand: p(x) before T' (Eq. 10); at T' p(x + z_y) with the class-wise z
  # after its CE-only descent step (β = 0): z_y ← Π_ε'(z_y − α'·sign(∇ CE)).
  x = np.asarray(batch.images, np.float64)
  labels = np.asarray(batch.labels)
  if epoch == 0:
    target = np_softmax(np_linear(params, x)[0])
  else:
    z = np.asarray(state["universal"], np.float64)
    z_in = z[labels]
    logits_in, _ = np_linear(params, np.clip(x + z_in, 0, 1))
    w = np.asarray(params["dense"]["kernel"], np.float64)
    grad_x = ((np_softmax(logits_in) - np.eye(NUM_CLASSES)[labels]) @ w.T).reshape(x.shape)
    z_new = z.copy()
    for k in range(NUM_CLASSES):  # the class gradient: sum over the class's examples
      members = labels == k
      if members.any():
        z_new[k] = np.clip(z[k] - INV_EPS * np.sign(grad_x[members].sum(0)), -INV_EPS, INV_EPS)
    np.testing.assert_allclose(new_state["universal"], z_new, atol=1e-6)
    target = np_softmax(np_linear(params, np.clip(x + z_new[labels], 0, 1))[0])
  np.testing.assert_allclose(prepared["target"], target, rtol=1e-5, atol=1e-6)

  logits_adv, flat_adv = np_linear(params, x_adv)
  q = np_softmax(logits_adv)
  kl = np.mean(np.sum(target * (np.log(target) - np.log(q)), -1))   # batchmean
  np.testing.assert_allclose(loss, float(base_loss) + LAM * kl, rtol=1e-5)
  # ∂/∂W of λ·KL(t ‖ softmax(xW + b)) = λ·x̂ᵀ(q − t)/B; the rest is the base's gradient.
  kl_grad_w = LAM * flat_adv.T @ (q - target) / B
  np.testing.assert_allclose(np.asarray(grads["dense"]["kernel"]) - base_grads["dense"]["kernel"],
                             kl_grad_w, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(grads["dense"]["bias"]) - base_grads["dense"]["bias"],
                             LAM * np.mean(q - target, 0), rtol=1e-4, atol=1e-6)


def test_plugin_over_fgsm_sdi_keeps_the_generator_and_adds_the_kl_term():
  ctx, params, batch = toy()
  from jaxat.methods.fgsm_sdi import FGSMSDI
  base_cfg = FGSMSDI.default_config()
  base_cfg.update(eps=0.2, step_size=0.2, generator_width=4, generator_every=1)
  cfg = UIATOneOff.plug_into(base_cfg)
  cfg.update(kl_weight=LAM)
  UIATOneOff.validate(cfg, NUM_CLASSES)
  method = create_method(cfg)
  state, prepared, new_state, loss, _ = run_phase(method, ctx, params, batch, 0)
  base = FGSMSDI(base_cfg)
  info = epoch_start_info(0, ctx)
  base_prepared, _, base_new_state, _ = base.prepare(ctx, params, {}, state["base"], batch,
                                                     jax.random.key(7), info)
  np.testing.assert_array_equal(prepared["base"]["x_adv"], base_prepared["x_adv"])
  # The generator's update (every batch here) happened inside the plug-in as in the base.
  for a, b in zip(jax.tree.leaves(new_state["base"]), jax.tree.leaves(base_new_state)):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(new_state["base"]), jax.tree.leaves(state["base"])))
  base_loss = base.loss(ctx, params, {}, batch, base_prepared, jax.random.key(7), info)[0]
  x = np.asarray(batch.images, np.float64)
  target = np_softmax(np_linear(params, x)[0])          # p(x) before T'
  q = np_softmax(np_linear(params, np.asarray(base_prepared["x_adv"]))[0])
  kl = np.mean(np.sum(target * (np.log(target) - np.log(q)), -1))
  np.testing.assert_allclose(loss, float(base_loss) + LAM * kl, rtol=1e-5)


def test_after_T_prime_the_stored_target_is_used():
  ctx, params, batch = toy()
  method = plugged()
  info = epoch_start_info(4, ctx)  # T': the inverse target is written for these examples
  state = method.init_state(jax.random.key(3), ctx, params, {})
  _, _, state, _ = method.prepare(ctx, params, {}, state, batch, jax.random.key(7), info)
  written = np.asarray(state["target"]["probs"])[np.asarray(batch.indices)]
  moved = jax.tree.map(lambda p: p + 0.5, params)  # a later model: p(x̃) would differ
  prepared, _, _, _ = method.prepare(ctx, moved, {}, state, batch, jax.random.key(8),
                                     epoch_start_info(NUM_EPOCHS, ctx))
  np.testing.assert_array_equal(prepared["target"], written)


def test_uiat_oneoff_tokens_plug_into_the_base_recipe():
  c = load_config("uiat_oneoff", "cifar10,fgsm_mep")
  alone = load_config("fgsm_mep", "cifar10")
  assert c.method.name == "uiat_oneoff" and c.method.oneoff
  assert "attack" not in c.method
  assert c.method.base_method.to_dict() == alone.method.to_dict()
  for field in ("model", "schedule", "optimizer", "eval", "dataset"):
    assert c[field].to_dict() == alone[field].to_dict(), field
  assert (c.num_epochs, c.batch_size) == (alone.num_epochs, alone.batch_size) == (110, 128)
  assert c.method.inverse.eps == pytest.approx(4 / 255)
  assert c.method.inverse.step_size == pytest.approx(4 / 255)
  assert c.method.inverse.beta == 0.0 and c.method.kl_weight == 3.5 and c.method.oneoff_start == 0.8
  assert load_config("uiat_oneoff", "svhn,fgsm_ep").method.kl_weight == 3.0
  sdi = load_config("uiat_oneoff", "cifar10,fgsm_sdi")
  assert sdi.method.base_method.to_dict() == load_config("fgsm_sdi", "cifar10").method.to_dict()
  g = load_config("uiat_oneoff", "cifar10,grad_align")
  assert g.method.base_method.to_dict() == load_config("grad_align", "cifar10").method.to_dict()
  # The attack-only tokens still set UIAT's own attack.
  r = load_config("uiat_oneoff", "cifar10,fgsm_rs")
  assert "base_method" not in r.method and r.method.attack.num_steps == 1
  with pytest.raises(ValueError, match="several single-step methods"):
    load_config("uiat_oneoff", "fgsm_mep,grad_align")
  with pytest.raises(ValueError, match="fgsm_mep"):
    load_config("pgd_at", "fgsm_mep")


def test_plugin_validation_names_the_field():
  cfg = UIATOneOff.plug_into(base_config())
  cfg.base_method.name = "pgd_at"
  with pytest.raises(ValueError, match=r"^method.base_method.name='pgd_at' cannot carry UIAT; "
                                       r"valid choices: .*fgsm_mep"):
    UIATOneOff.validate(cfg)
  cfg = UIATOneOff.plug_into(base_config())
  cfg.base_method.reg_weight = -1.0
  with pytest.raises(ValueError, match=r"^method.base_method.reg_weight \(λ\) must be >= 0"):
    UIATOneOff.validate(cfg)
  with pytest.raises(ValueError, match="valid choices"):
    UIATOneOff.plug_into(load_config("pgd_at", "digits").method)


def test_plugin_trains_end_to_end():
  base = "fgsm_mep"
  config = tiny_config("uiat_oneoff", "synthetic", **{"num_epochs": 2})
  config.unlock()
  config.method = UIATOneOff.plug_into(tiny_config(base).method)
  config.lock()
  UIATOneOff.validate(config.method, 10)
  exp, state, sums = train_all_epochs(config)
  assert sums[FIRST_NONFINITE] == -1 and np.isfinite(sums["loss"])
  assert np.isfinite(sums["kl"]) and sums["kl"] > 0
  # The base's own state lives under method_state['base'] (MEP's per-example buffers).
  written = np.asarray(state.method_state["base"]["prior"]["written_epoch"])
  assert written.max() == 1
  assert np.asarray(state.method_state["target"]["written_epoch"]).max() == 1  # T' = epoch 1
  assert isinstance(exp.method.base, FGSMMEP)
