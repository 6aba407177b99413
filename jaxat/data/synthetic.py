"""A generated, learnable image classification task of any shape and class count.

Each class owns a fixed random template image; an example is its class template plus
Gaussian pixel noise. A classifier can fit this quickly, which makes it the dataset
of choice for smoke tests and benchmarks of the training machinery.
"""

from __future__ import annotations

import numpy as np

from jaxat.data.channel_statistics import channel_mean_std
from jaxat.data.types import ArrayDataset, DatasetSplits

# Noise is a fraction of the template contrast: classes overlap pixel-wise but stay
# separable from the whole image, so accuracy is high but not instant.
_TEMPLATE_LOW, _TEMPLATE_HIGH = 40.0, 215.0
_NOISE_STD = 40.0


def make_synthetic_splits(
    num_train: int,
    num_test: int,
    image_size: int,
    channels: int,
    num_classes: int,
    name: str = "synthetic",
) -> DatasetSplits:
  """Deterministic template-plus-noise train and test splits.

  The generator seed is derived from the five sizes only, never from a run seed, so
  the same request always returns the same pixels. Labels are balanced: example i
  of a split has class i mod num_classes before shuffling.

  Args:
    num_train: number of training examples, >= 1.
    num_test: number of test examples, >= 1.
    image_size: height and width of the square images, >= 1.
    channels: number of channels, >= 1.
    num_classes: number of classes, >= 2.
    name: the name recorded in the returned splits.

  Returns:
    DatasetSplits with uint8 images (N, image_size, image_size, channels), int32
    labels, class names '0'..'num_classes-1', and mean/std computed from train.
  """
  sizes = {
      "num_train": (num_train, 1),
      "num_test": (num_test, 1),
      "image_size": (image_size, 1),
      "channels": (channels, 1),
      "num_classes": (num_classes, 2),
  }
  for field, (value, minimum) in sizes.items():
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
      raise ValueError(
          f"synthetic dataset needs an integer {field} >= {minimum}, got {value!r}"
      )
  rng = np.random.default_rng([num_train, num_test, image_size, channels, num_classes])
  shape = (image_size, image_size, channels)
  templates = rng.uniform(_TEMPLATE_LOW, _TEMPLATE_HIGH, size=(num_classes, *shape))

  def sample(count: int) -> ArrayDataset:
    labels = rng.permutation(np.arange(count) % num_classes).astype(np.int32)
    noise = rng.normal(0.0, _NOISE_STD, size=(count, *shape))
    pixels = np.clip(np.rint(templates[labels] + noise), 0, 255)
    return ArrayDataset(pixels.astype(np.uint8), labels)

  train = sample(num_train)
  test = sample(num_test)
  mean, std = channel_mean_std(train.images)
  return DatasetSplits(
      name=name,
      train=train,
      test=test,
      num_classes=int(num_classes),
      class_names=tuple(str(index) for index in range(num_classes)),
      mean=mean,
      std=std,
  )
