"""FAB's projection of a point onto a hyperplane intersected with the image box.

Given rows t in [0,1]^d, normals w and offsets b (the linearised decision boundary
<w, v> = b of FAB, Croce & Hein 2020, Eq. 5-7), each function returns the perturbation
delta (N, d) of minimal L-inf / L2 norm such that <w, t + delta> = b and t + delta is in
[0,1]^d. When the box makes the hyperplane unreachable, delta is the box move that gets
closest to it.

Inputs are flat rows: `points` (N, d) (an NHWC image reshaped to (N, H*W*C)), `w` (N, d)
and `b` (N,). Both solve the official problems (fra31/auto-attack `fab_projections.py`,
docs/evaluation.md#fab-t) with fixed shapes and keep every sentinel of the reference (exact
w != 0 test in L-inf; |w| < 1e-8, |w| > 1e-8 and the 1e12 breakpoint clamps in L2; the
`>= 0` sign test; strict comparisons).
  L2: the official algorithm: a sort, cumulative sums, and a binary search of exactly
    ceil(log2 d) floor-halving steps (sorting is stable here and not in PyTorch, which
    changes only the summation order among tied keys).
  L-inf (AutoAttack's standard FAB-T): the same segment of the same piecewise-linear
    function, found by an exact bisection on the breakpoint value instead of a sort (see
    `project_linf_hyperplane`: XLA:CPU's sort of CIFAR-sized rows dominated FAB-T's time).
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


def _smallest_value_where_above(curve, target: jax.Array, upper: jax.Array) -> jax.Array:
  """Per row, the smallest float32 v in (0, upper] with curve(v) > target, (N,).

  `curve(v)` maps (N,) values to (N,) and must be nondecreasing in v with curve(0) <= target
  and curve(upper) > target (rows where this fails get a meaningless answer; callers mask
  them). Non-negative float32 numbers are ordered as their bit patterns, so the bisection
  runs on the integers of those patterns and ends on the exact float, in at most 31 halvings
  (upper <= 1e12 < 2**31 as bits); a float sum of terms that are each nondecreasing in v is
  itself nondecreasing, so the float curve is monotone and the search exact.
  """
  upper_bits = jax.lax.bitcast_convert_type(upper.astype(jnp.float32), jnp.int32)
  lower_bits = jnp.zeros_like(upper_bits)

  def halve(_, bounds):
    lower_bits, upper_bits = bounds
    middle = lower_bits + (upper_bits - lower_bits) // 2
    above = curve(jax.lax.bitcast_convert_type(middle, jnp.float32)) > target
    return jnp.where(above, lower_bits, middle), jnp.where(above, middle, upper_bits)

  _, upper_bits = jax.lax.fori_loop(0, 31, halve, (lower_bits, upper_bits))
  return jax.lax.bitcast_convert_type(upper_bits, jnp.float32)


def project_linf_hyperplane(points: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
  """Minimal-L-inf delta (N, d) with <w, points + delta> = b inside [0,1]^d.

  After flipping (w, b) so that c = <w, t> - b >= 0, every coordinate moves by
  min(lambda, p_i) towards the box face that lowers <w, .> (p_i = t_i if w_i >= 0 else
  1 - t_i), so <w, .> drops by g(lambda) = sum_i |w_i| min(lambda, p_i), a nondecreasing
  piecewise-linear function with breakpoints p_i, and lambda solves g(lambda) = c:
    - unreachable (g(max p) = sum_i |w_i| p_i <= c): delta = the full move to the box corner;
    - otherwise the coordinates with p_i >= v, v the smallest value with g(v) > c, stay
      unsaturated and lambda = (c - sum_{p_i < v} |w_i| p_i) / sum_{p_i >= v} |w_i|
      (every coordinate unsaturated is the reference's "below every breakpoint" case).
  Coordinates with w_i == 0 (exact test, as in the reference) never move.

  DECISION: the official code (fra31/auto-attack `projection_linf`) finds the segment of
  g by sorting the breakpoints and bisecting on their sorted index; this finds the same
  segment by an exact bisection on the float value v (`_smallest_value_where_above`), which
  needs no sort (XLA:CPU's sort of (2B, 3072) rows dominated FAB-T's time). The answer is
  the same lambda up to float rounding in the sums (their order differs).
  """
  t = points
  signed_gap = jnp.sum(w * t, axis=1) - b
  sign = jnp.where(signed_gap >= 0, 1.0, -1.0).astype(w.dtype)
  w = w * sign[:, None]
  c = signed_gap * sign                           # <w, t> - b >= 0 after the flip

  toward_one = (w < 0).astype(w.dtype)           # the face that lowers <w,.> is 1
  nonzero = (w != 0).astype(w.dtype)
  full_move = (toward_one - t) * nonzero
  room = toward_one - t * (2 * toward_one - 1)    # p_i
  abs_w = jnp.abs(w)
  saturated_drop = abs_w * room                   # |w_i| p_i, the drop of a full move

  def drop(value):
    return jnp.sum(abs_w * jnp.minimum(value[:, None], room), axis=1)

  reachable = jnp.sum(saturated_drop, axis=1) > c
  largest_room = jnp.max(room, axis=1)
  threshold = _smallest_value_where_above(drop, c, largest_room)
  unsaturated = room >= threshold[:, None]
  unsaturated_weight = jnp.sum(jnp.where(unsaturated, abs_w, 0.0), axis=1)
  saturated = jnp.sum(jnp.where(unsaturated, 0.0, saturated_drop), axis=1)
  step = jnp.maximum((c - saturated) / jnp.where(unsaturated_weight > 0, unsaturated_weight, 1.0),
                     0.0)[:, None]
  delta_step = (jnp.minimum(step, full_move) * toward_one
                + jnp.maximum(-step, full_move) * (1 - toward_one))
  delta = jnp.where(reachable[:, None], delta_step, full_move)
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
