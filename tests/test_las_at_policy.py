"""LAS-AT policy pieces against hand-computed answers."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxat.methods import las_at_policy as lp


def test_reinforce_loss_two_action_policy_value_and_gradient():
  # One head, two actions, logits (0, log 3) ⇒ π = (1/4, 3/4) for both examples.
  logits = jnp.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
  actions = jnp.array([0, 1])
  reward = jnp.array(2.0)
  loss = lp.reinforce_loss([logits], [actions], reward)
  expected = 2.0 * (math.log(4.0) + math.log(4.0 / 3.0)) / 2
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
  # d(−log π_a)/d logits = π − onehot(a); times R, mean over the 2 examples.
  grad = jax.grad(lambda z: lp.reinforce_loss([z], [actions], reward))(logits)
  expected_grad = np.array([[0.25 - 1, 0.75], [0.25, 0.75 - 1]]) * 2.0 / 2
  np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=1e-6, atol=1e-7)


def test_reinforce_loss_sums_heads_and_stops_reward_gradient():
  a = jnp.array([[0.0, 0.0]])
  b = jnp.array([[0.0, 0.0, 0.0]])
  loss = lp.reinforce_loss([a, b], [jnp.array([1]), jnp.array([2])], jnp.array(1.0))
  np.testing.assert_allclose(float(loss), math.log(2.0) + math.log(3.0), rtol=1e-6)
  g = jax.grad(lambda r: lp.reinforce_loss([a], [jnp.array([0])], r))(jnp.array(1.0))
  assert float(g) == 0.0


def test_total_reward_clips_each_piece():
  w = lp.RewardWeights(c2=4.0, c3=2.0)
  np.testing.assert_allclose(float(lp.total_reward(jnp.array(1.5), jnp.array(0.5),
                                                   jnp.array(0.25), w)), 1.5 + 2.0 + 0.5)
  np.testing.assert_allclose(float(lp.total_reward(jnp.array(12.0), jnp.array(0.0),
                                                   jnp.array(0.0), w)), 10.0)
  np.testing.assert_allclose(float(lp.total_reward(jnp.array(-1.0), jnp.array(1.0),
                                                   jnp.array(1.0), lp.RewardWeights(c2=30.0, c3=2.0))),
                             0.0 + 10.0 + 2.0)


def test_strategy_counts_histogram():
  actions = jnp.array([0, 2, 2, 1, 2])
  labels = jnp.array([1, 0, 0, 1, 1])
  counts = lp.strategy_counts(actions, labels, num_options=3, num_classes=2)
  np.testing.assert_array_equal(np.asarray(counts), [[0, 1], [0, 1], [2, 1]])


def test_policy_update_interval_counts_steps_from_one():
  steps = jnp.arange(1, 41)
  updates = np.asarray(lp.is_policy_update_step(steps, 20))
  assert list(np.nonzero(updates)[0] + 1) == [20, 40]


def test_option_sets_pixel_units():
  eps, steps, alpha = lp.OPTION_SETS[('las_pgd_at', 'cifar10')]
  assert eps.values[0] == 3 / 255 and eps.values[-1] == 15 / 255 and len(eps.values) == 13
  assert steps.values == tuple(float(v) for v in range(3, 15))
  assert len(alpha.values) == 5


def test_masked_per_example_pgd_matches_a_per_example_loop_on_a_linear_model():
  from jaxat.attacks import pgd
  from jaxat.attacks.budget import Budget
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(0.2, 0.8, (3, 2, 2, 1)), jnp.float32)
  labels = jnp.array([0, 1, 0])
  w = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)

  def logits_fn(z):
    return z.reshape(z.shape[0], -1) @ w

  def ce(logits, y):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1)[:, 0]

  eps = np.array([3, 5, 10]) / 255
  alpha = np.array([1, 2, 4]) / 255
  num_steps = np.array([1, 3, 2])
  start = lp.uniform_start(jax.random.PRNGKey(1), x)
  assert float(jnp.max(jnp.abs(start - x))) <= 8 / 255 + 1e-7
  result = pgd.pgd(pgd.from_logits_fn(logits_fn, ce, labels), x, labels, jax.random.PRNGKey(2),
                   Budget(jnp.asarray(eps, jnp.float32), jnp.asarray(alpha, jnp.float32),
                          jnp.asarray(num_steps)),
                   max_steps=3, evaluate_final=False, start=start)
  # Independent per-example loop: the CE gradient of a linear model is w (softmax − onehot).
  w_np = np.asarray(w, np.float64)
  for i in range(3):
    xi = np.asarray(x[i], np.float64).reshape(-1)
    zi = np.asarray(start[i], np.float64).reshape(-1)
    for _ in range(num_steps[i]):
      logits = zi @ w_np
      p = np.exp(logits - logits.max())
      p /= p.sum()
      p[int(labels[i])] -= 1
      grad = w_np @ p
      zi = np.clip(np.clip(zi + alpha[i] * np.sign(grad), xi - eps[i], xi + eps[i]), 0, 1)
    np.testing.assert_allclose(np.asarray(result.x_adv[i]).reshape(-1), zi, atol=1e-6)
    assert np.max(np.abs(np.asarray(result.x_adv[i]).reshape(-1) - xi)) <= eps[i] + 1e-6


def test_trades_loss_per_example_beta():
  from jaxat.methods.trades import trades_loss
  clean = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
  adv = jnp.array([[math.log(3.0), 0.0], [0.0, 0.0]])
  labels = jnp.array([0, 0])
  # KL((1/2,1/2) || (3/4,1/4)) and KL((3/4,1/4) || (1/2,1/2)), by hand.
  kl0 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
  kl1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
  natural = (math.log(2.0) + math.log(4.0 / 3.0)) / 2
  loss, nat, robust = trades_loss(clean, adv, clean, labels, jnp.array([2.0, 6.0]))
  np.testing.assert_allclose(float(nat), natural, rtol=1e-5)
  np.testing.assert_allclose(float(robust), (kl0 + kl1) / 2, rtol=1e-5)
  np.testing.assert_allclose(float(loss), natural + (2.0 * kl0 + 6.0 * kl1) / 2, rtol=1e-5)
  scalar_loss, _, _ = trades_loss(clean, adv, clean, labels, 6.0)
  np.testing.assert_allclose(float(scalar_loss), natural + 6.0 * (kl0 + kl1) / 2, rtol=1e-5)


def test_lookahead_params_is_one_plain_sgd_step_with_weight_decay():
  params = {'w': jnp.array([1.0, -2.0]), 'b': jnp.array(0.5)}
  grads = {'w': jnp.array([0.1, 0.2]), 'b': jnp.array(-1.0)}
  new = lp.lookahead_params(params, grads, jnp.array(0.1), weight_decay=0.01)
  np.testing.assert_allclose(np.asarray(new['w']), [1.0 - 0.1 * (0.1 + 0.01), -2.0 - 0.1 * (0.2 - 0.02)], rtol=1e-6)
  np.testing.assert_allclose(float(new['b']), 0.5 - 0.1 * (-1.0 + 0.005), rtol=1e-6)
