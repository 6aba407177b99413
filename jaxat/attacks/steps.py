"""Step rules: how a gradient becomes a perturbation update.

`direction` is +1 to ascend the objective (adversarial examples) and -1 to descend it
(inverse adversarial examples). Step sizes are scalars or (B,) arrays in pixel units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxat.attacks.budget import per_example
from jaxat.attacks.projections import l2_norm


def sign_step(grad: jax.Array, step_size, direction: float = 1.0) -> jax.Array:
  """L-inf steepest step: direction * step_size * sign(grad); sign(0) = 0."""
  return direction * per_example(step_size, grad) * jnp.sign(grad)


def l2_step(grad: jax.Array, step_size, direction: float = 1.0) -> jax.Array:
  """L2 steepest step: direction * step_size * grad / ||grad||_2 per example."""
  return direction * per_example(step_size, grad) * grad / (l2_norm(grad) + 1e-12)


def step(norm: str, grad: jax.Array, step_size, direction: float = 1.0) -> jax.Array:
  if norm == "linf":
    return sign_step(grad, step_size, direction)
  if norm == "l2":
    return l2_step(grad, step_size, direction)
  raise ValueError(f"unknown norm {norm!r}; valid choices: linf, l2")
