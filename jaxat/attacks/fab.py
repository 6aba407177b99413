"""FAB-T: targeted Fast Adaptive Boundary attack as run by AutoAttack 'standard'.

Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
attack" (ICML 2020), Eq. 5-9, in the form of the official fra31/auto-attack code
(`fab_base.py`, `fab_pt.py`; docs/evaluation.md#fab-t). For each of the target classes ranked
2 .. n_target_classes+1 by the clean logits, and each restart, one run of `n_iter`
iterations starts from the clean point (restart 0) or a random start (restarts > 0):

  h(x1)  = z_t(x1) - z_y(x1),  w = grad h(x1),  b = <w, x1> - h(x1)     (linearisation)
  d1, d0 = Proj_p(x1), Proj_p(x)  onto {<w, v> = b} ∩ [0,1]^d           (fab_projections)
  alpha  = min(max(n1 / (n1 + n0), 0), alpha_max),  n = max(||d||_p, 1e-8)
  x1     = clip((1 - alpha)(x1 + eta d1) + alpha (x + eta d0), 0, 1)     (Eq. 8)
  if argmax f(x1) != y:  keep x1 if ||x1 - x||_p < best (strict);  x1 = x + beta (x1 - x)

A run succeeds for a point when a fresh forward pass at its best point is misclassified
(untargeted: argmax != y, not argmax == t) and ||x_adv - x||_p <= eps; succeeded points
are not attacked by later targets. eps enters only this acceptance test and the radius
of the random starts (eps/2 in the reference). With n_restarts=1 (AutoAttack standard)
the attack is deterministic: `key` is unused.

Everything runs on the whole batch with fixed shapes and masks: one `lax.while_loop`
over (target rank, restart) pairs that stops when no point is left to attack, and a
`lax.fori_loop` over iterations inside. Call it inside `jax.jit`; all keyword arguments
except eps/active/targets are static Python values.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxat.attacks.fab_projections import project_hyperplane
from jaxat.attacks.inputs import validate_batch
from jaxat.attacks.projections import NORMS

LogitsFn = Callable[[jax.Array], jax.Array]

# The reference's "no adversarial point found yet" distance.
_NOT_FOUND = 1e10


class FABResult(NamedTuple):
  """Outcome of FAB-T on a batch.

  x_adv: (B,H,W,C) in [0,1]. For points fooled within eps, the adversarial point of the
    first (target, restart) run that fooled them; for every other row, x itself.
  robust: (B,) bool. Active rows: correctly classified on the clean input and not fooled
    within eps by any run (clean-misclassified active rows are False and never attacked,
    as in the reference's `perturb`). Inactive rows: correctly classified on the clean
    input (they are not attacked, x_adv = x).
  """

  x_adv: jax.Array
  robust: jax.Array


def ranked_targets(clean_logits: jax.Array, n_target_classes: int) -> jax.Array:
  """Classes ranked 2 .. n_target_classes+1 by the logits, shape (B, n_target_classes).

  Column k holds the (k+2)-th largest logit's class, read from the ascending argsort at
  position -(k+2) as in the reference (jnp.argsort is stable, torch.sort is not: only
  exact ties can pick a different class).
  """
  ascending = jnp.argsort(clean_logits, axis=-1)
  return jnp.stack([ascending[:, -rank] for rank in range(2, n_target_classes + 2)], axis=1)


def perturbation_norm(norm: str, delta: jax.Array) -> jax.Array:
  """Per-example ||delta||_p of a (B, ...) batch, shape (B,)."""
  flat = delta.reshape(delta.shape[0], -1)
  if norm == "linf":
    return jnp.max(jnp.abs(flat), axis=1)
  return jnp.sqrt(jnp.sum(flat ** 2, axis=1))


def _random_start(norm: str, key: jax.Array, x: jax.Array, eps: jax.Array) -> jax.Array:
  """The reference's restart point: x + (eps/2) t/||t||_p, clipped (no 1e-12 in the norm)."""
  if norm == "linf":
    t = 2 * jax.random.uniform(key, x.shape, x.dtype) - 1
  else:
    t = jax.random.normal(key, x.shape, x.dtype)
  scale = perturbation_norm(norm, t).reshape((-1,) + (1,) * (x.ndim - 1))
  return jnp.clip(x + eps.reshape(scale.shape) * t / scale * 0.5, 0.0, 1.0)


def _single_run(logits_fn: LogitsFn, x: jax.Array, labels: jax.Array, targets: jax.Array,
                x_start: jax.Array, *, norm: str, n_iter: int, alpha_max: float, eta: float,
                beta: float) -> tuple[jax.Array, jax.Array]:
  """One targeted FAB run on every row; returns (best adversarial point (B,H,W,C), its
  distance (B,), _NOT_FOUND where no iterate was misclassified)."""
  batch = x.shape[0]
  row_shape = (batch,) + (1,) * (x.ndim - 1)
  x_flat = x.reshape(batch, -1)

  def target_gap(v):
    logits = logits_fn(v)
    true_logit = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    target_logit = jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]
    gap = -(true_logit - target_logit)
    return jnp.sum(gap), gap

  def iteration(_, carry):
    x1, best_point, best_dist = carry
    (_, gap), grad = jax.value_and_grad(target_gap, has_aux=True)(x1)
    w = grad.reshape(batch, -1)
    b = -gap + jnp.sum((grad * x1).reshape(batch, -1), axis=1)
    # The current iterate and the clean point are projected onto the same hyperplane.
    deltas = project_hyperplane(norm, jnp.concatenate([x1.reshape(batch, -1), x_flat]),
                                jnp.concatenate([w, w]), jnp.concatenate([b, b]))
    delta_current = deltas[:batch].reshape(x.shape)
    delta_clean = deltas[batch:].reshape(x.shape)
    sizes = jnp.maximum(perturbation_norm(norm, deltas), 1e-8)
    sizes = sizes.reshape((2 * batch,) + row_shape[1:])
    size_current, size_clean = sizes[:batch], sizes[batch:]
    alpha = jnp.minimum(jnp.maximum(size_current / (size_current + size_clean), 0.0), alpha_max)
    x1 = jnp.clip((x1 + eta * delta_current) * (1 - alpha) + (x + delta_clean * eta) * alpha,
                  0.0, 1.0)

    is_adv = jnp.argmax(logits_fn(x1), axis=-1) != labels
    dist = perturbation_norm(norm, x1 - x)
    improved = is_adv & (dist < best_dist)
    best_point = jnp.where(improved.reshape(row_shape), x1, best_point)
    best_dist = jnp.where(improved, dist, best_dist)
    # Every misclassified iterate, improved or not, is pulled back towards x.
    x1 = jnp.where(is_adv.reshape(row_shape), x + (x1 - x) * beta, x1)
    return x1, best_point, best_dist

  not_found = jnp.full((batch,), _NOT_FOUND, x.dtype)
  _, best_point, best_dist = jax.lax.fori_loop(0, n_iter, iteration, (x_start, x, not_found))
  return best_point, best_dist


def _validate(x, y, *, eps, norm, n_target_classes, n_iter, n_restarts, alpha_max, eta, beta,
              active, targets) -> None:
  validate_batch(x, y, eps=eps, norm=norm, norms=NORMS)
  if n_iter < 1:
    raise ValueError(f"n_iter={n_iter} is invalid; valid choices: integers >= 1")
  if n_restarts < 1:
    raise ValueError(f"n_restarts={n_restarts} is invalid; valid choices: integers >= 1")
  if not 0.0 <= alpha_max <= 1.0:
    raise ValueError(f"alpha_max={alpha_max} is invalid; valid choices: [0, 1]")
  if not eta > 0.0:
    raise ValueError(f"eta={eta} is invalid; valid choices: > 0 (1.05 in the reference)")
  if not 0.0 < beta <= 1.0:
    raise ValueError(f"beta={beta} is invalid; valid choices: (0, 1] (0.9 in the reference)")
  if active is not None and active.shape != (x.shape[0],):
    raise ValueError(f"active must have shape ({x.shape[0]},), got {active.shape}")
  if targets is not None and targets.shape != (x.shape[0], n_target_classes):
    raise ValueError(f"targets must have shape ({x.shape[0]}, {n_target_classes}), "
                     f"got {targets.shape}")


def fab_targeted(logits_fn: LogitsFn,
                 x: jax.Array,
                 y: jax.Array,
                 key: jax.Array,
                 *,
                 eps,
                 norm: str = "linf",
                 n_target_classes: int = 9,
                 n_iter: int = 100,
                 n_restarts: int = 1,
                 alpha_max: float = 0.1,
                 eta: float = 1.05,
                 beta: float = 0.9,
                 active: jax.Array | None = None,
                 targets: jax.Array | None = None) -> FABResult:
  """Runs FAB-T (AutoAttack 'standard': 9 targets, 1 restart, 100 iterations).

  Args:
    logits_fn: pure batched model, (B,H,W,C) -> logits (B,K), in inference mode.
    x: clean batch (B,H,W,C) float32 in [0,1].
    y: (B,) int labels.
    key: PRNG key of the random starts of restarts > 0 (restart r of target rank k uses
      fold_in(fold_in(key, k), r)); unused when n_restarts == 1.
    eps: acceptance radius, scalar or (B,), pixel units (2/255 .. 8/255 L-inf, 0.5 L2).
    norm: 'linf' or 'l2'.
    n_target_classes: number of target ranks (2 .. n+1); at most K-1. AutoAttack's
      reference only warns when 9 targets exceed a model's K-1; callers of few-class
      models pass min(9, K-1).
    n_iter, n_restarts, alpha_max, eta, beta: FAB's parameters (reference defaults).
    active: (B,) bool, rows to attack (None = all). Inactive rows come back unchanged.
    targets: optional (B, n_target_classes) int classes replacing the ranking of the clean
      logits (tests).

  Returns:
    FABResult (see its docstring for the exact meaning of `robust`).
  """
  _validate(x, y, eps=eps, norm=norm, n_target_classes=n_target_classes, n_iter=n_iter,
            n_restarts=n_restarts, alpha_max=alpha_max, eta=eta, beta=beta, active=active,
            targets=targets)
  num_classes = jax.eval_shape(logits_fn, x).shape[-1]   # traces only, compiles nothing
  if not 1 <= n_target_classes <= num_classes - 1:
    raise ValueError(f"n_target_classes={n_target_classes} is invalid for {num_classes} classes; "
                     f"valid choices: 1 .. {num_classes - 1}")
  batch = x.shape[0]
  row_shape = (batch,) + (1,) * (x.ndim - 1)
  y = y.astype(jnp.int32)
  eps = jnp.broadcast_to(jnp.asarray(eps, x.dtype), (batch,))
  clean_logits = logits_fn(x)
  clean_correct = jnp.argmax(clean_logits, axis=-1) == y
  active = jnp.ones((batch,), bool) if active is None else active.astype(bool)
  if targets is None:
    targets = ranked_targets(clean_logits, n_target_classes)
  targets = targets.astype(jnp.int32)
  num_runs = n_target_classes * n_restarts

  def still_to_attack(state):
    run, robust, _ = state
    return (run < num_runs) & jnp.any(robust)

  def attack_once(state):
    run, robust, x_adv = state
    rank, restart = run // n_restarts, run % n_restarts
    target = jax.lax.dynamic_index_in_dim(targets, rank, axis=1, keepdims=False)
    if n_restarts > 1:
      restart_key = jax.random.fold_in(jax.random.fold_in(key, rank), restart)
      x_start = jnp.where(restart > 0, _random_start(norm, restart_key, x, eps), x)
    else:
      x_start = x
    best_point, best_dist = _single_run(logits_fn, x, y, target, x_start, norm=norm,
                                        n_iter=n_iter, alpha_max=alpha_max, eta=eta, beta=beta)
    candidate = jnp.where((best_dist < _NOT_FOUND).reshape(row_shape), best_point, x)
    # The reference re-evaluates the returned point and applies the eps test there.
    fooled = ((jnp.argmax(logits_fn(candidate), axis=-1) != y)
              & ~(perturbation_norm(norm, x - candidate) > eps))
    success = robust & fooled
    x_adv = jnp.where(success.reshape(row_shape), candidate, x_adv)
    return run + 1, robust & ~success, x_adv

  _, robust, x_adv = jax.lax.while_loop(
      still_to_attack, attack_once, (jnp.zeros((), jnp.int32), active & clean_correct, x))
  return FABResult(x_adv=x_adv, robust=jnp.where(active, robust, clean_correct))
