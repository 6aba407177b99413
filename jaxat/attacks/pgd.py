"""Projected gradient descent/ascent built from the pieces of this package.

An attack is (objective, direction, init, step rule, projection, budget):
  x_0     = project(init(x)), or an explicit start point given by the caller
  x_{t+1} = project(x_t + step(direction * grad objective(x_t)))   for examples still active
The same driver produces adversarial examples (direction=+1, ascend CE/KL/margin) and
inverse adversarial examples (direction=-1, descend CE; UIAT/IAT Eq. 3).

Objective functions have the signature
    objective_fn(x_adv, aux) -> (per_example_objective (B,), (logits (B,K), aux))
where `aux` threads state through the attack loop: BatchNorm running statistics when an
attack runs in `train` BatchNorm mode (Rice PGD-AT keeps the updates of attack passes), or
None. `from_logits_fn` adapts a plain `logits_fn(x) -> logits`.

Per-example budgets: eps, step size and step count may be (B,) arrays; the loop runs the
static `max_steps` iterations and freezes examples whose own count is exhausted (ECAS,
LAS-AT). With `early_stop=True` an example also stops as soon as it is misclassified at
the current iterate (the Jia-family evaluator,
docs/evaluation.md#per-example-early-stopping: "attack succeeds if any iterate
misclassifies"); report that variant under its own name.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxat.attacks import inits, projections, rng, steps
from jaxat.attacks.budget import Budget

ObjectiveFn = Callable[[jax.Array, Any], tuple[jax.Array, tuple[jax.Array, Any]]]


class PGDResult(NamedTuple):
  """Outcome of a PGD run.

  x_adv: (B,H,W,C) final points (worst case per example over restarts).
  objective: (B,) objective at x_adv, or None when `evaluate_final=False`.
  correct: (B,) bool, argmax f(x_adv) == label, or None when `evaluate_final=False`.
  aux: the threaded auxiliary state after the last forward pass.
  """

  x_adv: jax.Array
  objective: jax.Array | None
  correct: jax.Array | None
  aux: Any


def from_logits_fn(logits_fn: Callable[[jax.Array], jax.Array],
                   loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
                   labels: jax.Array) -> ObjectiveFn:
  """Builds an objective from a stateless model `logits_fn(x) -> logits` and a per-example
  `loss_fn(logits, labels) -> (B,)` (e.g. losses.cross_entropy)."""

  def objective(x_adv, aux):
    logits = logits_fn(x_adv)
    return loss_fn(logits, labels), (logits, aux)

  return objective


def _value_and_input_grad(objective_fn: ObjectiveFn, x_adv, aux):
  def summed(x_in):
    per_example, (logits, new_aux) = objective_fn(x_in, aux)
    return jnp.sum(per_example), (per_example, logits, new_aux)

  (_, (per_example, logits, new_aux)), grad = jax.value_and_grad(summed, has_aux=True)(x_adv)
  return per_example, logits, new_aux, grad


def _single_run(objective_fn, x, labels, key, budget: Budget, max_steps: int, init: str,
                norm: str, direction: float, early_stop: bool, aux, init_eps, project_eps,
                start=None):
  if start is None:
    x_adv = projections.project(norm, x, inits.initialise(init, key, x, init_eps, norm), project_eps)
  else:
    x_adv = start
  num_steps = jnp.asarray(budget.num_steps)

  def body(t, carry):
    x_adv, aux = carry
    _, logits, aux, grad = _value_and_input_grad(objective_fn, x_adv, aux)
    active = t < num_steps
    if early_stop:
      active = jnp.logical_and(active, jnp.argmax(logits, axis=-1) == labels)
    moved = projections.project(norm, x, x_adv + steps.step(norm, grad, budget.step_size, direction),
                                project_eps)
    active = jnp.broadcast_to(active, (x.shape[0],)).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where(active, moved, x_adv), aux

  return jax.lax.fori_loop(0, max_steps, body, (x_adv, aux))


def pgd(objective_fn: ObjectiveFn,
        x: jax.Array,
        labels: jax.Array,
        key: jax.Array,
        budget: Budget,
        *,
        max_steps: int,
        init: str = "uniform",
        norm: str = "linf",
        direction: float = 1.0,
        early_stop: bool = False,
        restarts: int = 1,
        evaluate_final: bool = True,
        aux: Any = None,
        init_eps=None,
        project: bool = True,
        start: jax.Array | None = None) -> PGDResult:
  """Runs PGD with `restarts` random restarts, keeping the worst case per example.

  Args:
    objective_fn: see module docstring; ascended when direction=+1, descended when -1.
    x: clean batch (B,H,W,C) in [0,1].
    labels: (B,) int labels, used for early stopping and the final correctness.
    key: PRNG key, or a (B,) batch of per-example keys (rng.py); restart r uses
      fold_in(key, r).
    budget: eps / step_size / num_steps, scalars or (B,) arrays (pixel units).
    max_steps: static loop length; must be >= max(budget.num_steps).
    init: 'uniform' | 'normal' | 'zero' (see inits.py).
    norm: 'linf' | 'l2'.
    direction: +1.0 adversarial (ascent), -1.0 inverse adversarial (descent).
    early_stop: freeze examples as soon as they are misclassified (Jia-family evaluator).
    restarts: number of independent runs (static). Per example the kept point is a
      misclassified one if any restart found one, else the one with the largest objective
      (ties go to the later restart, as in the reference evaluators). For direction=-1 the
      kept point is the correctly classified one with the smallest objective.
    evaluate_final: run one extra forward pass at the result to return its objective and
      correctness. Required when restarts > 1; training-time attacks skip it.
    aux: initial auxiliary state threaded through every forward pass.
    init_eps: radius of the random start (scalar or (B,)); None = budget.eps. N-FGSM starts
      from a wider box (k * eps) than its step.
    project: False skips the projection onto the eps-ball (N-FGSM's `--clip -1`); points
      are still clipped to [0,1].
    start: an explicit start point x_0 (B,H,W,C) used as given, neither projected nor
      clipped (the caller's initialiser decides: FGSM-EP/MEP prior buffers, a learned
      generator); `init` and `init_eps` are then unused. Only with restarts = 1.

  Returns:
    PGDResult.
  """
  if restarts < 1:
    raise ValueError(f"restarts must be >= 1, got {restarts}")
  if restarts > 1 and not evaluate_final:
    raise ValueError("restarts > 1 needs evaluate_final=True to pick the worst case per example")
  if direction not in (1.0, -1.0, 1, -1):
    raise ValueError(f"direction must be +1 (adversarial) or -1 (inverse), got {direction}")
  if start is not None and restarts != 1:
    raise ValueError(f"an explicit start point allows restarts = 1 only, got {restarts}")
  init_eps = budget.eps if init_eps is None else init_eps
  # A radius of 1 covers the whole image box in L-inf, and sqrt(d) in L2: no constraint.
  project_eps = budget.eps if project else (1.0 if norm == "linf" else float(x[0].size) ** 0.5)
  best = None
  for restart in range(restarts):
    x_adv, aux = _single_run(objective_fn, x, labels, rng.fold_in(key, restart), budget,
                             max_steps, init, norm, float(direction), early_stop, aux, init_eps,
                             project_eps, start)
    if not evaluate_final:
      return PGDResult(x_adv, None, None, aux)
    objective, (logits, aux) = objective_fn(x_adv, aux)
    correct = jnp.argmax(logits, axis=-1) == labels
    candidate = PGDResult(x_adv, objective, correct, aux)
    best = candidate if best is None else _keep_worst_case(best, candidate, float(direction))
  return best


def _keep_worst_case(best: PGDResult, new: PGDResult, direction: float) -> PGDResult:
  """Per-example choice between two restarts (never per batch)."""
  if direction > 0:
    # Success = misclassified; among equal success, the larger objective.
    better = jnp.where(new.correct == best.correct, new.objective >= best.objective, ~new.correct)
  else:
    better = jnp.where(new.correct == best.correct, new.objective <= best.objective, new.correct)
  pick = better.reshape((-1,) + (1,) * (new.x_adv.ndim - 1))
  return PGDResult(
      x_adv=jnp.where(pick, new.x_adv, best.x_adv),
      objective=jnp.where(better, new.objective, best.objective),
      correct=jnp.where(better, new.correct, best.correct),
      aux=new.aux,
  )
