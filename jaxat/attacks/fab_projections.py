"""FAB's projection of a point onto a hyperplane intersected with the image box.

Given rows t in [0,1]^d, normals w and offsets b (the linearised decision boundary
<w, v> = b of FAB, Croce & Hein 2020, Eq. 5-7), each function returns the perturbation
delta (N, d) of minimal L-inf / L2 norm such that <w, t + delta> = b and t + delta is in
[0,1]^d. When the box makes the hyperplane unreachable, delta is the box move that gets
closest to it.

Inputs are flat rows: `points` (N, d) (an NHWC image reshaped to (N, H*W*C)), `w` (N, d)
and `b` (N,). The algorithms are the official ones (fra31/auto-attack `fab_projections.py`,
autoattack.md §4.3-4.4), vectorised with fixed shapes: a sort, cumulative sums, and a
binary search of exactly ceil(log2 d) floor-halving steps, keeping every sentinel of the
reference (exact w != 0 test in L-inf; |w| < 1e-8, |w| > 1e-8 and the 1e12 breakpoint
clamps in L2; the `>= 0` sign test; strict comparisons). Sorting is stable here and not
in PyTorch, which changes only the summation order among tied keys.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# The reference clamps L2 breakpoints to +-1e12 and uses 1e12 as "never saturates".
_BIG = 1e12
_TINY_W = 1e-8


def _binary_search(values_at, target, num_coords: int) -> jax.Array:
  """Index lb in [0, d-1] of the reference's fixed-length bisection.

  `values_at(k)` gives, per row, the curve value at integer index k (N,); the search keeps
  lb where `target - value > 0`. Indices are carried as floats, as in the reference.
  """
  lower = jnp.zeros(target.shape, jnp.float32)
  upper = jnp.full(target.shape, num_coords - 1, jnp.float32)
  num_steps = math.ceil(math.log2(num_coords)) if num_coords > 1 else 0

  def halve(_, bounds):
    lower, upper = bounds
    middle = jnp.floor((lower + upper) / 2)
    above = target - values_at(middle.astype(jnp.int32)) > 0
    return jnp.where(above, middle, lower), jnp.where(above, upper, middle)

  lower, _ = jax.lax.fori_loop(0, num_steps, halve, (lower, upper))
  return lower.astype(jnp.int32)


def _at(rows: jax.Array, index: jax.Array) -> jax.Array:
  """rows[n, index[n]] for (N, d) rows and (N,) integer indices."""
  return jnp.take_along_axis(rows, index[:, None], axis=1)[:, 0]


def project_linf_hyperplane(points: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
  """Minimal-L-inf delta (N, d) with <w, points + delta> = b inside [0,1]^d.

  After flipping (w, b) so that c = <w, t> - b >= 0, every coordinate moves by
  min(lambda, p_i) towards the box face that lowers <w, .> (p_i = t_i if w_i >= 0 else
  1 - t_i); the change C(lambda) = -sum_i |w_i| min(lambda, p_i) is piecewise linear, so
  lambda is found on the sorted breakpoints p:
    - below the smallest breakpoint: every coordinate moves by lambda;
    - between breakpoints (bisection): coordinates saturate at their face or move lambda;
    - unreachable (b - <w,t> <= <w, d>): delta = d, the full move to the box corner.
  Coordinates with w_i == 0 (exact test) never move.
  """
  num_coords = points.shape[1]
  t = points
  sign = jnp.where(jnp.sum(w * t, axis=1) - b >= 0, 1.0, -1.0).astype(w.dtype)
  w = w * sign[:, None]
  b = b * sign

  toward_one = (w < 0).astype(w.dtype)           # a_i: the face that lowers <w,.> is 1
  nonzero = (w != 0).astype(w.dtype)
  full_move = (toward_one - t) * nonzero          # d_i
  room = toward_one - t * (2 * toward_one - 1)    # p_i
  ascending = jnp.argsort(room, axis=1)

  required = b - jnp.sum(w * t, axis=1)           # beta_0 <= 0
  reachable = jnp.sum(w * full_move, axis=1)      # b_0 <= 0
  descending = jnp.flip(ascending, axis=1)
  w_sorted = jnp.take_along_axis(w, descending, axis=1)
  weighted_room = -w_sorted * jnp.take_along_axis(full_move, descending, axis=1)
  abs_w_cumsum = jnp.cumsum(jnp.abs(w_sorted), axis=1)                   # S_k
  room_cumsum = jnp.cumsum(weighted_room, axis=1) + reachable[:, None]    # SB_k

  smallest_room = _at(room, ascending[:, 0])
  change_at_smallest = room_cumsum[:, -1] - abs_w_cumsum[:, -1] * smallest_room
  below_all = required - change_at_smallest > 0
  between = (required - reachable > 0) & ~below_all

  def change_at(k):
    # C(p_(k)) with p sorted descending; the reference reads p through the ascending order.
    room_at_k = _at(room, _at(ascending, num_coords - 1 - k))
    return _at(room_cumsum, k) - _at(abs_w_cumsum, k) * room_at_k

  segment = _binary_search(change_at, required, num_coords)

  lambda_all = jnp.maximum((required - room_cumsum[:, -1]) / (-abs_w_cumsum[:, -1]), 0.0)
  delta_all = (2 * toward_one - 1) * lambda_all[:, None]
  lambda_seg = jnp.maximum(
      (required - _at(room_cumsum, segment)) / (-_at(abs_w_cumsum, segment)), 0.0)[:, None]
  delta_seg = (jnp.minimum(lambda_seg, full_move) * toward_one
               + jnp.maximum(-lambda_seg, full_move) * (1 - toward_one))

  delta = jnp.where(below_all[:, None], delta_all,
                    jnp.where(between[:, None], delta_seg, full_move))
  return delta * nonzero


def project_l2_hyperplane(points: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
  """Minimal-L2 delta (N, d) with <w, points + delta> = b inside [0,1]^d.

  After flipping so that c = <w, t> - b >= 0, the KKT solution is
  delta_i(alpha) = clip(-alpha w_i, -t_i, 1 - t_i), alpha >= 0. Coordinate i saturates at
  the breakpoint r_i = max(t_i / w_i, (t_i - 1) / w_i); the cumulative sums over sorted r
  give <w, delta(r_(j))>, and a bisection finds the segment holding -c:
    - no saturation (c4): alpha = c / ||w||^2, delta = -alpha w;
    - unreachable (c3): delta = the fully saturated move;
    - otherwise: alpha on the found segment; saturated coordinates (alpha > r_i) take
      their box move, the others -alpha w_i.
  The reference's quirk of zeroing the 1e12 sentinels in the sorted breakpoints is kept.
  Coordinates with |w_i| < 1e-8 never move.
  """
  num_coords = points.shape[1]
  t = points
  c = jnp.sum(w * t, axis=1) - b
  sign = jnp.where(c >= 0, 1.0, -1.0).astype(w.dtype)
  w = w * sign[:, None]
  c = c * sign

  big = jnp.asarray(_BIG, w.dtype)
  # The reference uses two strict tests: |w| < 1e-8 never saturates, |w| > 1e-8 may move
  # (|w| == 1e-8 exactly keeps its breakpoint but does not move).
  moves = (jnp.abs(w) > _TINY_W).astype(w.dtype)
  # Division by zero gives inf/nan here; the |w| < 1e-8 mask overrides those entries.
  breakpoints = jnp.clip(jnp.maximum(t / w, (t - 1) / w), -big, big)
  breakpoints = jnp.where(jnp.abs(w) < _TINY_W, big, breakpoints)
  breakpoints = jnp.where(breakpoints == -big, big, breakpoints)
  order = jnp.argsort(breakpoints, axis=1)
  sorted_bp = jnp.take_along_axis(breakpoints, order, axis=1)
  next_bp = jnp.pad(sorted_bp[:, 1:], ((0, 0), (0, 1)))
  sorted_bp = jnp.where(sorted_bp == big, 0.0, sorted_bp)
  next_bp = jnp.where(next_bp == big, 0.0, next_bp)

  w_sq_sorted = jnp.take_along_axis(w ** 2, order, axis=1)
  w_sq_total = jnp.sum(w_sq_sorted, axis=1, keepdims=True)
  unsaturated_mass = w_sq_total - jnp.cumsum(w_sq_sorted, axis=1)    # ws_j
  saturated_move = -(breakpoints * w) * moves                          # d_i
  # reached_j = <w, delta(rs_j)>, (N, d+1).
  start = -w_sq_total * sorted_bp[:, 0:1]
  steps = jnp.cumsum((-next_bp + sorted_bp) * unsaturated_mass, axis=1)
  reached = jnp.concatenate([start, steps - w_sq_total * sorted_bp[:, 0:1]], axis=1)

  unsaturated = reached[:, 0] + c < 0                                  # c4
  unreachable = jnp.sum(saturated_move * w, axis=1) + c > 0            # c3
  between = ~(unsaturated | unreachable)

  segment = _binary_search(lambda k: -_at(reached, k), c, num_coords)

  alpha_free = c / w_sq_total[:, 0]
  delta_free = -alpha_free[:, None] * w
  mass = _at(unsaturated_mass, segment)
  alpha_seg = (_at(reached, segment) + c) / mass + _at(sorted_bp, segment)
  alpha_seg = jnp.where(mass == 0, 0.0, alpha_seg)[:, None]
  saturates = (alpha_seg > breakpoints).astype(w.dtype)
  delta_seg = saturated_move * saturates - alpha_seg * w * (1 - saturates)

  delta = jnp.where(unsaturated[:, None], delta_free,
                    jnp.where(between[:, None], delta_seg, saturated_move))
  return delta * moves


def project_hyperplane(norm: str, points: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
  """Dispatches on norm: 'linf' or 'l2'."""
  if norm == "linf":
    return project_linf_hyperplane(points, w, b)
  if norm == "l2":
    return project_l2_hyperplane(points, w, b)
  raise ValueError(f"unknown norm {norm!r}; valid choices: linf, l2")
