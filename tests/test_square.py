"""Tests for the Square attack (jaxat.attacks.square).

Known answers: the p schedule and window sides of the reference (docs/evaluation.md#square),
the L-inf stripe start, the L2 eta pattern (in closed form), few-iteration
trajectories with injected draws re-derived in numpy, and invariants (monotone margin,
early exit, ball and box, determinism, inactive rows).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.attacks.square import (L2SquareDraws, LinfSquareDraws, eta_pattern, l2_start,
                                  l2_tile_grid, linf_start, p_selection, sample_square_draws,
                                  square_attack, square_side)

# --- schedule and geometry -------------------------------------------------------------


@pytest.mark.parametrize("iteration,expected", [
    (0, 0.8), (10, 0.8), (11, 0.4), (50, 0.4), (51, 0.2), (200, 0.2), (201, 0.1), (500, 0.1),
    (501, 0.05), (1000, 0.05), (1001, 0.025), (2000, 0.025), (2001, 0.0125), (4000, 0.0125),
    (4001, 0.00625), (6000, 0.00625), (6001, 0.003125), (8000, 0.003125), (8001, 0.0015625),
    (20000, 0.0015625)])
def test_p_schedule_raw_index(iteration, expected):
  assert p_selection(iteration, 0.8) == pytest.approx(expected, rel=1e-12)


def test_p_schedule_rescaled_to_10000_queries():
  # int(i / 1000 * 10000): i = 3 reads 30, i = 10 reads 100, i = 999 reads 9990.
  assert p_selection(0, 0.8, 1000, True) == 0.8
  assert p_selection(3, 0.8, 1000, True) == 0.4
  assert p_selection(10, 0.8, 1000, True) == 0.2
  assert p_selection(999, 0.8, 1000, True) == pytest.approx(0.8 / 512)


@pytest.mark.parametrize("shape,linf_sides,l2_sides", [
    ((32, 32, 3), (29, 20, 14, 10, 7, 5, 4, 3), (29, 21, 15, 11, 7, 5, 5, 3)),
    ((28, 28, 1), (25, 18, 13, 9, 6, 4, 3, 2), (25, 19, 13, 9, 7, 5, 3, 3)),
    ((224, 224, 3), (200, 142, 100, 71, 50, 35, 25, 18), (201, 143, 101, 71, 51, 35, 25, 19)),
])
def test_window_sides_per_stage(shape, linf_sides, l2_sides):
  height, width, channels = shape
  for stage, (linf_side, l2_side) in enumerate(zip(linf_sides, l2_sides)):
    p = 0.8 / 2 ** stage
    assert square_side(p, height, width, channels, "linf") == linf_side
    assert square_side(p, height, width, channels, "l2") == l2_side


def test_window_side_clamps_to_the_short_image_side():
  assert square_side(0.8, 8, 4, 1, "linf") == 4     # round(sqrt(25.6)) = 5 > min(H, W)
  assert square_side(0.01, 8, 8, 1, "linf") == 1    # round(0.8) = 1
  assert square_side(0.01, 8, 8, 1, "l2") == 3      # at least 3
  assert square_side(0.5, 8, 8, 1, "l2") == 7       # 6 is even -> 7


@pytest.mark.parametrize("height,width,side,offset,num_tiles", [
    (32, 32, 6, 1, 25), (28, 28, 5, 1, 25), (224, 224, 44, 2, 25), (10, 10, 2, 0, 25),
    (8, 6, 1, 1, 48)])
def test_l2_start_tile_grid(height, width, side, offset, num_tiles):
  tile_side, corners = l2_tile_grid(height, width)
  assert tile_side == side
  assert corners[0] == (offset, offset)
  assert len(corners) == num_tiles
  assert corners[1] == (offset, offset + side)   # row-major order


def test_linf_stripe_start_layout():
  rng = np.random.default_rng(0)
  x = np.full((2, 5, 4, 3), 0.5, np.float32)
  x[1, :, 0, :] = 0.99   # clipped at the top face
  signs = rng.choice([-1.0, 1.0], size=(2, 4, 3)).astype(np.float32)
  eps = 0.03
  start = np.asarray(linf_start(jnp.asarray(x), eps, jnp.asarray(signs)))
  expected = np.clip(x + eps * signs[:, None, :, :], 0, 1)
  np.testing.assert_allclose(start, expected, atol=1e-7)
  # Vertical stripes: constant along H, one sign per (image, column, channel).
  assert np.all(start[0] == start[0, :1])


def closed_form_rect(rows, cols):
  """The L2 pattern in closed form: entry (i,j) = sum_{k = max(|i - rows//2|, |j - cols//2|)}^{K-1} 1/(k+1)^2."""
  top, left = rows // 2, cols // 2
  limit = max(top, left) + 1
  rect = np.array([[sum(1 / (k + 1) ** 2 for k in range(max(abs(i - top), abs(j - left)), limit))
                    for j in range(cols)] for i in range(rows)]).reshape(rows, cols)
  return rect / np.sqrt(np.sum(rect ** 2)) if rect.size else rect


def closed_form_eta(side):
  eta = np.concatenate([closed_form_rect(side // 2, side),
                        -closed_form_rect(side - side // 2, side)])
  return eta / np.sqrt(np.sum(eta ** 2))


def test_eta_pattern_small_sizes_by_hand():
  top = np.array([0.25, 1.25, 0.25]) / np.sqrt(1.6875)
  bottom = np.array([[0.25, 0.25, 0.25], [0.25, 1.25, 0.25]]) / np.sqrt(1.875)
  np.testing.assert_allclose(eta_pattern(3), np.vstack([top, -bottom]) / np.sqrt(2), rtol=1e-6)
  np.testing.assert_allclose(eta_pattern(1), [[-1.0]])
  np.testing.assert_allclose(eta_pattern(2),
                             np.array([[0.25, 1.25], [-0.25, -1.25]]) / np.sqrt(3.25), rtol=1e-6)


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5, 6, 7, 11, 20, 29])
def test_eta_pattern_shape_norm_and_closed_form(side):
  eta = eta_pattern(side)
  assert eta.shape == (side, side) and eta.dtype == np.float32
  assert np.sum(eta ** 2) == pytest.approx(1.0, rel=1e-5)
  assert np.all(eta[:side // 2] > 0) and np.all(eta[side // 2:] < 0)
  if side % 2:   # the centre column is side // 2: mirror-symmetric only for odd sides
    np.testing.assert_allclose(eta, eta[:, ::-1], rtol=1e-6)
  np.testing.assert_allclose(eta, closed_form_eta(side), rtol=1e-5, atol=1e-7)


def test_l2_start_places_signed_tiles_and_has_norm_eps():
  rng = np.random.default_rng(1)
  x = np.full((2, 32, 32, 3), 0.5, np.float32)
  coins = rng.uniform(size=25) > 0.5
  signs = rng.choice([-1.0, 1.0], size=(25, 2, 3)).astype(np.float32)
  eps = 0.5
  delta = np.asarray(l2_start(jnp.asarray(x), eps, jnp.asarray(coins), jnp.asarray(signs))) - x
  np.testing.assert_allclose(np.sqrt(np.sum(delta.astype(np.float64) ** 2, axis=(1, 2, 3))), eps,
                             rtol=1e-5)
  assert np.all(delta[:, 0] == 0) and np.all(delta[:, 31] == 0)
  assert np.all(delta[:, :, 0] == 0) and np.all(delta[:, :, 31] == 0)
  eta = eta_pattern(6)
  scale = np.abs(delta[0, 1:7, 1:7, 0]).max() / np.abs(eta).max()
  _, corners = l2_tile_grid(32, 32)
  for tile, (top, left) in enumerate(corners):
    pattern = eta.T if coins[tile] else eta
    expected = scale * pattern[None, :, :, None] * signs[tile][:, None, None, :]
    np.testing.assert_allclose(delta[:, top:top + 6, left:left + 6], expected, atol=2e-6)


# --- trajectories with injected draws, re-derived in numpy ---------------------------------


def linear_model(num_pixels, num_classes, seed):
  """A linear classifier as a JAX logits_fn and as a float64 numpy margin/prediction."""
  weights = np.random.default_rng(seed).normal(size=(num_pixels, num_classes)).astype(np.float32)

  def logits_fn(v):
    return v.reshape(v.shape[0], -1) @ weights

  def numpy_margin_and_prediction(v, y):
    logits = v.reshape(v.shape[0], -1).astype(np.float64) @ weights.astype(np.float64)
    prediction = np.argmax(logits, axis=1)
    true = logits[np.arange(len(y)), y]
    logits[np.arange(len(y)), y] = -np.inf
    return true - logits.max(axis=1), prediction

  return logits_fn, numpy_margin_and_prediction


def image_l2(delta):
  return np.sqrt(np.sum(delta ** 2, axis=(1, 2, 3), keepdims=True))


def numpy_square(norm, x, y, eps, draws, n_queries, p_init, numpy_margin):
  """The reference loop (margin acceptance, L-inf and L2 updates), written out in float64
  numpy."""
  batch, height, width, channels = x.shape
  x = x.astype(np.float64)
  if norm == "linf":
    x_best = np.clip(x + eps * np.asarray(draws.stripe_signs)[:, None], 0, 1)
  else:
    tile_side, corners = l2_tile_grid(height, width)
    delta = np.zeros_like(x)
    for tile, (top, left) in enumerate(corners):
      pattern = closed_form_eta(tile_side)
      pattern = pattern.T if draws.tile_transpose[tile] else pattern
      delta[:, top:top + tile_side, left:left + tile_side] += (
          pattern[None, :, :, None] * np.asarray(draws.tile_signs[tile])[:, None, None, :])
    x_best = np.clip(x + delta / (image_l2(delta) + 1e-12) * eps, 0, 1)
  margin_best, _ = numpy_margin(x_best, y)
  loss_best = margin_best.copy()
  queries = np.ones(batch, int)
  accepted_any = rejected_any = False
  for i in range(n_queries):
    running = margin_best > 0
    if not running.any():
      break
    side = square_side(p_selection(i, p_init), height, width, channels, norm)
    top, left = int(draws.vh[i]), int(draws.vw[i])
    if norm == "linf":
      step = np.zeros((height, width, channels))
      step[top:top + side, left:left + side] = 2 * eps * np.asarray(draws.channel_signs[i])
      x_new = np.clip(np.minimum(np.maximum(x_best + step, x - eps), x + eps), 0, 1)
    else:
      top2, left2 = int(draws.vh2[i]), int(draws.vw2[i])
      delta = x_best - x
      window = (slice(None), slice(top, top + side), slice(left, left + side))
      window2 = (slice(None), slice(top2, top2 + side), slice(left2, left2 + side))
      union = np.zeros((1, height, width, 1))
      union[window] = 1
      union[window2] = 1
      window_norm = np.sqrt(np.sum(delta[window] ** 2, axis=(1, 2), keepdims=True))
      image_norm = image_l2(delta)
      union_norm = np.sqrt(np.sum((delta * union) ** 2, axis=(1, 2), keepdims=True))
      pattern = closed_form_eta(side)
      pattern = pattern.T if draws.transpose[i] else pattern
      new = pattern[None, :, :, None] * np.asarray(draws.signs[i])[:, None, None, :]
      new = new + delta[window] / (1e-12 + window_norm)
      new = new / (1e-12 + np.sqrt(np.sum(new ** 2, axis=(1, 2), keepdims=True))) * np.sqrt(
          np.maximum(eps ** 2 - image_norm ** 2, 0) / channels + union_norm ** 2)
      delta[window2] = 0
      delta[window] = new
      x_new = np.clip(x + delta / (image_l2(delta) + 1e-12) * eps, 0, 1)
    margin_new, _ = numpy_margin(x_new, y)
    improved = margin_new < loss_best
    loss_best = np.where(running & improved, margin_new, loss_best)
    accept = running & (improved | (margin_new <= 0))
    accepted_any |= bool(accept.any())
    rejected_any |= bool((running & ~accept).any())
    margin_best = np.where(accept, margin_new, margin_best)
    x_best = np.where(accept[:, None, None, None], x_new, x_best)
    queries += running
  fooled = numpy_margin(x_best, y)[1] != y
  return np.where(fooled[:, None, None, None], x_best, x), margin_best, queries, (accepted_any,
                                                                                   rejected_any)


def hand_draws(norm, rng, batch, height, width, channels, n_queries, side):
  offsets = lambda: rng.integers(0, height - side, size=n_queries).astype(np.int32)
  signs = lambda *shape: rng.choice([-1.0, 1.0], size=shape).astype(np.float32)
  if norm == "linf":
    return LinfSquareDraws(stripe_signs=signs(batch, width, channels), vh=offsets(), vw=offsets(),
                           channel_signs=signs(n_queries, channels))
  num_tiles = len(l2_tile_grid(height, width)[1])
  return L2SquareDraws(tile_transpose=rng.uniform(size=num_tiles) > 0.5,
                       tile_signs=signs(num_tiles, batch, channels), vh=offsets(), vw=offsets(),
                       vh2=offsets(), vw2=offsets(), transpose=rng.uniform(size=n_queries) > 0.5,
                       signs=signs(n_queries, batch, channels))


@pytest.mark.parametrize("norm,shape,eps,side", [
    ("linf", (3, 5, 5, 2), 0.05, 3),    # p_init 0.3: s = round(sqrt(7.5)) = 3
    ("l2", (3, 10, 10, 2), 0.3, 5),      # s = round(sqrt(30)) = 5, odd
])
def test_trajectory_with_injected_draws_matches_numpy(norm, shape, eps, side):
  n_queries, p_init = 6, 0.3
  assert square_side(p_init, *shape[1:], norm) == side
  rng = np.random.default_rng(3)
  batch, height, width, channels = shape
  logits_fn, numpy_margin = linear_model(height * width * channels, 3, seed=4)
  x = rng.uniform(0.2, 0.8, shape).astype(np.float32)
  y = np.argmax(np.asarray(logits_fn(x)), axis=1).astype(np.int32)
  draws = hand_draws(norm, rng, batch, height, width, channels, n_queries, side)
  result = square_attack(logits_fn, jnp.asarray(x), jnp.asarray(y), jax.random.key(0), eps=eps,
                         norm=norm, n_queries=n_queries, p_init=p_init, draws=draws)
  x_adv, margin, queries, (accepted_any, rejected_any) = numpy_square(
      norm, x, y, eps, draws, n_queries, p_init, numpy_margin)
  assert accepted_any and rejected_any   # the trajectory exercises both branches
  np.testing.assert_allclose(result.margin, margin, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(result.queries, queries)
  np.testing.assert_allclose(result.x_adv, x_adv, atol=1e-5)


# --- invariants -------------------------------------------------------------------------------


def mean_pixel_model(v, shift_scale, spread_scale):
  """Class 1 gains shift_scale * (mean pixel - 0.5) + spread_scale * mean |pixel - 0.5|
  against a constant 0.5 for class 0 (traced scales: one compilation for every setting)."""
  flat = v.reshape(v.shape[0], -1)
  class_1 = (shift_scale * (jnp.mean(flat, axis=1) - 0.5)
             + spread_scale * jnp.mean(jnp.abs(flat - 0.5), axis=1))
  return jnp.stack([jnp.full_like(class_1, 0.5), class_1], axis=1)


def test_early_exit_and_query_counts():
  x = jnp.full((4, 8, 8, 3), 0.5, jnp.float32)
  y = jnp.zeros((4,), jnp.int32)
  run = jax.jit(lambda shift, spread: square_attack(
      lambda v: mean_pixel_model(v, shift, spread), x, y, jax.random.key(1), eps=0.03,
      n_queries=1000))
  # Fooled once the mean pixel rises 0.005: every point stops when fooled and the loop
  # stops when all are, far below the 1 + 1000 queries of a full run.
  result = run(100.0, 0.0)
  assert not np.any(result.robust)
  assert np.all(result.margin <= 0)
  assert np.all(result.queries >= 1) and 2 <= np.max(result.queries) < 100
  # Fooled by the start itself (every |delta| = eps): one query, no iteration.
  fragile = run(0.0, 1e4)
  np.testing.assert_array_equal(fragile.queries, 1)
  assert not np.any(fragile.robust)
  # Never fooled: every query is spent and x comes back.
  unfoolable = run(0.0, 0.0)
  np.testing.assert_array_equal(unfoolable.queries, 1001)
  assert np.all(unfoolable.robust)
  np.testing.assert_array_equal(unfoolable.x_adv, x)


def small_model(num_pixels, num_classes, seed):
  weights = jnp.asarray(np.random.default_rng(seed).normal(size=(num_pixels, num_classes)),
                        jnp.float32)

  def logits_fn(v):
    flat = v.reshape(v.shape[0], -1)
    return jnp.tanh(4 * flat - 2) @ weights

  return logits_fn


def numpy_margin(logits, y):
  logits = np.array(logits, np.float64)
  true = logits[np.arange(len(y)), y]
  logits[np.arange(len(y)), y] = -np.inf
  return true - logits.max(axis=1)


@pytest.mark.parametrize("norm,shape,eps", [
    ("linf", (5, 6, 7, 3), 0.05),
    ("l2", (5, 8, 6, 2), 0.6),      # non-square: L2 start tiles cropped at the border
])
def test_invariants_on_random_problem(norm, shape, eps):
  """Ball and box, monotone margin (runs with fewer queries are prefixes), determinism,
  injected draws reproducing the keyed run, inactive and clean-misclassified rows."""
  rng = np.random.default_rng(len(norm))
  logits_fn = small_model(int(np.prod(shape[1:])), 4, seed=5)
  x = rng.uniform(0, 1, shape).astype(np.float32)
  x[:, :, 0] = 0.0   # a column on the lower face of the box
  x = jnp.asarray(x)
  clean_logits = logits_fn(x)
  y = jnp.argmax(clean_logits, axis=-1)
  y = y.at[1].set((y[1] + 1) % 4)               # row 1: misclassified on the clean input
  active = jnp.ones((shape[0],), bool).at[0].set(False)   # row 0: inactive
  run = jax.jit(lambda key, draws, n_queries: square_attack(
      logits_fn, x, y, key, eps=eps, norm=norm, n_queries=n_queries, active=active, draws=draws),
                static_argnums=2)
  short, long = run(jax.random.key(3), None, 4), run(jax.random.key(3), None, 30)

  for result in (short, long):
    delta = np.asarray(result.x_adv, np.float64) - np.asarray(x, np.float64)
    flat = delta.reshape(shape[0], -1)
    size = np.abs(flat).max(1) if norm == "linf" else np.linalg.norm(flat, axis=1)
    assert np.all(size <= eps * (1 + 1e-6) + 1e-7)
    assert np.all((np.asarray(result.x_adv) >= 0) & (np.asarray(result.x_adv) <= 1))
    prediction_ok = np.argmax(logits_fn(result.x_adv), -1) == np.asarray(y)
    np.testing.assert_array_equal(result.robust[1:], prediction_ok[1:])
    # Inactive and clean-misclassified rows: untouched, no queries, clean margins.
    np.testing.assert_array_equal(result.x_adv[:2], x[:2])
    np.testing.assert_array_equal(result.queries[:2], 0)
    np.testing.assert_array_equal(result.robust[:2], [True, False])
    np.testing.assert_allclose(result.margin[:2], numpy_margin(clean_logits, np.asarray(y))[:2],
                               rtol=1e-5)
  attacked = slice(2, None)
  assert np.all(long.margin[attacked] <= short.margin[attacked])
  assert np.all(long.queries[attacked] >= short.queries[attacked])
  assert np.all(short.queries[attacked] >= 1)
  assert np.any(long.margin[attacked] < short.margin[attacked])
  # A point whose margin reached <= 0 is no longer queried.
  stopped = np.asarray(short.margin) <= 0
  np.testing.assert_array_equal(np.asarray(long.queries)[stopped],
                                np.asarray(short.queries)[stopped])

  again = run(jax.random.key(3), None, 30)
  for field in ("x_adv", "robust", "margin", "queries"):
    np.testing.assert_array_equal(getattr(again, field), getattr(long, field))
  # Pre-sampled draws reproduce the keyed run (up to float reassociation between programs).
  injected = run(jax.random.key(99), sample_square_draws(jax.random.key(3), norm, shape, 30), 30)
  np.testing.assert_array_equal(injected.queries, long.queries)
  np.testing.assert_allclose(injected.margin, long.margin, rtol=1e-4, atol=1e-5)


def test_rejects_bad_arguments():
  logits_fn = small_model(16, 3, seed=0)
  x = jnp.zeros((2, 4, 4, 1))
  y = jnp.zeros((2,), jnp.int32)
  with pytest.raises(ValueError, match="norm='l1'"):
    square_attack(logits_fn, x, y, jax.random.key(0), eps=0.1, norm="l1")
  with pytest.raises(ValueError, match="at least 5 rows"):
    square_attack(logits_fn, x, y, jax.random.key(0), eps=0.1, norm="l2")
  three_iterations = LinfSquareDraws(stripe_signs=np.ones((2, 4, 1)), vh=np.zeros(3, np.int32),
                                     vw=np.zeros(3, np.int32), channel_signs=np.ones((3, 1)))
  with pytest.raises(ValueError, match=r"draws.vh must have shape \(10,\)"):
    square_attack(logits_fn, x, y, jax.random.key(0), eps=0.1, n_queries=10, draws=three_iterations)
  with pytest.raises(ValueError, match="must be L2SquareDraws"):
    square_attack(logits_fn, jnp.zeros((2, 5, 5, 1)), y, jax.random.key(0), eps=0.1, norm="l2",
                  n_queries=3, draws=three_iterations)
