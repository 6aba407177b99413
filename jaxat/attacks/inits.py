"""Attack initialisations: where the search starts.

Each initialiser returns a starting point x_0 of the same shape as the clean batch x
(B,H,W,C) in [0,1]. Radii are scalars or (B,) arrays in pixel units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxat.attacks.budget import per_example
from jaxat.attacks.projections import clip_to_image, l2_norm

INITS = ("uniform", "normal", "zero")


def uniform_linf(key: jax.Array, x: jax.Array, eps) -> jax.Array:
  """x + U(-eps, eps) per element, clipped to [0,1] (Madry/Rice random start)."""
  eps = per_example(eps, x)
  noise = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps
  return clip_to_image(x + noise)


def uniform_l2(key: jax.Array, x: jax.Array, eps) -> jax.Array:
  """x + a point uniform in the L2 ball of radius eps (direction ~ N(0,I), radius ~ eps*u^(1/d))."""
  direction_key, radius_key = jax.random.split(key)
  direction = jax.random.normal(direction_key, x.shape, x.dtype)
  direction = direction / (l2_norm(direction) + 1e-12)
  dim = x[0].size
  radius = jax.random.uniform(radius_key, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype) ** (1.0 / dim)
  return clip_to_image(x + per_example(eps, x) * radius * direction)


def normal(key: jax.Array, x: jax.Array, scale: float = 0.001) -> jax.Array:
  """x + scale * N(0, 1) (TRADES/MART/UIAT start). Not clipped, as in the official codes;
  the first projection of the driver brings it back to the box."""
  return x + scale * jax.random.normal(key, x.shape, x.dtype)


def zero(key: jax.Array, x: jax.Array) -> jax.Array:
  """x itself (FGSM, GradAlign). `key` is unused; kept for a uniform signature."""
  del key
  return x


def initialise(name: str, key: jax.Array, x: jax.Array, eps, norm: str = "linf") -> jax.Array:
  """Dispatches on the init name: 'uniform' (in the norm's ball), 'normal' (0.001·N(0,1)), 'zero'."""
  if name == "uniform":
    if norm == "linf":
      return uniform_linf(key, x, eps)
    if norm == "l2":
      return uniform_l2(key, x, eps)
    raise ValueError(f"unknown norm {norm!r}; valid choices: linf, l2")
  if name == "normal":
    return normal(key, x)
  if name == "zero":
    return zero(key, x)
  raise ValueError(f"unknown attack init {name!r}; valid choices: {', '.join(INITS)}")
