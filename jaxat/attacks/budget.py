"""The attack budget: per-example radius, step size and step count.

A budget answers "which epsilon, step size and number of steps for each example?" (the
*budget* role of docs/architecture.md#roles). Fixed-budget methods give scalars; ECAS and LAS-AT
give arrays of shape (B,). Radii and step sizes are in [0,1] pixel units (8/255 ≈ 0.0314).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Budget(NamedTuple):
  """Per-example attack budget.

  Attributes:
    eps: radius, scalar or (B,), pixel units.
    step_size: step length, scalar or (B,), pixel units (L-inf) or L2 length.
    num_steps: integer step count, scalar or (B,); the driver runs max(num_steps) steps and
      masks examples whose own count is exhausted.
  """

  eps: jax.Array | float
  step_size: jax.Array | float
  num_steps: jax.Array | int


def per_example(value, like: jax.Array) -> jax.Array:
  """Broadcasts a scalar or (B,) value against an NHWC batch `like` as (B, 1, 1, 1)."""
  value = jnp.asarray(value, dtype=like.dtype)
  if value.ndim == 0:
    return jnp.broadcast_to(value, (like.shape[0],) + (1,) * (like.ndim - 1))
  if value.shape != (like.shape[0],):
    raise ValueError(f"per-example value must be a scalar or shape ({like.shape[0]},), got {value.shape}")
  return value.reshape((like.shape[0],) + (1,) * (like.ndim - 1))
