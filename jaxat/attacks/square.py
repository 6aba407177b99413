"""Square attack (L-inf and L2), score-based, as run by AutoAttack 'standard'.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search" (ECCV 2020), Alg. 1-3, in the form of the official
fra31/auto-attack `square.py` (docs/evaluation.md#square). Random search on the margin
m = z_y - max_{j != y} z_j, one query per active point per iteration:

  L-inf: start x + eps * (vertical stripes of signs, one per image/column/channel); each
         iteration moves one s x s window by 2 eps * sigma_c (one sign per channel),
         projects onto the eps-ball, clips to [0,1].
  L2:    start from a grid of eta(s0) tiles, s0 = H//5 (5x5 tiles of 6x6 on CIFAR), with
         per-(image, channel) signs, scaled to ||delta|| = eps; each iteration
         redistributes the mass of two windows into the pattern eta(s) (Alg. 3) and
         rescales the whole delta to ||delta|| = eps.

A candidate replaces the current point when its margin is strictly lower, or when it is
misclassified (m <= 0); a point stops being attacked once its margin is <= 0, and the
loop stops when no active point is left (`lax.while_loop`). The window side s follows the
p schedule (halving p at iterations 10/50/200/500/1000/2000/4000/6000/8000). The window
position, the L-inf channel signs and the L2 transpose coin are drawn once per iteration
and shared by the whole batch, as in the reference; the L2 signs are per image.

Layout: x is NHWC, so the reference's NCHW stripes [B, C, 1, W] become [B, 1, W, C] and the
windows lie on axes 1-2. Random draws come from explicit keys (fold_in per iteration), not
PyTorch's stream; `draws` injects them (LinfSquareDraws / L2SquareDraws, see
`sample_square_draws`). Call inside `jax.jit`; keyword arguments other than eps/active/draws
are static.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxat.attacks import losses
from jaxat.attacks.budget import per_example
from jaxat.attacks.inputs import validate_batch
from jaxat.attacks.projections import NORMS, l2_norm

LogitsFn = Callable[[jax.Array], jax.Array]

# Iterations after which p halves (the reference's p_selection breakpoints).
P_SCHEDULE_BREAKPOINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


class SquareResult(NamedTuple):
  """Outcome of the Square attack on a batch.

  x_adv: (B,H,W,C) in [0,1]: the attack's point where it is misclassified (argmax != y on a
    fresh forward pass), else x itself (also for rows not attacked).
  robust: (B,) bool. Active rows: correct on the clean input and not misclassified at the
    attack's final point (clean-misclassified active rows are False and never attacked).
    Inactive rows: correct on the clean input.
  margin: (B,) float, z_y - max_{j != y} z_j at the attack's final point for attacked rows
    (the best margin, <= 0 once fooled); the clean margin for rows not attacked.
  queries: (B,) int32, forward passes spent on the row: 1 (start) + iterations while its
    margin was > 0; 0 for rows not attacked.
  """

  x_adv: jax.Array
  robust: jax.Array
  margin: jax.Array
  queries: jax.Array


class LinfSquareDraws(NamedTuple):
  """Random draws of an L-inf run; T >= n_queries iterations.

  stripe_signs: (B, W, C) in {-1, 0, +1}: the start x + eps * sign, constant along H.
  vh, vw: (T,) int32 window offsets (rows, columns), clipped to [0, H - s] / [0, W - s].
  channel_signs: (T, C) in {-1, 0, +1}, shared by the batch.
  """

  stripe_signs: jax.Array
  vh: jax.Array
  vw: jax.Array
  channel_signs: jax.Array


class L2SquareDraws(NamedTuple):
  """Random draws of an L2 run; T >= n_queries iterations, n_tiles of the start grid.

  tile_transpose: (n_tiles,) bool, transpose eta(s0) on that tile (row-major tile order).
  tile_signs: (n_tiles, B, C) in {-1, 0, +1}.
  vh, vw: (T,) int32 offsets of window 1 (gets the new pattern); vh2, vw2: of window 2
    (cleared), clipped to [0, H - s] / [0, W - s].
  transpose: (T,) bool, transpose eta(s), shared by the batch.
  signs: (T, B, C) in {-1, 0, +1}, per image and channel.
  """

  tile_transpose: jax.Array
  tile_signs: jax.Array
  vh: jax.Array
  vw: jax.Array
  vh2: jax.Array
  vw2: jax.Array
  transpose: jax.Array
  signs: jax.Array


# --- schedule and geometry (static, Python level) ---------------------------------------


def schedule_iteration(iteration: int, n_queries: int, rescale_schedule: bool) -> int:
  """The iteration index the p schedule reads: int(i / n_queries * 10000) when rescaled."""
  if rescale_schedule:
    return int(iteration / n_queries * 10000)
  return iteration


def schedule_stage(iteration: int, n_queries: int = 5000, rescale_schedule: bool = False) -> int:
  """Number of halvings of p at loop index `iteration` (0 .. 9)."""
  it = schedule_iteration(iteration, n_queries, rescale_schedule)
  return sum(it > breakpoint for breakpoint in P_SCHEDULE_BREAKPOINTS)


def p_selection(iteration: int, p_init: float = 0.8, n_queries: int = 5000,
                rescale_schedule: bool = False) -> float:
  """Fraction of pixels the window covers at loop index `iteration` (0-based).

  p_init for it <= 10, /2 for 10 < it <= 50, ..., /512 for it > 8000. AutoAttack runs
  Square with resc_schedule=False (the raw index); the standalone reference default
  rescales the index to 10000 queries.
  """
  return p_init / 2 ** schedule_stage(iteration, n_queries, rescale_schedule)


def square_side(p: float, height: int, width: int, channels: int, norm: str) -> int:
  """Window side s for fraction p: round(sqrt(p * n_features / c)), Python round (half to
  even); L-inf clamps to [1, min(H, W)], L2 to >= 3, odd, then <= min(H, W)."""
  side = int(round(math.sqrt(p * (channels * height * width) / channels)))
  if norm == "linf":
    return min(max(side, 1), min(height, width))
  side = max(side, 3)
  if side % 2 == 0:
    side += 1
  return min(side, min(height, width))


def _eta_rectangle(rows: int, cols: int) -> np.ndarray:
  """Concentric rectangles weighted 1/(k+1)^2 around (rows//2, cols//2), unit norm."""
  pattern = np.zeros((rows, cols), np.float32)
  top, left = rows // 2, cols // 2
  for k in range(max(rows // 2 + 1, cols // 2 + 1)):
    pattern[max(top, 0):min(top + 2 * k + 1, rows),
            max(left, 0):min(left + 2 * k + 1, cols)] += np.float32(1.0) / np.float32((k + 1) ** 2)
    top -= 1
    left -= 1
  if pattern.size:
    pattern /= np.sqrt(np.sum(pattern ** 2))
  return pattern


def eta_pattern(side: int) -> np.ndarray:
  """The L2 window pattern eta(s), (s, s) float32, unit Frobenius norm (Alg. 3).

  The top s//2 rows are a positive concentric-rectangle bump, the bottom s - s//2 rows a
  negative one; the whole is normalised. The transpose coin is applied by the caller.
  """
  pattern = np.zeros((side, side), np.float32)
  pattern[:side // 2] = _eta_rectangle(side // 2, side)
  pattern[side // 2:] = -_eta_rectangle(side - side // 2, side)
  return pattern / np.sqrt(np.sum(pattern ** 2))


def l2_tile_grid(height: int, width: int) -> tuple[int, list[tuple[int, int]]]:
  """Side s0 = H//5 and top-left corners (row-major) of the L2 start tiles.

  The offset (H - 5 s0)//2 is computed from H and used on both axes, as in the reference
  (issue #95). Tiles reaching past the image are cropped; the reference raises there
  (e.g. H = 24) except for s0 = 1, where its slicing crops too.
  """
  side = height // 5
  offset = (height - side * 5) // 2
  corners = [(offset + i * side, offset + j * side)
             for i in range(height // side) for j in range(width // side)]
  return side, corners


class _Plan(NamedTuple):
  """Static per-run geometry: stage of every iteration, window side of every stage."""
  stage_of_iteration: np.ndarray   # (max(n_queries, 1),) int32
  side_of_stage: np.ndarray        # (10,) int32
  max_side: int


def _plan(norm: str, image_shape, n_queries: int, p_init: float, rescale_schedule: bool) -> _Plan:
  height, width, channels = image_shape
  # One entry even for n_queries = 0, so that the (never executed) loop body can index it.
  stages = np.array([schedule_stage(i, max(n_queries, 1), rescale_schedule)
                     for i in range(max(n_queries, 1))], np.int32)
  sides = np.array([square_side(p_init / 2 ** k, height, width, channels, norm)
                    for k in range(len(P_SCHEDULE_BREAKPOINTS) + 1)], np.int32)
  return _Plan(stages, sides, int(sides.max()))


# --- random draws -------------------------------------------------------------------------


# Each start and each iteration draws all its numbers from one uniform vector: one
# threefry call instead of one per quantity keeps the compiled loop small.


def _sign(uniform: jax.Array) -> jax.Array:
  """sign(2U - 1): the reference's random_choice (0 with probability ~2^-24)."""
  return jnp.sign(2 * uniform - 1)


def _offset(uniform: jax.Array, room: jax.Array) -> jax.Array:
  """floor(room * U) in {0 .. room-1} (0 when room = 0): the last offset is never drawn,
  as in the reference; the clamp only guards float rounding of U close to 1."""
  offset = jnp.floor(room * uniform).astype(jnp.int32)
  return jnp.minimum(offset, jnp.maximum(room - 1, 0))


def _start_draws(norm: str, key: jax.Array, batch: int, image_shape):
  height, width, channels = image_shape
  if norm == "linf":
    return dict(stripe_signs=_sign(jax.random.uniform(key, (batch, width, channels))))
  num_tiles = len(l2_tile_grid(height, width)[1])
  uniform = jax.random.uniform(key, (num_tiles, 1 + batch * channels))
  return dict(tile_transpose=uniform[:, 0] > 0.5,
              tile_signs=_sign(uniform[:, 1:]).reshape(num_tiles, batch, channels))


def _iteration_draws(norm: str, key: jax.Array, side: jax.Array, batch: int, image_shape):
  height, width, channels = image_shape
  if norm == "linf":
    uniform = jax.random.uniform(key, (2 + channels,))
    return dict(vh=_offset(uniform[0], height - side), vw=_offset(uniform[1], width - side),
                channel_signs=_sign(uniform[2:]))
  uniform = jax.random.uniform(key, (5 + batch * channels,))
  return dict(vh=_offset(uniform[0], height - side), vw=_offset(uniform[1], width - side),
              vh2=_offset(uniform[2], height - side), vw2=_offset(uniform[3], width - side),
              transpose=uniform[4] > 0.5, signs=_sign(uniform[5:]).reshape(batch, channels))


def _start_key(key):
  return jax.random.fold_in(key, 0)


def _iterations_key(key):
  """Iteration i draws from fold_in(_iterations_key(key), i)."""
  return jax.random.fold_in(key, 1)


def sample_square_draws(key: jax.Array, norm: str, x_shape, n_queries: int, p_init: float = 0.8,
                        rescale_schedule: bool = False):
  """The draws `square_attack(..., key)` makes, pre-sampled for inspection or injection.

  Running the attack with `draws=sample_square_draws(key, ...)` gives the same result as
  running it with `key`. Returns LinfSquareDraws or L2SquareDraws with T = n_queries.
  """
  if norm not in NORMS:
    raise ValueError(f"norm={norm!r} is invalid; valid choices: {NORMS}")
  batch, image_shape = x_shape[0], tuple(x_shape[1:])
  plan = _plan(norm, image_shape, n_queries, p_init, rescale_schedule)
  start = _start_draws(norm, _start_key(key), batch, image_shape)
  sides = jnp.asarray(plan.side_of_stage)[jnp.asarray(plan.stage_of_iteration)]
  iterations_key = _iterations_key(key)
  per_iteration = jax.vmap(lambda i, side: _iteration_draws(
      norm, jax.random.fold_in(iterations_key, i), side, batch, image_shape))(
          jnp.arange(n_queries), sides)
  draws_type = LinfSquareDraws if norm == "linf" else L2SquareDraws
  return draws_type(**start, **per_iteration)


# --- windows --------------------------------------------------------------------------------


def _window_mask(height: int, width: int, top, left, side) -> jax.Array:
  """(H, W) bool, True on rows [top, top+side) and columns [left, left+side)."""
  rows = jnp.arange(height)[:, None] - top
  cols = jnp.arange(width)[None, :] - left
  return (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)


def _placed_pattern(patterns: jax.Array, height: int, width: int, top, left) -> jax.Array:
  """(H, W) image holding the (S, S) zero-padded `patterns` with its corner at (top, left)."""
  max_side = patterns.shape[0]
  rows = jnp.arange(height)[:, None] - top
  cols = jnp.arange(width)[None, :] - left
  inside = (rows >= 0) & (rows < max_side) & (cols >= 0) & (cols < max_side)
  values = patterns[jnp.clip(rows, 0, max_side - 1), jnp.clip(cols, 0, max_side - 1)]
  return jnp.where(inside, values, 0.0)


def _padded_eta_table(plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
  """eta(s) of every stage and its transpose, zero-padded to (10, S, S)."""
  table = np.zeros((len(plan.side_of_stage), plan.max_side, plan.max_side), np.float32)
  for stage, side in enumerate(plan.side_of_stage):
    table[stage, :side, :side] = eta_pattern(int(side))
  return table, np.transpose(table, (0, 2, 1))


# --- starts ---------------------------------------------------------------------------------


def linf_start(x: jax.Array, eps, stripe_signs: jax.Array) -> jax.Array:
  """clip(x + eps * S, 0, 1) with S (B, W, C) broadcast along the rows: vertical stripes."""
  signs = stripe_signs[:, None, :, :]
  return jnp.clip(x + per_example(eps, x) * signs, 0.0, 1.0)


def l2_start(x: jax.Array, eps, tile_transpose: jax.Array, tile_signs: jax.Array) -> jax.Array:
  """clip(x + eps * delta/||delta||_2, 0, 1), delta = the grid of signed eta(s0) tiles."""
  _, height, width, _ = x.shape
  side, corners = l2_tile_grid(height, width)
  # Static maps pixel -> (tile, row and column inside the tile); tiles never overlap.
  tile_of_pixel = np.full((height, width), -1, np.int32)
  local_row = np.zeros((height, width), np.int32)
  local_col = np.zeros((height, width), np.int32)
  for tile, (top, left) in enumerate(corners):
    rows = slice(top, min(top + side, height))
    cols = slice(left, min(left + side, width))
    tile_of_pixel[rows, cols] = tile
    local_row[rows, cols] = np.arange(rows.stop - rows.start)[:, None]
    local_col[rows, cols] = np.arange(cols.stop - cols.start)[None, :]
  pattern = eta_pattern(side)
  tile_patterns = jnp.where(tile_transpose[:, None, None], pattern.T, pattern)   # (n, s0, s0)
  in_tile = tile_of_pixel >= 0
  tile_index = np.maximum(tile_of_pixel, 0)
  values = jnp.where(in_tile, tile_patterns[tile_index, local_row, local_col], 0.0)   # (H, W)
  signs = jnp.transpose(tile_signs[tile_index], (2, 0, 1, 3))                        # (B,H,W,C)
  delta = values[None, :, :, None] * signs
  return jnp.clip(x + delta / (l2_norm(delta) + 1e-12) * per_example(eps, x), 0.0, 1.0)


# --- candidates -----------------------------------------------------------------------------


def linf_candidate(x: jax.Array, x_best: jax.Array, eps, window: jax.Array,
                   channel_signs: jax.Array) -> jax.Array:
  """x_best + 2 eps sigma_c on the (H, W) window, projected onto the eps-ball, clipped."""
  eps = per_example(eps, x)
  step = jnp.where(window[None, :, :, None], 2.0 * eps * channel_signs, 0.0)
  return jnp.clip(jnp.minimum(jnp.maximum(x_best + step, x - eps), x + eps), 0.0, 1.0)


def l2_candidate(x: jax.Array, x_best: jax.Array, eps, window: jax.Array, window2: jax.Array,
                 pattern: jax.Array, signs: jax.Array) -> jax.Array:
  """Alg. 3: window 1 gets eta(s) sigma plus its old (normalised) content, rescaled to
  hold the mass of windows 1 and 2 plus the unused budget; window 2 is cleared (window 1
  wins on the overlap); the whole delta is rescaled to eps and clipped.

  window, window2: (H, W) bool; pattern: (H, W) eta(s) placed on window 1; signs: (B, C).
  """
  channels = x.shape[-1]
  eps = per_example(eps, x)
  window = window[None, :, :, None]
  window2 = window2[None, :, :, None]
  delta = x_best - x
  window_norm = jnp.sqrt(jnp.sum(jnp.where(window, delta, 0.0) ** 2, axis=(1, 2), keepdims=True))
  image_norm = l2_norm(delta)
  union_norm = jnp.sqrt(jnp.sum(jnp.where(window | window2, delta, 0.0) ** 2, axis=(1, 2),
                                keepdims=True))
  new = pattern[None, :, :, None] * signs[:, None, None, :]
  new = new + jnp.where(window, delta, 0.0) / (1e-12 + window_norm)
  new_norm = jnp.sqrt(jnp.sum(new ** 2, axis=(1, 2), keepdims=True))
  new = new / (1e-12 + new_norm) * jnp.sqrt(
      jnp.maximum(eps ** 2 - image_norm ** 2, 0.0) / channels + union_norm ** 2)
  delta = jnp.where(window, new, jnp.where(window2, 0.0, delta))
  return jnp.clip(x + delta / (l2_norm(delta) + 1e-12) * eps, 0.0, 1.0)


# --- the attack -----------------------------------------------------------------------------


def _validate(x, y, *, eps, norm, n_queries, p_init, active, draws,
              rescale_schedule) -> None:
  validate_batch(x, y, eps=eps, norm=norm, norms=NORMS)
  if not isinstance(n_queries, int) or n_queries < 0:
    raise ValueError(f"n_queries={n_queries!r} is invalid; valid choices: integers >= 0")
  if not 0.0 < p_init <= 1.0:
    raise ValueError(f"p_init={p_init} is invalid; valid choices: (0, 1]")
  if not isinstance(rescale_schedule, bool):
    raise ValueError(f"rescale_schedule={rescale_schedule!r} is invalid; "
                     "valid choices: True, False")
  if norm == "l2" and x.shape[1] < 5:
    raise ValueError(f"L2 Square needs images at least 5 rows high (start tiles of side H//5), "
                     f"got H={x.shape[1]}")
  if active is not None and active.shape != (x.shape[0],):
    raise ValueError(f"active must have shape ({x.shape[0]},), got {active.shape}")
  if draws is not None:
    batch, height, width, channels = x.shape
    if norm == "linf":
      expected = LinfSquareDraws(stripe_signs=(batch, width, channels), vh=(n_queries,),
                                 vw=(n_queries,), channel_signs=(n_queries, channels))
    else:
      n_tiles = len(l2_tile_grid(height, width)[1])
      expected = L2SquareDraws(tile_transpose=(n_tiles,), tile_signs=(n_tiles, batch, channels),
                               vh=(n_queries,), vw=(n_queries,), vh2=(n_queries,),
                               vw2=(n_queries,), transpose=(n_queries,),
                               signs=(n_queries, batch, channels))
    if type(draws) is not type(expected):
      raise ValueError(f"draws for norm={norm!r} must be {type(expected).__name__}, "
                       f"got {type(draws).__name__}")
    for name, shape in expected._asdict().items():
      got = tuple(getattr(draws, name).shape)
      # Per-iteration arrays may hold more iterations than are run.
      if got != shape and not (shape[:1] == (n_queries,) and got[1:] == shape[1:]
                               and got[0] >= n_queries):
        raise ValueError(f"draws.{name} must have shape {shape}, got {got}")


def square_attack(logits_fn: LogitsFn,
                  x: jax.Array,
                  y: jax.Array,
                  key: jax.Array,
                  *,
                  eps,
                  norm: str = "linf",
                  n_queries: int = 5000,
                  p_init: float = 0.8,
                  active: jax.Array | None = None,
                  draws: LinfSquareDraws | L2SquareDraws | None = None,
                  rescale_schedule: bool = False) -> SquareResult:
  """Runs the Square attack (AutoAttack 'standard': 5000 queries, p_init 0.8, 1 restart).

  Args:
    logits_fn: pure batched model, (B,H,W,C) -> logits (B,K), in inference mode.
    x: clean batch (B,H,W,C) float32 in [0,1].
    y: (B,) int labels.
    key: PRNG key; the start draws from fold_in(key, 0), iteration i from
      fold_in(fold_in(key, 1), i).
    eps: radius, scalar or (B,), pixel units (8/255 L-inf, 0.5 L2).
    norm: 'linf' or 'l2'.
    n_queries: maximal number of iterations (one query each, plus one for the start).
    p_init: initial fraction of pixels per window.
    active: (B,) bool, rows to attack (None = all). Inactive rows come back unchanged.
    draws: pre-sampled random draws replacing `key` (tests); see `sample_square_draws`.
    rescale_schedule: read the p schedule at int(i / n_queries * 10000) (the standalone
      reference default) instead of i (AutoAttack's setting, the default here).

  Returns:
    SquareResult (see its docstring for the exact meaning of each field).
  """
  _validate(x, y, eps=eps, norm=norm, n_queries=n_queries, p_init=p_init, active=active,
            draws=draws, rescale_schedule=rescale_schedule)
  batch, height, width, channels = x.shape
  image_shape = (height, width, channels)
  row_shape = (batch, 1, 1, 1)
  y = y.astype(jnp.int32)
  plan = _plan(norm, image_shape, n_queries, p_init, rescale_schedule)
  stage_of_iteration = jnp.asarray(plan.stage_of_iteration)
  side_of_stage = jnp.asarray(plan.side_of_stage)
  if norm == "l2":
    eta_table, eta_table_transposed = (jnp.asarray(t) for t in _padded_eta_table(plan))

  clean_logits = logits_fn(x)
  clean_correct = jnp.argmax(clean_logits, axis=-1) == y
  active = jnp.ones((batch,), bool) if active is None else active.astype(bool)
  attacked = active & clean_correct
  iterations_key = _iterations_key(key)

  if draws is None:
    start = _start_draws(norm, _start_key(key), batch, image_shape)
  else:
    draws = jax.tree.map(jnp.asarray, draws)
    start = {name: getattr(draws, name) for name in
             (("stripe_signs",) if norm == "linf" else ("tile_transpose", "tile_signs"))}
  if norm == "linf":
    x_start = linf_start(x, eps, start["stripe_signs"])
  else:
    x_start = l2_start(x, eps, start["tile_transpose"], start["tile_signs"])
  x_best = jnp.where(attacked.reshape(row_shape), x_start, x)
  margin_best = losses.margin(logits_fn(x_best), y)
  loss_best = margin_best
  queries = attacked.astype(jnp.int32)

  def keep_going(state):
    iteration, _, margin_best, _, _ = state
    return (iteration < n_queries) & jnp.any(attacked & (margin_best > 0))

  def iterate(state):
    iteration, x_best, margin_best, loss_best, queries = state
    stage = stage_of_iteration[iteration]
    side = side_of_stage[stage]
    if draws is None:
      current = _iteration_draws(norm, jax.random.fold_in(iterations_key, iteration), side, batch,
                                 image_shape)
    else:
      current = {name: value[iteration] for name, value in draws._asdict().items()
                 if name in ("vh", "vw", "vh2", "vw2", "channel_signs", "transpose", "signs")}
    top = jnp.clip(current["vh"], 0, height - side)
    left = jnp.clip(current["vw"], 0, width - side)
    window = _window_mask(height, width, top, left, side)
    if norm == "linf":
      x_new = linf_candidate(x, x_best, eps, window, current["channel_signs"])
    else:
      top2 = jnp.clip(current["vh2"], 0, height - side)
      left2 = jnp.clip(current["vw2"], 0, width - side)
      window2 = _window_mask(height, width, top2, left2, side)
      patterns = jnp.where(current["transpose"], eta_table_transposed[stage], eta_table[stage])
      pattern = _placed_pattern(patterns, height, width, top, left)
      x_new = l2_candidate(x, x_best, eps, window, window2, pattern, current["signs"])

    margin_new = losses.margin(logits_fn(x_new), y)
    loss_new = margin_new
    running = attacked & (margin_best > 0)
    improved = loss_new < loss_best
    loss_best = jnp.where(running & improved, loss_new, loss_best)
    accept = running & (improved | (margin_new <= 0))
    margin_best = jnp.where(accept, margin_new, margin_best)
    x_best = jnp.where(accept.reshape(row_shape), x_new, x_best)
    return iteration + 1, x_best, margin_best, loss_best, queries + running.astype(jnp.int32)

  _, x_best, margin_best, _, queries = jax.lax.while_loop(
      keep_going, iterate, (jnp.zeros((), jnp.int32), x_best, margin_best, loss_best, queries))

  # The reference re-evaluates the returned point: argmax != y, not margin <= 0.
  fooled = attacked & (jnp.argmax(logits_fn(x_best), axis=-1) != y)
  return SquareResult(
      x_adv=jnp.where(fooled.reshape(row_shape), x_best, x),
      robust=jnp.where(active, clean_correct & ~fooled, clean_correct),
      margin=jnp.where(attacked, margin_best, losses.margin(clean_logits, y)),
      queries=queries)
