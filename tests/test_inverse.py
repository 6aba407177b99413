"""Inverse adversaries (jaxat/methods/inverse.py): Eq. 4, the class-wise step, instance PGD."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.methods import inverse
from jaxat.models.forward import ModelFn

EPS = 4 / 255
STEP = 4 / 255


class TinyLinear(nn.Module):
  """logits = W·flatten(x) + b; features = flatten(x) (the input of the last layer)."""

  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train):
    features = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, name="dense")(features), features


def tiny_model(num_classes=3, image_shape=(2, 2, 1), seed=0):
  module = TinyLinear(num_classes)
  params = module.init(jax.random.key(seed), jnp.zeros((1,) + image_shape), train=False)["params"]
  return ModelFn(module), params


def test_inverse_loss_matches_a_hand_computation():
  logits = jnp.array([[2.0, 0.0, 0.0]])
  features = jnp.array([[1.0, 2.0]])
  clean_features = jnp.array([[0.0, 0.0]])   # ‖F(x̃) − F(x)‖₁ = 3
  adv_features = jnp.array([[1.0, 1.0]])     # ‖F(x̃) − F(x̂)‖₁ = 1
  ce = -np.log(np.exp(2.0) / (np.exp(2.0) + 2.0))
  value = inverse.inverse_loss(logits, features, jnp.array([0]), clean_features, adv_features, 0.5)
  np.testing.assert_allclose(value, [ce + 0.5 * (3.0 - 1.0)], rtol=1e-6)
  ce_only = inverse.inverse_loss(logits, features, jnp.array([0]), None, None, 0.0)
  np.testing.assert_allclose(ce_only, [ce], rtol=1e-6)
  averaged = inverse.inverse_loss(logits, features, jnp.array([0]), clean_features, adv_features,
                                  0.5, feature_reduction="mean")   # L1 means over 2 dims: 1.5, 0.5
  np.testing.assert_allclose(averaged, [ce + 0.5 * (1.5 - 0.5)], rtol=1e-6)
  with pytest.raises(ValueError, match="sum, mean"):
    inverse.feature_l1(features, clean_features, "max")


def test_inverse_loss_is_per_example_and_vmappable():
  key = jax.random.key(1)
  logits, features, clean, adv = (jax.random.normal(jax.random.fold_in(key, i), (5, d))
                                  for i, d in enumerate((4, 6, 6, 6)))
  labels = jnp.array([0, 3, 1, 2, 0])
  batched = inverse.inverse_loss(logits, features, labels, clean, adv, 1.0)
  single = jax.jit(jax.vmap(lambda *a: inverse.inverse_loss(*(t[None] for t in a), 1.0)[0]))(
      logits, features, labels, clean, adv)
  np.testing.assert_allclose(batched, single, rtol=1e-6)
  # Features of x and x̂ are constants: no gradient flows into them.
  grad = jax.grad(lambda c: jnp.sum(inverse.inverse_loss(logits, features, labels, c, adv, 1.0)))(clean)
  assert not np.any(np.asarray(grad))


def _linear_objective(weights, labels):
  """L(x̃_j) = Σ_pixels w_{y_j} · x̃_j: ∇_x̃ = w_{y_j} (constant sign per class)."""

  def objective(x_inv, aux):
    value = jnp.sum(weights[labels] * x_inv, axis=(1, 2, 3))
    return value, (jnp.zeros((x_inv.shape[0], weights.shape[0])), aux)

  return objective


def test_class_wise_step_moves_each_present_class_by_one_signed_step_and_keeps_absent_ones():
  num_classes, shape = 4, (2, 2, 1)
  rng = np.random.default_rng(0)
  weights = jnp.asarray(rng.choice([-1.0, 1.0], size=(num_classes,) + shape), jnp.float32)
  universal = jnp.asarray(rng.uniform(-0.002, 0.002, size=(num_classes,) + shape), jnp.float32)
  universal = universal.at[0, 0, 0, 0].set(EPS - 0.001)   # one entry near the bound: clipped
  labels = jnp.array([0, 2, 0])                              # classes 1 and 3 are absent
  x = jnp.full((3,) + shape, 0.5)                             # interior: no [0,1] clipping
  objective = _linear_objective(weights, labels)
  new, _, _ = inverse.universal_inverse_step(objective, universal, x, labels, EPS, STEP)
  new, universal, weights = np.asarray(new), np.asarray(universal), np.asarray(weights)
  expected = universal.copy()
  for c in (0, 2):   # hand-computed: ∇_{z_c} l_c = n_c·w_c, so the step is −α·sign(w_c)
    expected[c] = np.clip(universal[c] - STEP * np.sign(weights[c]), -EPS, EPS)
  np.testing.assert_array_equal(new[[1, 3]], universal[[1, 3]])
  np.testing.assert_allclose(new, expected, rtol=0, atol=1e-7)
  moved = np.abs(new[[0, 2]] - universal[[0, 2]])
  unclipped = np.abs(expected[[0, 2]]) < EPS
  np.testing.assert_allclose(moved[unclipped], STEP, rtol=1e-5)


def test_class_wise_gradient_is_the_sum_over_the_class_of_per_example_gradients():
  model, params = tiny_model()
  key = jax.random.key(3)
  x = jax.random.uniform(key, (6, 2, 2, 1), minval=0.1, maxval=0.9)
  labels = jnp.array([0, 1, 0, 0, 1, 1])
  universal = inverse.init_universal(jax.random.fold_in(key, 1), 3, (2, 2, 1))
  objective = inverse.inverse_objective(model, params, labels, "eval", None, None, 0.0)
  new = jax.jit(lambda z: inverse.universal_inverse_step(objective, z, x, labels, EPS, STEP)[0])(
      universal)

  def example_loss(x_inv, label):
    value, _ = inverse.inverse_objective(model, params, label[None], "eval", None, None, 0.0)(
        x_inv[None], None)
    return value[0]

  x_inv = inverse.apply_universal(x, universal, labels)
  per_example = jax.jit(jax.vmap(jax.grad(example_loss)))(x_inv, labels)
  for c in (0, 1):
    class_grad = np.asarray(per_example)[np.asarray(labels) == c].sum(axis=0)
    expected = np.clip(np.asarray(universal[c]) - STEP * np.sign(class_grad), -EPS, EPS)
    np.testing.assert_allclose(new[c], expected, atol=1e-7)
  np.testing.assert_array_equal(new[2], universal[2])   # class 2 absent


def test_universal_perturbations_stay_in_the_ball_and_images_in_the_box():
  model, params = tiny_model(num_classes=3)
  key = jax.random.key(5)
  universal = inverse.init_universal(key, 3, (2, 2, 1))
  objective_for = lambda labels: inverse.inverse_objective(model, params, labels, "eval",
                                                           None, None, 0.0)
  step = jax.jit(lambda z, x, y: inverse.universal_inverse_step(objective_for(y), z, x, y,
                                                                EPS, 3 * STEP, num_steps=2)[0])
  for i in range(6):
    k = jax.random.fold_in(key, i)
    # Pixels at 0 and 1 exercise the [0,1] clipping of x + z.
    x = jnp.round(jax.random.uniform(k, (5, 2, 2, 1)) * 2) / 2
    labels = jax.random.randint(jax.random.fold_in(k, 1), (5,), 0, 3)
    universal = step(universal, x, labels)
    assert float(jnp.max(jnp.abs(universal))) <= EPS + 1e-7
    x_inv = inverse.apply_universal(x, universal, labels)
    assert float(x_inv.min()) >= 0.0 and float(x_inv.max()) <= 1.0
    assert float(jnp.max(jnp.abs(x_inv - x))) <= EPS + 1e-7


def test_instance_inverse_pgd_descends_to_the_hand_computed_corner():
  # Two classes, logits (0, w·x): for label 1 the CE gradient is −σ(−w·x)·w, so descent moves
  # every pixel by +sign(w) until the ε' bound; for label 0 by −sign(w). Five steps of 2/255
  # from a 0.001-noise start reach the 4/255 corner exactly.
  w = jnp.array([1.0, -1.0, 2.0, -0.5])
  labels = jnp.array([1, 0])

  def objective(x_inv, aux):
    logits = jnp.stack([jnp.zeros(x_inv.shape[0]), x_inv.reshape(x_inv.shape[0], -1) @ w], axis=1)
    return inverse.inverse_loss(logits, None, labels, None, None, 0.0), (logits, aux)

  x = jnp.full((2, 2, 2, 1), 0.5)
  x_inv, _ = inverse.instance_inverse_examples(objective, x, labels, jax.random.key(0), EPS,
                                               2 / 255, 5)
  direction = np.sign(np.asarray(w)).reshape(2, 2, 1)
  np.testing.assert_allclose(x_inv[0], 0.5 + EPS * direction, atol=1e-7)
  np.testing.assert_allclose(x_inv[1], 0.5 - EPS * direction, atol=1e-7)


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_instance_inverse_examples_stay_in_the_ball(beta):
  model, params = tiny_model(num_classes=3, image_shape=(3, 3, 1), seed=2)
  key = jax.random.key(7)
  x = jnp.round(jax.random.uniform(key, (8, 3, 3, 1)) * 4) / 4
  labels = jax.random.randint(jax.random.fold_in(key, 1), (8,), 0, 3)
  _, clean_features, _ = model(params, {}, x, "eval")
  _, adv_features, _ = model(params, {}, jnp.clip(x + 8 / 255, 0, 1), "eval")
  objective = inverse.inverse_objective(model, params, labels, "eval", clean_features,
                                        adv_features, beta)
  x_inv = jax.jit(lambda k: inverse.instance_inverse_examples(objective, x, labels, k, EPS,
                                                              2 / 255, 5)[0])(jax.random.fold_in(key, 2))
  assert float(jnp.max(jnp.abs(x_inv - x))) <= EPS + 1e-7
  assert float(x_inv.min()) >= 0.0 and float(x_inv.max()) <= 1.0
  if beta == 0:   # smooth CE: signed descent lowers it (the L1 terms have a kink at x)
    before, _ = objective(x, None)
    after, _ = objective(x_inv, None)
    assert float(jnp.mean(after)) < float(jnp.mean(before))
