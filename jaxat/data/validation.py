"""A held-out validation split carved from the training set."""

from __future__ import annotations

import numpy as np

from jaxat.data.types import ArrayDataset


def split_validation(
    train: ArrayDataset, val_size: int, seed: int
) -> tuple[ArrayDataset, ArrayDataset | None]:
  """Moves `val_size` training examples, chosen by `seed`, into a validation set.

  The validation set is the first `val_size` indices of
  `np.random.default_rng(seed).permutation(len(train))`, in that permuted order; the
  remaining training examples keep their original relative order, so both parts
  are a deterministic function of (train, val_size, seed).

  Args:
    train: the full training set.
    val_size: number of validation examples, 0 <= val_size < len(train).
    seed: seed of the permutation that picks the validation examples.

  Returns:
    (remaining_train, validation); (train, None) when val_size == 0.
  """
  if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)):
    raise ValueError(f"val_size must be an int, got {val_size!r}")
  if not 0 <= val_size < len(train):
    raise ValueError(
        f"val_size={val_size} is invalid for a training set of {len(train)} examples: "
        f"it must lie in [0, {len(train) - 1}] (0 disables validation)"
    )
  if val_size == 0:
    return train, None
  permutation = np.random.default_rng(seed).permutation(len(train))
  validation_indices = permutation[:val_size]
  remaining_indices = np.sort(permutation[val_size:])
  validation = ArrayDataset(train.images[validation_indices], train.labels[validation_indices])
  remaining = ArrayDataset(train.images[remaining_indices], train.labels[remaining_indices])
  return remaining, validation
