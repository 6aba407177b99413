"""Per-channel mean and standard deviation of uint8 images, as seen by the model."""

from __future__ import annotations

import numpy as np

# Images are reduced a block at a time so that a 50k CIFAR split never needs a
# float64 copy of the whole array (1.2 GB) just to compute six numbers.
_IMAGES_PER_BLOCK = 4096
# A constant channel carries no information; flooring its std at one grey level
# keeps normalisation finite (it maps the channel to 0) instead of dividing by 0.
_MIN_STD = 1.0 / 255.0


def channel_mean_std(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Mean and population standard deviation per channel of `images / 255`.

  Args:
    images: uint8 array of shape (N, H, W, C), N >= 1.

  Returns:
    (mean, std), each a tuple of C Python floats, in units of the [0, 1] scale;
    std is at least 1/255.
  """
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(
        f"need a non-empty (N, H, W, C) image array, got shape {images.shape}"
    )
  channels = images.shape[-1]
  pixel_sum = np.zeros(channels, np.float64)
  pixel_square_sum = np.zeros(channels, np.float64)
  for start in range(0, images.shape[0], _IMAGES_PER_BLOCK):
    block = images[start : start + _IMAGES_PER_BLOCK].reshape(-1, channels)
    block = block.astype(np.float64) / 255.0
    pixel_sum += block.sum(axis=0)
    pixel_square_sum += np.square(block).sum(axis=0)
  count = images.shape[0] * images.shape[1] * images.shape[2]
  mean = pixel_sum / count
  # E[x^2] - E[x]^2 can dip a hair below zero for constant channels; clamp it.
  variance = np.maximum(pixel_square_sum / count - np.square(mean), 0.0)
  std = np.maximum(np.sqrt(variance), _MIN_STD)
  return tuple(float(value) for value in mean), tuple(float(value) for value in std)
