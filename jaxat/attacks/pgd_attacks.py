"""Evaluation-time PGD-family attacks on a logits function: FGSM, PGD-k, CW∞-k.

All of them are the `pgd.py` driver (projected sign steps for L-inf, normalised steps for
L2) with a fixed objective and settings:
  FGSM   (Goodfellow et al. 2015, Eq. 6): x' = Pi(x + eps * sign(grad CE)), one step from x.
  PGD-k  (Madry et al. 2018, Eq. 2): k steps of size `step_size` on CE from a uniform
         random start in the ball; `restarts` keep the worst case per example.
  CW∞-k  (Carlini & Wagner's margin, as PGD): the same loop ascending
         -(z_y - max_{j != y} z_j) (no kappa, no clamp), the CW-20 of the Jia-family
         evaluators (docs/evaluation.md#cw).
`early_stop=True` is the per-example early-stopping variant
(docs/evaluation.md#per-example-early-stopping; an example stops at the first iterate
that misclassifies it): slightly stronger than plain PGD and
reported under its own name (e.g. 'pgd20_es').

Shapes: x (B,H,W,C) in [0,1], labels (B,), eps and step_size scalars or (B,) in pixel
units. `key` is a single key or (B,) per-example keys (rng.py).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxat.attacks import losses
from jaxat.attacks import pgd as pgd_lib
from jaxat.attacks.budget import Budget

PGD_LOSSES = {"ce": losses.cross_entropy, "cw": losses.negative_margin}


class AttackResult(NamedTuple):
  """x_adv (B,H,W,C) inside the ball and [0,1]; robust (B,) bool, argmax f(x_adv) == y
  (False for inactive examples, whose x_adv is x)."""

  x_adv: jax.Array
  robust: jax.Array


def pgd_attack(logits_fn: Callable[[jax.Array], jax.Array],
               x: jax.Array,
               labels: jax.Array,
               key: jax.Array,
               *,
               eps,
               num_steps: int,
               step_size,
               norm: str = "linf",
               loss: str = "ce",
               init: str = "uniform",
               restarts: int = 1,
               early_stop: bool = False,
               active: jax.Array | None = None) -> AttackResult:
  """PGD-k / CW-k / FGSM (see module docstring); worst case per example over restarts.

  loss: 'ce' (cross-entropy) or 'cw' (negative margin), both maximised.
  init: 'uniform' (random start in the ball), 'normal' (0.001 N(0,1)) or 'zero'.
  """
  if loss not in PGD_LOSSES:
    raise ValueError(f"unknown PGD loss {loss!r}; valid choices: {', '.join(PGD_LOSSES)}")
  objective = pgd_lib.from_logits_fn(logits_fn, PGD_LOSSES[loss], labels)
  result = pgd_lib.pgd(objective, x, labels, key, Budget(eps, step_size, num_steps),
                       max_steps=num_steps, init=init, norm=norm, direction=1.0,
                       early_stop=early_stop, restarts=restarts, evaluate_final=True)
  if active is None:
    return AttackResult(result.x_adv, result.correct)
  active = active.astype(bool)
  keep = active.reshape((-1,) + (1,) * (x.ndim - 1))
  return AttackResult(jnp.where(keep, result.x_adv, x), result.correct & active)


def fgsm(logits_fn, x, labels, key, *, eps, norm: str = "linf", init: str = "zero",
         step_size=None, active=None) -> AttackResult:
  """FGSM: one step of size eps (or `step_size`) on CE from x (init='zero'); with
  init='uniform' and step_size=eps it is the random-start FGSM test of FGSM-SDI."""
  return pgd_attack(logits_fn, x, labels, key, eps=eps, num_steps=1,
                    step_size=eps if step_size is None else step_size, norm=norm, loss="ce",
                    init=init, active=active)
