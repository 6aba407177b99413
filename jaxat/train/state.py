"""The training state: one explicit pytree, saved whole in every checkpoint.

Randomness is not state: every key is derived from the seed with fold_in (train/keys.py).
"""

from __future__ import annotations

import hashlib
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class TrainState:
  """step: int32 scalar, optimiser steps taken so far (the global step).
  params, batch_stats: the classifier's variables ({} when the model has no BatchNorm).
  opt_state: the optax state.
  ema_params, ema_batch_stats: exponential moving averages ({} when EMA is off).
  method_state: the method's per-role state (per-example buffers indexed by dataset index,
    class-wise perturbations, auxiliary networks and their optimiser states).
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any
  ema_batch_stats: Any
  method_state: Any


def ema_update(ema: Any, new: Any, decay: float) -> Any:
  """ema <- decay * ema + (1 - decay) * new, leaf by leaf."""
  return jax.tree.map(lambda e, n: decay * e + (1.0 - decay) * n, ema, new)


def fingerprint(tree: Any) -> str:
  """A short, order-stable hash of a pytree's leaves (paths, dtypes, shapes and bytes).

  Two runs agree on the fingerprint iff their parameters agree bit for bit.
  """
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    array = np.asarray(jax.device_get(leaf))
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(str(array.dtype).encode())
    digest.update(str(array.shape).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()[:16]


def model_fingerprint(state: TrainState) -> str:
  """Fingerprint of the classifier (params and BatchNorm statistics)."""
  return fingerprint({"params": state.params, "batch_stats": state.batch_stats})


def zeros_like_tree(tree: Any) -> Any:
  return jax.tree.map(jnp.zeros_like, tree)
