"""PRNG streams derived from the seed with fold_in, so a resumed run is bit-identical.

root = key(seed); each consumer folds in its own stream id, then the index that makes
its draw unique (epoch, global step, evaluation batch). No key is ever stored.
"""

from __future__ import annotations

import jax

INIT, PERMUTATION, STEP, EVAL, VALIDATION, FINAL_EVAL, GUARD, EXTRA = range(8)
# EXTRA seeds numpy's generator for the extra-data rows of each step (host_input.extra_rows).


def root_key(seed: int) -> jax.Array:
  return jax.random.key(seed)


def stream(seed: int, stream_id: int) -> jax.Array:
  return jax.random.fold_in(root_key(seed), stream_id)
