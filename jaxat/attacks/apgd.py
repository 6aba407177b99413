"""APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", Alg. 1) and APGD-T, as in the reference `autoattack`
package (fra31/auto-attack @ a392200;
docs/evaluation.md#apgd-ce-and-apgd-t).

Official behaviour throughout (it differs from the paper in two places, both kept):
  * the first step-size checkpoint compares the loss of the first iterate with 0, not with
    the loss of the start point: the reference indexes `loss_steps[-1]` of a zero-filled
    array (reproduced with `jnp.roll`);
  * the returned adversarial example is the *last* misclassified iterate, not the first.

One run (`apgd`), per example b, with x^0 the start point, eta = 2 eps, alpha = 0.75:
    z^{k+1} = P(x^k + eta * s(grad l(x^k)))                     s = sign (L-inf) or g/||g||_2
    x^{k+1} = P(x^k + alpha (z^{k+1} - x^k) + (1 - alpha)(x^k - x^{k-1}))   (alpha = 1 at k=0)
with P the projection onto the eps-ball intersected with [0,1]^d. At the checkpoints w_j
(22, 41, 57, 70, 80, 87, 93, 99 iterates for N = 100) the step size of an example halves
if its loss increased in at most rho = 75 % of the steps of the last window, or if it was
not halved at the previous checkpoint and its best loss has not improved since; a halved
example restarts from its best point with the gradient stored there. The state is an
explicit pytree under `lax.fori_loop`; the checkpoint table is static.

Shapes: x (B,H,W,C) in [0,1]; labels and targets (B,) int; eps scalar or (B,) in pixel
units (8/255 = 0.0314 for L-inf, e.g. 0.5 for L2). Gradients are those of the batch sum of
the per-example loss, i.e. per-example gradients for models without cross-example terms
(BatchNorm in inference mode).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxat.attacks import inits, losses, rng
from jaxat.attacks.budget import per_example
from jaxat.attacks.projections import clip_to_image, l2_norm

LogitsFn = Callable[[jax.Array], jax.Array]

APGD_LOSSES = ("ce", "dlr", "dlr-targeted")
NORMS = ("linf", "l2")
MOMENTUM = 0.75


class CheckpointSchedule(NamedTuple):
  """Static step-size checkpoints of an N-iteration run.

  is_check: (N,) bool, True at the 0-based loop index where a check happens.
  window: (N,) int, the window length k used by that check (0 elsewhere).
  """

  is_check: np.ndarray
  window: np.ndarray


def checkpoint_schedule(n_iter: int) -> CheckpointSchedule:
  """The reference's checkpoint rule as pure arithmetic.

  First window max(int(0.22 N), 1); after each check the window shrinks by
  max(int(0.03 N), 1) down to max(int(0.06 N), 1). For N = 100 the checks happen at loop
  indices 21, 40, 56, 69, 79, 86, 92, 98 with windows 22, 19, 16, 13, 10, 7, 6, 6.
  """
  if n_iter < 1:
    raise ValueError(f"n_iter must be >= 1, got {n_iter}")
  window = max(int(0.22 * n_iter), 1)
  minimum = max(int(0.06 * n_iter), 1)
  decrement = max(int(0.03 * n_iter), 1)
  is_check = np.zeros(n_iter, bool)
  windows = np.zeros(n_iter, np.int32)
  counter = 0
  for i in range(n_iter):
    counter += 1
    if counter == window:
      is_check[i] = True
      windows[i] = window
      window = max(window - decrement, minimum)
      counter = 0
  return CheckpointSchedule(is_check, windows)


def oscillation_flags(loss_steps: jax.Array, i, window, rho: float = 0.75) -> jax.Array:
  """cond1 of the step-size rule: (B,) bool, True where the loss increased in at most
  rho * window of the last `window` steps ending at loop index i.

  loss_steps is the (N, B) history (rows not yet written are 0). Step j counts as an
  increase if loss_steps[j] > loss_steps[j - 1], with j - 1 = -1 wrapping to the last
  row, exactly like the reference's Python negative index (the first-checkpoint quirk).
  """
  previous = jnp.roll(loss_steps, 1, axis=0)
  increased = loss_steps > previous
  steps = jnp.arange(loss_steps.shape[0])[:, None]
  in_window = (steps <= i) & (steps > i - window)
  count = jnp.sum(jnp.where(in_window, increased, False), axis=0)
  return count.astype(jnp.float32) <= jnp.asarray(window, jnp.float32) * rho


def halving_flags(loss_steps: jax.Array, i, window, is_check, reduced_last_check: jax.Array,
                  loss_best_last_check: jax.Array, loss_best: jax.Array,
                  rho: float = 0.75) -> jax.Array:
  """(B,) bool: examples whose step size halves at loop index i (False off checkpoints).

  halve = is_check and (cond1 or cond2) with cond1 = `oscillation_flags` and
  cond2 = (not reduced at the previous check) and (best loss at the previous check >=
  current best loss), i.e. no improvement since then (non-strict, as the reference).
  """
  oscillating = oscillation_flags(loss_steps, i, window, rho)
  stalled = ~reduced_last_check & (loss_best_last_check >= loss_best)
  return is_check & (oscillating | stalled)


class APGDResult(NamedTuple):
  """Outcome of one APGD run.

  x_adv: (B,H,W,C) the last misclassified iterate where the run fooled the example, the
    clean x elsewhere (and for inactive examples): the reference's `perturb` output.
  robust: (B,) bool, correct at the start point and at every iterate (False if inactive).
  loss_best: (B,) highest loss reached (start point included).
  x_best: (B,H,W,C) the point of loss_best.
  step_size: (B,) final step size eta after the halvings.
  """

  x_adv: jax.Array
  robust: jax.Array
  loss_best: jax.Array
  x_best: jax.Array
  step_size: jax.Array


def loss_function(loss: str, targets: jax.Array | None = None):
  """Per-example loss to *maximise*, (logits (B,K), labels (B,)) -> (B,)."""
  if loss == "ce":
    return losses.cross_entropy
  if loss == "dlr":
    return losses.dlr_loss
  if loss == "dlr-targeted":
    if targets is None:
      raise ValueError("loss 'dlr-targeted' needs targets (B,)")
    return lambda logits, labels: losses.targeted_dlr_loss(logits, labels, targets)
  raise ValueError(f"unknown APGD loss {loss!r}; valid choices: {', '.join(APGD_LOSSES)}")


def _project_linf(x, v, eps):
  # clip(min(max(v, x - eps), x + eps), 0, 1): the reference's order of operations.
  return jnp.clip(jnp.minimum(jnp.maximum(v, x - eps), x + eps), 0.0, 1.0)


def _project_l2(x, v, eps):
  # clip(x + (v - x)/(||v - x|| + 1e-12) * min(eps, ||v - x||), 0, 1), as the reference.
  delta = v - x
  norm = l2_norm(delta)
  return jnp.clip(x + delta / (norm + 1e-12) * jnp.minimum(eps, norm), 0.0, 1.0)


def apgd(logits_fn: LogitsFn,
         x: jax.Array,
         labels: jax.Array,
         key: jax.Array,
         *,
         eps,
         norm: str = "linf",
         loss: str = "ce",
         n_iter: int = 100,
         rho: float = 0.75,
         targets: jax.Array | None = None,
         x_init: jax.Array | None = None,
         active: jax.Array | None = None) -> APGDResult:
  """One APGD run (no restarts) from a random or injected start.

  Args:
    logits_fn: pure batched model, (B,H,W,C) -> (B,K) logits (inference mode).
    x: clean batch (B,H,W,C) in [0,1].
    labels: (B,) true classes; success is argmax f(x') != label (untargeted, also for
      the targeted loss).
    key: PRNG key or (B,) per-example keys for the random start (rng.py); unused when
      x_init is given.
    eps: radius, scalar or (B,), pixel units.
    norm: 'linf' (start rescaled uniform, sign steps) or 'l2' (start on the sphere,
      normalised steps).
    loss: 'ce' (APGD-CE), 'dlr' (untargeted DLR) or 'dlr-targeted' (APGD-T, needs targets).
    n_iter: iterations N (static).
    rho: oscillation threshold of the step-size rule.
    targets: (B,) target classes for 'dlr-targeted'.
    x_init: (B,H,W,C) injected start point (tests, side-by-side checks); clipped to [0,1]
      only, like the reference.
    active: (B,) bool; inactive examples are computed but returned as x with robust=False
      (padding rows of the evaluator).

  Returns:
    APGDResult.
  """
  if norm not in NORMS:
    raise ValueError(f"unknown norm {norm!r}; valid choices: {', '.join(NORMS)}")
  loss_fn = loss_function(loss, targets)
  schedule = checkpoint_schedule(n_iter)
  is_check_table = jnp.asarray(schedule.is_check)
  window_table = jnp.asarray(schedule.window)
  eps_b = per_example(eps, x)
  if x_init is None:
    start = (inits.scaled_uniform_linf(key, x, eps) if norm == "linf"
             else inits.sphere_l2(key, x, eps))
  else:
    start = clip_to_image(x_init.astype(x.dtype))
  project = _project_linf if norm == "linf" else _project_l2

  def loss_logits_grad(x_in):
    def summed(z):
      logits = logits_fn(z)
      per_example_loss = loss_fn(logits, labels)
      return jnp.sum(per_example_loss), (per_example_loss, logits)

    (_, (per_example_loss, logits)), grad = jax.value_and_grad(summed, has_aux=True)(x_in)
    return per_example_loss, logits, grad

  def expand(flags):
    return flags.reshape((-1,) + (1,) * (x.ndim - 1))

  loss0, logits0, grad0 = loss_logits_grad(start)
  batch = x.shape[0]
  state = dict(
      x_cur=start, x_prev=start, grad=grad0,
      step=2.0 * eps_b,
      x_best=start, grad_best=grad0, loss_best=loss0,
      x_best_adv=start,
      robust=jnp.argmax(logits0, axis=-1) == labels,
      loss_steps=jnp.zeros((n_iter, batch), loss0.dtype),
      loss_best_last_check=loss0,
      reduced_last_check=jnp.ones((batch,), bool),
  )

  def body(i, s):
    momentum_term = s["x_cur"] - s["x_prev"]
    a = jnp.where(i == 0, 1.0, MOMENTUM).astype(x.dtype)
    if norm == "linf":
      direction = jnp.sign(s["grad"])
    else:
      direction = s["grad"] / (l2_norm(s["grad"]) + 1e-12)
    z = project(x, s["x_cur"] + s["step"] * direction, eps_b)
    x_new = project(x, s["x_cur"] + (z - s["x_cur"]) * a + momentum_term * (1 - a), eps_b)

    loss_new, logits, grad_new = loss_logits_grad(x_new)
    correct_now = jnp.argmax(logits, axis=-1) == labels
    robust = s["robust"] & correct_now
    x_best_adv = jnp.where(expand(correct_now), s["x_best_adv"], x_new)
    loss_steps = s["loss_steps"].at[i].set(loss_new)
    improved = loss_new > s["loss_best"]
    x_best = jnp.where(expand(improved), x_new, s["x_best"])
    grad_best = jnp.where(expand(improved), grad_new, s["grad_best"])
    loss_best = jnp.where(improved, loss_new, s["loss_best"])

    is_check = is_check_table[i]
    halve = halving_flags(loss_steps, i, window_table[i], is_check, s["reduced_last_check"],
                          s["loss_best_last_check"], loss_best, rho)
    reduced_last_check = jnp.where(is_check, halve, s["reduced_last_check"])
    loss_best_last_check = jnp.where(is_check, loss_best, s["loss_best_last_check"])
    # x_prev is deliberately not reset: the next momentum term is x_best - x_prev.
    return dict(
        x_cur=jnp.where(expand(halve), x_best, x_new),
        x_prev=s["x_cur"],
        grad=jnp.where(expand(halve), grad_best, grad_new),
        step=jnp.where(expand(halve), s["step"] / 2.0, s["step"]),
        x_best=x_best, grad_best=grad_best, loss_best=loss_best,
        x_best_adv=x_best_adv, robust=robust, loss_steps=loss_steps,
        loss_best_last_check=loss_best_last_check, reduced_last_check=reduced_last_check,
    )

  state = jax.lax.fori_loop(0, n_iter, body, state)
  active = jnp.ones((batch,), bool) if active is None else active.astype(bool)
  robust = state["robust"] & active
  fooled = active & ~state["robust"]
  return APGDResult(
      x_adv=jnp.where(expand(fooled), state["x_best_adv"], x),
      robust=robust,
      loss_best=state["loss_best"],
      x_best=state["x_best"],
      step_size=state["step"].reshape(batch),
  )


def target_classes(clean_logits: jax.Array, rank: jax.Array | int) -> jax.Array:
  """(B,) class with the `rank`-th largest clean logit (rank 2 = runner-up), as the
  reference's `sort(logits)[1][:, -rank]` (argsort is stable here; torch's sort is not,
  which matters only for exactly tied logits)."""
  order = jnp.argsort(clean_logits, axis=-1)
  return jnp.take(order, clean_logits.shape[-1] - rank, axis=-1)


def num_target_classes(num_classes: int, requested: int = 9) -> int:
  """min(requested, K - 1): the reference wraps or crashes for K <= requested
  (issue #110); here the targets stop at the last class. A deliberate divergence."""
  return max(0, min(requested, num_classes - 1))


def apgd_targeted(logits_fn: LogitsFn,
                  x: jax.Array,
                  labels: jax.Array,
                  key: jax.Array,
                  *,
                  eps,
                  norm: str = "linf",
                  n_iter: int = 100,
                  n_target_classes: int = 9,
                  rho: float = 0.75,
                  active: jax.Array | None = None) -> APGDResult:
  """APGD-T: one targeted-DLR run toward each of the classes ranked 2 .. n+1 by the
  clean logits; an example fooled by one target skips the later ones (its returned point
  is the one that fooled it). Each target draws a fresh start from fold_in(key, rank).

  Needs at least 4 classes (targeted DLR); n_target_classes is capped at K - 1. Returns
  APGDResult whose loss_best / x_best / step_size are those of the last target run.
  """
  num_classes = jax.eval_shape(logits_fn, x).shape[-1]
  if num_classes < 4:
    raise ValueError(f"APGD-T needs at least 4 classes (targeted DLR), the model has {num_classes}")
  n_targets = num_target_classes(num_classes, n_target_classes)
  clean_logits = logits_fn(x)
  still_robust = jnp.ones(x.shape[0], bool) if active is None else active.astype(bool)
  x_adv = x
  result = None
  for rank in range(2, n_targets + 2):
    result = apgd(logits_fn, x, labels, rng.fold_in(key, rank), eps=eps, norm=norm,
                  loss="dlr-targeted", n_iter=n_iter, rho=rho,
                  targets=target_classes(clean_logits, rank), active=still_robust)
    fooled_now = still_robust & ~result.robust
    x_adv = jnp.where(fooled_now.reshape((-1,) + (1,) * (x.ndim - 1)), result.x_adv, x_adv)
    still_robust = still_robust & result.robust
  return result._replace(x_adv=x_adv, robust=still_robust)
