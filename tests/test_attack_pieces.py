"""Attack pieces with known answers: losses, per-example keys, starts, the threat-model
invariants of every evaluation attack (property tests), per-example restarts, and the
analytic L-inf optimum of an affine classifier."""

import functools

import hypothesis

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.attacks import apgd, inits, losses, pgd, pgd_attacks, rng
from jaxat.attacks.autoattack import within_threat_model
from jaxat.attacks.budget import Budget


def affine_logits(weights, bias):
  return lambda x: x.reshape(x.shape[0], -1) @ weights + bias


def random_affine(key, dim, num_classes, scale=1.0):
  w_key, b_key = jax.random.split(key)
  return (scale * jax.random.normal(w_key, (dim, num_classes)),
          0.1 * jax.random.normal(b_key, (num_classes,)))


# --- losses --------------------------------------------------------------------------------


def test_dlr_matches_hand_computed_values():
  logits = jnp.array([[3.0, 1.0, 2.0, 0.5], [3.0, 1.0, 2.0, 0.5]])
  labels = jnp.array([0, 1])
  # Sorted descending 3, 2, 1, 0.5; denominator z(1) - z(3) = 3 - 1 = 2.
  np.testing.assert_allclose(losses.dlr_loss(logits, labels), [-(3 - 2) / 2, -(1 - 3) / 2], rtol=1e-6)


def test_targeted_dlr_matches_hand_computed_values():
  logits = jnp.array([[3.0, 1.0, 2.0, 0.5], [0.0, 4.0, 1.0, 2.0]])
  labels = jnp.array([0, 2])
  targets = jnp.array([3, 1])
  # Row 0: -(3 - 0.5) / (3 - (1 + 0.5)/2); row 1 sorted 4, 2, 1, 0: -(1 - 4) / (4 - (1 + 0)/2).
  expected = [-(3 - 0.5) / (3 - 0.75), -(1 - 4) / (4 - 0.5)]
  np.testing.assert_allclose(losses.targeted_dlr_loss(logits, labels, targets), expected, rtol=1e-6)


def test_dlr_with_equal_logits_is_finite_zero():
  logits = jnp.zeros((2, 5))
  np.testing.assert_array_equal(losses.dlr_loss(logits, jnp.array([0, 3])), [0.0, 0.0])
  np.testing.assert_array_equal(losses.targeted_dlr_loss(logits, jnp.array([0, 3]), jnp.array([1, 2])),
                                [0.0, 0.0])


def test_cw_other_logit_is_the_largest_non_true_logit():
  logits = jnp.array([[5.0, 7.0, 1.0], [5.0, 7.0, 1.0]])
  np.testing.assert_allclose(losses.negative_margin(logits, jnp.array([1, 0])), [-(7 - 5), -(5 - 7)])


def test_few_class_losses_raise():
  with pytest.raises(ValueError, match="at least 3"):
    losses.dlr_loss(jnp.zeros((1, 2)), jnp.array([0]))
  with pytest.raises(ValueError, match="at least 4"):
    losses.targeted_dlr_loss(jnp.zeros((1, 3)), jnp.array([0]), jnp.array([1]))


# --- keys and starts -----------------------------------------------------------------------


def test_per_example_draws_do_not_depend_on_the_batch():
  key = jax.random.key(3)
  x = jnp.full((5, 4, 4, 2), 0.5)
  keys = rng.example_keys(key, jnp.arange(5))
  full = inits.uniform_linf(keys, x, 0.1)
  part = inits.uniform_linf(keys[2:4], x[2:4], 0.1)
  np.testing.assert_array_equal(full[2:4], part)
  assert not np.allclose(full[0], full[1])


def test_single_key_draws_are_unchanged_by_the_per_example_extension():
  key = jax.random.key(0)
  x = jnp.full((3, 2, 2, 1), 0.5)
  expected = jnp.clip(x + jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * 0.1, 0, 1)
  np.testing.assert_array_equal(inits.uniform_linf(key, x, 0.1), expected)


def test_rng_rejects_bad_key_shapes():
  with pytest.raises(ValueError, match="batch of keys"):
    rng.is_per_example(jax.random.split(jax.random.key(0), 4).reshape(2, 2))


def test_apgd_linf_start_has_largest_coordinate_exactly_eps():
  x = jnp.full((4, 3, 3, 2), 0.5)
  start = inits.scaled_uniform_linf(jax.random.key(1), x, 0.05)
  largest = jnp.max(jnp.abs(start - x).reshape(4, -1), axis=1)
  np.testing.assert_allclose(largest, 0.05, rtol=1e-5)


def test_apgd_l2_start_lies_on_the_sphere():
  x = jnp.full((4, 3, 3, 2), 0.5)
  start = inits.sphere_l2(jax.random.key(1), x, 0.3)
  np.testing.assert_allclose(jnp.sqrt(jnp.sum((start - x).reshape(4, -1) ** 2, axis=1)), 0.3, rtol=1e-5)


# --- the analytic optimum on an affine classifier ------------------------------------------


@pytest.mark.parametrize("attack", ["pgd_ce", "pgd_cw", "apgd_ce", "fgsm"])
def test_linf_attacks_reach_the_analytic_margin_shift_of_a_two_class_affine_model(attack):
  """margin(x + d) = margin(x) + (w_y - w_o).d >= margin(x) - eps ||w_y - w_o||_1, with
  equality at d = -eps sign(w_y - w_o): every L-inf attack must end exactly there."""
  dim, eps = 12, 0.05
  weights, bias = random_affine(jax.random.key(0), dim, 2)
  logits_fn = affine_logits(weights, bias)
  x = jax.random.uniform(jax.random.key(1), (6, 2, 3, 2), minval=0.2, maxval=0.8)  # box inactive
  y = jnp.argmax(logits_fn(x), axis=-1)
  key = jax.random.key(2)

  @jax.jit
  def run():
    if attack == "apgd_ce":
      return apgd.apgd(logits_fn, x, y, key, eps=eps, loss="ce", n_iter=10).x_best
    if attack == "fgsm":
      return pgd_attacks.fgsm(logits_fn, x, y, key, eps=eps).x_adv
    return pgd_attacks.pgd_attack(logits_fn, x, y, key, eps=eps, num_steps=10, step_size=eps / 4,
                                  loss=attack.split("_")[1]).x_adv

  x_adv = run()
  w_gap = (weights[:, 0] - weights[:, 1]) * jnp.where(y == 0, 1.0, -1.0)[:, None]  # w_y - w_o
  expected = losses.margin(logits_fn(x), y) - eps * jnp.sum(jnp.abs(w_gap), axis=1)
  np.testing.assert_allclose(losses.margin(logits_fn(x_adv), y), expected, atol=1e-5)


# --- threat-model invariants (property tests) ----------------------------------------------
# Shapes come from a small set so that each jitted attack compiles at most once per shape;
# eps, seeds, models, labels and pixel values vary freely (they are traced).

_SHAPES = ((1, 3, 2, 1), (3, 2, 4, 2))
_NUM_CLASSES = 5


@functools.partial(jax.jit, static_argnames=("name", "norm"))
def _attack_points(name, norm, x, y, weights, bias, key, eps):
  logits_fn = affine_logits(weights, bias)
  if name == "pgd":
    return pgd_attacks.pgd_attack(logits_fn, x, y, key, eps=eps, num_steps=3, step_size=eps / 2,
                                  norm=norm, restarts=2).x_adv
  if name == "pgd_es_cw":
    return pgd_attacks.pgd_attack(logits_fn, x, y, key, eps=eps, num_steps=3, step_size=eps,
                                  norm=norm, loss="cw", early_stop=True, init="normal").x_adv
  if name == "apgd":
    result = apgd.apgd(logits_fn, x, y, key, eps=eps, norm=norm, loss="ce", n_iter=4)
    return jnp.concatenate([result.x_adv, result.x_best])
  return apgd.apgd_targeted(logits_fn, x, y, key, eps=eps, norm=norm, n_iter=3, n_target_classes=1).x_adv


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", ["pgd", "pgd_es_cw", "apgd", "apgd_t"])
@hypothesis.settings(max_examples=4, deadline=None, derandomize=True)
@hypothesis.given(shape=st.sampled_from(_SHAPES), eps=st.floats(0.01, 0.5),
                  seed=st.integers(0, 2 ** 16))
def test_adversarial_examples_stay_in_the_ball_and_the_image_box(name, norm, shape, eps, seed):
  keys = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.uniform(keys[0], shape)
  x = jnp.where(x < 0.2, 0.0, jnp.where(x > 0.8, 1.0, x))  # pixels on the box faces too
  weights, bias = random_affine(keys[1], int(np.prod(shape[1:])), _NUM_CLASSES, scale=3.0)
  y = jax.random.randint(keys[2], (shape[0],), 0, _NUM_CLASSES)
  x_adv = _attack_points(name, norm, x, y, weights, bias, keys[2], eps)
  reference = jnp.concatenate([x] * (x_adv.shape[0] // x.shape[0]))
  assert bool(jnp.all((x_adv >= 0) & (x_adv <= 1)))
  assert bool(jnp.all(within_threat_model(x_adv, reference, eps, norm)))


# --- restarts keep the worst case per example ----------------------------------------------


def _sign_model(x):
  """Class 0 iff the pixel sum exceeds that of a 0.5-grey image: a random start fools an
  example exactly when it lowers the sum."""
  s = jnp.sum(x.reshape(x.shape[0], -1) - 0.5, axis=1)
  return jnp.stack([s, -s], axis=1)


def test_pgd_restarts_keep_the_worst_case_per_example_not_per_batch():
  x = jnp.full((16, 2, 2, 1), 0.5) + 1e-4  # class 0, barely
  y = jnp.zeros(16, jnp.int32)
  key = jax.random.key(7)
  objective = pgd.from_logits_fn(_sign_model, losses.cross_entropy, y)
  budget = Budget(0.1, 0.0, 1)  # zero step: the result is the random start itself
  fooled_by_restart = []
  for restart in range(2):
    start = inits.uniform_linf(jax.random.fold_in(key, restart), x, 0.1)
    fooled_by_restart.append(np.asarray(jnp.argmax(_sign_model(start), -1) != y))
  a, b = fooled_by_restart
  assert (a & ~b).any() and (b & ~a).any()  # each restart fools points the other misses
  result = jax.jit(lambda: pgd.pgd(objective, x, y, key, budget, max_steps=1, restarts=2))()
  np.testing.assert_array_equal(~np.asarray(result.correct), a | b)


def test_pgd_early_stop_freezes_fooled_examples():
  weights, bias = random_affine(jax.random.key(0), 8, 3)
  logits_fn = affine_logits(weights, bias)
  x = jax.random.uniform(jax.random.key(1), (32, 2, 2, 2))
  y = jnp.argmax(logits_fn(x), -1)
  run = jax.jit(lambda early_stop: pgd_attacks.pgd_attack(
      logits_fn, x, y, jax.random.key(2), eps=0.3, num_steps=5, step_size=0.1,
      early_stop=early_stop), static_argnums=0)
  plain, stopped = run(False), run(True)
  # Same start, same steps until an example is first misclassified: whatever plain PGD fools
  # at its last iterate, the early-stopped run fools too (at that iterate or an earlier one).
  plain_fooled, stopped_fooled = ~np.asarray(plain.robust), ~np.asarray(stopped.robust)
  assert plain_fooled.any()
  assert not (plain_fooled & ~stopped_fooled).any()


def test_inactive_rows_come_back_unchanged():
  weights, bias = random_affine(jax.random.key(0), 8, 4)
  logits_fn = affine_logits(weights, bias)
  x = jax.random.uniform(jax.random.key(1), (4, 2, 2, 2))
  y = jnp.argmax(logits_fn(x), -1)
  active = jnp.array([True, False, True, False])
  run_pgd = jax.jit(lambda: pgd_attacks.pgd_attack(logits_fn, x, y, jax.random.key(2), eps=0.5,
                                                   num_steps=2, step_size=0.2, active=active))
  run_apgd = jax.jit(lambda: apgd.apgd(logits_fn, x, y, jax.random.key(2), eps=0.5, n_iter=3,
                                       active=active))
  for result in (run_pgd(), run_apgd()):
    np.testing.assert_array_equal(result.x_adv[~np.asarray(active)], x[~np.asarray(active)])
    assert not bool(jnp.any(result.robust[~np.asarray(active)]))


def test_unknown_pgd_loss_raises():
  with pytest.raises(ValueError, match="valid choices: ce, cw"):
    pgd_attacks.pgd_attack(lambda z: z.reshape(1, -1), jnp.zeros((1, 1, 1, 2)), jnp.array([0]),
                           jax.random.key(0), eps=0.1, num_steps=1, step_size=0.1, loss="dlr")



def test_pgd_starts_from_an_explicit_start_point_as_given():
  # Objective w·x per example: its input gradient is w everywhere, so one ascent step of α
  # from the start s is Π_[0,1](Π_ε(s + α·sign(w))) — and the start itself is neither
  # projected nor clipped before the step (its third pixel lies 0.6 below x: projected
  # first, it would end at 0.43 instead of 0.4).
  x = jnp.full((2, 2, 2, 1), 0.5)
  w = jnp.array([1.0, -1.0, 1.0, -1.0]).reshape(1, 2, 2, 1)

  def objective(x_adv, aux):
    logits = jnp.zeros((x_adv.shape[0], 2))
    return jnp.sum(w * x_adv, axis=(1, 2, 3)), (logits, aux)

  eps, alpha = 0.1, 0.03
  start = x + jnp.array([0.2, 0.0, -0.6, 0.05]).reshape(1, 2, 2, 1)
  result = pgd.pgd(objective, x, jnp.zeros((2,), jnp.int32), jax.random.key(0),
                       Budget(eps, alpha, 1), max_steps=1, evaluate_final=False, start=start)
  expected = np.clip(np.clip(np.asarray(start) + alpha * np.sign(np.asarray(w)) - 0.5, -eps, eps)
                     + 0.5, 0.0, 1.0)
  np.testing.assert_allclose(np.asarray(result.x_adv), expected, atol=1e-7)
  with pytest.raises(ValueError, match="restarts = 1"):
    pgd.pgd(objective, x, jnp.zeros((2,), jnp.int32), jax.random.key(0), Budget(eps, alpha, 1),
                max_steps=1, restarts=2, start=start)
