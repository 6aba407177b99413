"""Per-channel input standardisation performed inside the models.

Attacks perturb images in [0, 1] pixel units (epsilon is given in those units), so the
dataset mean/std standardisation has to be part of the differentiated model rather
than of the data pipeline.
"""

from typing import Sequence

import jax.numpy as jnp


def is_identity_normalization(mean: Sequence[float], std: Sequence[float]) -> bool:
  """True when (x - mean) / std leaves x unchanged (all means 0 and all stds 1)."""
  return all(m == 0 for m in mean) and all(s == 1 for s in std)


def check_normalization_stats(mean: Sequence[float], std: Sequence[float]) -> None:
  """Raises ValueError unless mean and std have equal length and every std is > 0."""
  if len(mean) != len(std):
    raise ValueError(
        f'mean {tuple(mean)} and std {tuple(std)} must have one entry per channel '
        f'(got {len(mean)} and {len(std)} entries).')
  if not all(s > 0 for s in std):
    raise ValueError(f'std {tuple(std)} must be strictly positive in every channel.')


def normalize_input(x: jnp.ndarray, mean: Sequence[float],
                    std: Sequence[float]) -> jnp.ndarray:
  """Standardises NHWC pixels x in [0, 1] channel-wise: (x - mean) / std.

  Args:
    x: (B, H, W, C) float32 images in [0, 1].
    mean: C per-channel means, in [0, 1] pixel units.
    std: C per-channel standard deviations, in [0, 1] pixel units.

  Returns:
    (B, H, W, C) standardised images; x itself when mean/std are the identity.
  """
  check_normalization_stats(mean, std)
  if is_identity_normalization(mean, std):
    return x
  if len(mean) != x.shape[-1]:
    raise ValueError(
        f'mean/std have {len(mean)} channels but the input has {x.shape[-1]} '
        f'(input shape {x.shape}, expected NHWC).')
  return (x - jnp.asarray(mean, x.dtype)) / jnp.asarray(std, x.dtype)
