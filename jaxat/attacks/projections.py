"""Per-example projections onto the threat model intersected with the image box [0,1].

All functions take the clean batch `x` (B,H,W,C) in [0,1], a candidate `x_adv` of the same
shape and a radius `eps` (scalar or (B,), pixel units), and return a point that is inside
the eps-ball around x *and* inside [0,1]: never outside the image box.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxat.attacks.budget import per_example

NORMS = ("linf", "l2")


def clip_to_image(x_adv: jax.Array) -> jax.Array:
  return jnp.clip(x_adv, 0.0, 1.0)


def project_linf(x: jax.Array, x_adv: jax.Array, eps) -> jax.Array:
  """Pi_img(x + clip(x_adv - x, -eps, eps)); per-example eps."""
  eps = per_example(eps, x)
  return clip_to_image(jnp.clip(x_adv, x - eps, x + eps))


def l2_norm(v: jax.Array) -> jax.Array:
  """Per-example L2 norm of a batch, shape (B, 1, 1, 1)."""
  return jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(1, v.ndim)), keepdims=True))


def project_l2(x: jax.Array, x_adv: jax.Array, eps) -> jax.Array:
  """Scales x_adv - x back onto the L2 ball of radius eps, then clips to [0,1].

  Clipping to the box after projecting onto the ball keeps the point inside both because
  clipping towards x (which is in the box) never increases the distance to x.
  """
  eps = per_example(eps, x)
  delta = x_adv - x
  norm = l2_norm(delta)
  factor = jnp.minimum(1.0, eps / (norm + 1e-12))
  return clip_to_image(x + delta * factor)


def project(norm: str, x: jax.Array, x_adv: jax.Array, eps) -> jax.Array:
  if norm == "linf":
    return project_linf(x, x_adv, eps)
  if norm == "l2":
    return project_l2(x, x_adv, eps)
  raise ValueError(f"unknown norm {norm!r}; valid choices: {', '.join(NORMS)}")
