"""PRNG keys of attacks: one key for the whole batch, or one key per example.

A single key (shape ()) draws the batch's noise in one call, as the PyTorch references do;
the draw of example i then depends on the batch it sits in. A batch of keys (shape (B,),
one typed key per example) draws each example's noise from its own key, so an example's
random start depends only on (seed, attack, example index): results do not change with
the batch size, the padding, or which other examples are still being attacked. The
evaluator uses per-example keys for the gradient attacks.

Keys are typed JAX keys (`jax.random.key`); legacy raw uint32 keys are accepted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def is_per_example(key: jax.Array) -> bool:
  """True for a (B,) batch of typed keys, False for a single key.

  Legacy raw uint32 keys (jax.random.PRNGKey, shape (2,)) count as a single key and (B, 2)
  as a batch, so callers that still use them keep working.
  """
  base_ndim = 0 if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else 1
  if key.ndim not in (base_ndim, base_ndim + 1):
    raise ValueError(f"expected a single PRNG key or a (B,) batch of keys, got shape {key.shape}")
  return key.ndim == base_ndim + 1


def fold_in(key: jax.Array, data) -> jax.Array:
  """jax.random.fold_in for a single key or for every key of a batch."""
  if is_per_example(key):
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(key, data)
  return jax.random.fold_in(key, data)


def split(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Two independent keys (or key batches) from one."""
  if is_per_example(key):
    pair = jax.vmap(jax.random.split)(key)
    return pair[:, 0], pair[:, 1]
  first, second = jax.random.split(key)
  return first, second


def example_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
  """(B,) keys fold_in(key, index) for integer example indices of shape (B,)."""
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)


def uniform(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32, minval=0.0,
            maxval=1.0) -> jax.Array:
  """U[minval, maxval) of `shape` (leading axis B); per-example keys draw row by row."""
  if is_per_example(key):
    if key.shape[0] != shape[0]:
      raise ValueError(f"{key.shape[0]} keys for a batch of {shape[0]} examples")
    return jax.vmap(lambda k: jax.random.uniform(k, shape[1:], dtype, minval, maxval))(key)
  return jax.random.uniform(key, shape, dtype, minval, maxval)


def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """N(0, 1) of `shape` (leading axis B); per-example keys draw row by row."""
  if is_per_example(key):
    if key.shape[0] != shape[0]:
      raise ValueError(f"{key.shape[0]} keys for a batch of {shape[0]} examples")
    return jax.vmap(lambda k: jax.random.normal(k, shape[1:], dtype))(key)
  return jax.random.normal(key, shape, dtype)
