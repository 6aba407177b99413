"""Activation functions selectable by name from a model config."""

from typing import Callable

import jax
import jax.numpy as jnp

ACTIVATION_NAMES = ('relu', 'silu')

_ACTIVATIONS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    'relu': jax.nn.relu,
    'silu': jax.nn.silu,
}


def activation_fn(name: str) -> Callable[[jnp.ndarray], jnp.ndarray]:
  """Returns the elementwise activation called `name` (one of ACTIVATION_NAMES)."""
  if name not in _ACTIVATIONS:
    raise ValueError(
        f'Unknown activation {name!r}; valid choices: {ACTIVATION_NAMES}.')
  return _ACTIVATIONS[name]
