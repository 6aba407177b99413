"""Attack initialisations: where the search starts.

Each initialiser returns a starting point x_0 of the same shape as the clean batch x
(B,H,W,C) in [0,1]. Radii are scalars or (B,) arrays in pixel units. `key` is a single
typed key (one draw for the batch) or a (B,) batch of keys (one draw per example, see
rng.py); a single key gives the same draws as jax.random on the batch shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxat.attacks import rng
from jaxat.attacks.budget import per_example
from jaxat.attacks.projections import clip_to_image, l2_norm

INITS = ("uniform", "normal", "zero")


def uniform_linf(key: jax.Array, x: jax.Array, eps) -> jax.Array:
  """x + U(-eps, eps) per element, clipped to [0,1] (Madry/Rice random start)."""
  eps = per_example(eps, x)
  noise = rng.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps
  return clip_to_image(x + noise)


def uniform_l2(key: jax.Array, x: jax.Array, eps) -> jax.Array:
  """x + a point uniform in the L2 ball of radius eps (direction ~ N(0,I), radius ~ eps*u^(1/d))."""
  direction_key, radius_key = rng.split(key)
  direction = rng.normal(direction_key, x.shape, x.dtype)
  direction = direction / (l2_norm(direction) + 1e-12)
  dim = x[0].size
  radius = rng.uniform(radius_key, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype) ** (1.0 / dim)
  return clip_to_image(x + per_example(eps, x) * radius * direction)


def normal(key: jax.Array, x: jax.Array, scale: float = 0.001) -> jax.Array:
  """x + scale * N(0, 1) (TRADES/MART/UIAT start). Not clipped, as in the official codes;
  the first projection of the driver brings it back to the box."""
  return x + scale * rng.normal(key, x.shape, x.dtype)


def zero(key: jax.Array, x: jax.Array) -> jax.Array:
  """x itself (FGSM, GradAlign). `key` is unused; kept for a uniform signature."""
  del key
  return x


def scaled_uniform_linf(key: jax.Array, x: jax.Array, eps) -> jax.Array:
  """AutoAttack's APGD L-inf start (docs/evaluation.md#apgd-ce-and-apgd-t):
  t = 2u - 1 with u ~ U[0,1)^d, then
  clip(x + eps * t / (max_i |t_i| + 1e-12), 0, 1).

  The noise is rescaled per example so that its largest coordinate has magnitude exactly
  eps; it is not plain U(-eps, eps).
  """
  t = 2.0 * rng.uniform(key, x.shape, x.dtype) - 1.0
  largest = jnp.max(jnp.abs(t).reshape(x.shape[0], -1), axis=1)
  return clip_to_image(x + per_example(eps, x) * (t / (per_example(largest, x) + 1e-12)))


def sphere_l2(key: jax.Array, x: jax.Array, eps) -> jax.Array:
  """AutoAttack's APGD L2 start (docs/evaluation.md#apgd-ce-and-apgd-t):
  t ~ N(0, I), then
  clip(x + eps * t / (||t||_2 + 1e-12), 0, 1): on the sphere of radius eps before the clip."""
  t = rng.normal(key, x.shape, x.dtype)
  return clip_to_image(x + per_example(eps, x) * (t / (l2_norm(t) + 1e-12)))


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
