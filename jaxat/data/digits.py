"""The 8x8 handwritten digits bundled with scikit-learn: real data with no download."""

from __future__ import annotations

import numpy as np

from jaxat.data.channel_statistics import channel_mean_std
from jaxat.data.types import ArrayDataset, DatasetSplits

# The bundled pixels are counts of set cells in a 4x4 block, 0..16.
_MAX_RAW_VALUE = 16
_TEST_FRACTION = 0.2
# Fixed so the split is the same for every run seed: results stay comparable.
_SPLIT_RANDOM_STATE = 0


def load_digits_splits(name: str = "digits") -> DatasetSplits:
  """The 1797 scikit-learn digits as a fixed stratified 1437 / 360 train/test split.

  Args:
    name: the name recorded in the returned splits.

  Returns:
    DatasetSplits with uint8 images of shape (N, 8, 8, 1), values 0..255
    (raw value v becomes round(v * 255 / 16)), int32 labels 0..9, class names
    '0'..'9', and mean/std computed from the training images scaled to [0, 1].
  """
  # Imported on use: scikit-learn takes seconds to import, and most runs never read digits.
  import sklearn.datasets
  import sklearn.model_selection

  bunch = sklearn.datasets.load_digits()
  raw = np.asarray(bunch.images, dtype=np.float64)  # (1797, 8, 8), 0..16
  images = np.rint(raw * 255.0 / _MAX_RAW_VALUE).astype(np.uint8)[..., np.newaxis]
  labels = np.asarray(bunch.target, dtype=np.int32)
  train_images, test_images, train_labels, test_labels = (
      sklearn.model_selection.train_test_split(
          images,
          labels,
          test_size=_TEST_FRACTION,
          random_state=_SPLIT_RANDOM_STATE,
          stratify=labels,
      )
  )
  train = ArrayDataset(np.ascontiguousarray(train_images), train_labels)
  test = ArrayDataset(np.ascontiguousarray(test_images), test_labels)
  mean, std = channel_mean_std(train.images)
  return DatasetSplits(
      name=name,
      train=train,
      test=test,
      num_classes=10,
      class_names=tuple(str(digit) for digit in range(10)),
      mean=mean,
      std=std,
  )
