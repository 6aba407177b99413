"""In-memory dataset containers shared by every data source.

Images are kept as uint8 NHWC in host memory: four times smaller than float32 and
exactly what the original archives hold. Scaling to [0, 1] and normalisation happen
on the device, inside the jitted step.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """A labelled image set held in host memory.

  Attributes:
    images: uint8 array of shape (N, H, W, C), pixel values 0..255 (NHWC).
    labels: int32 array of shape (N,), class indices.
  """

  images: np.ndarray
  labels: np.ndarray

  def __post_init__(self):
    if not isinstance(self.images, np.ndarray) or not isinstance(self.labels, np.ndarray):
      raise ValueError(
          "ArrayDataset needs numpy arrays, got images of type "
          f"{type(self.images).__name__} and labels of type {type(self.labels).__name__}"
      )
    if self.images.dtype != np.uint8:
      raise ValueError(f"images must have dtype uint8 (0..255), got {self.images.dtype}")
    if self.images.ndim != 4:
      raise ValueError(
          f"images must have rank 4 (N, H, W, C), got shape {self.images.shape}"
      )
    if self.labels.dtype != np.int32:
      raise ValueError(f"labels must have dtype int32, got {self.labels.dtype}")
    if self.labels.ndim != 1:
      raise ValueError(f"labels must have shape (N,), got shape {self.labels.shape}")
    if self.images.shape[0] != self.labels.shape[0]:
      raise ValueError(
          f"images and labels differ in length: {self.images.shape[0]} images, "
          f"{self.labels.shape[0]} labels"
      )

  def __len__(self) -> int:
    return int(self.images.shape[0])


@dataclasses.dataclass(frozen=True)
class DatasetSplits:
  """A dataset's train and test splits plus the facts a model needs about it.

  Attributes:
    name: the dataset's name as configured, e.g. 'cifar10'.
    train: the training split.
    test: the test split; same image shape as train.
    num_classes: number of classes; every label lies in [0, num_classes).
    class_names: one human-readable name per class, indexed by label.
    mean: per-channel mean of the inputs scaled to [0, 1], length C.
    std: per-channel standard deviation of the inputs scaled to [0, 1], length C,
      all positive.
  """

  name: str
  train: ArrayDataset
  test: ArrayDataset
  num_classes: int
  class_names: tuple[str, ...]
  mean: tuple[float, ...]
  std: tuple[float, ...]

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name:
      raise ValueError(f"name must be a non-empty string, got {self.name!r}")
    for split_name, split in (("train", self.train), ("test", self.test)):
      if not isinstance(split, ArrayDataset):
        raise ValueError(
            f"{split_name} must be an ArrayDataset, got {type(split).__name__}"
        )
    if self.train.images.shape[1:] != self.test.images.shape[1:]:
      raise ValueError(
          "train and test images differ in shape (H, W, C): "
          f"{self.train.images.shape[1:]} vs {self.test.images.shape[1:]}"
      )
    if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
      raise ValueError(f"num_classes must be an int, got {self.num_classes!r}")
    if self.num_classes < 1:
      raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
    if len(self.class_names) != self.num_classes:
      raise ValueError(
          f"class_names has {len(self.class_names)} entries but num_classes is "
          f"{self.num_classes}"
      )
    for split_name, split in (("train", self.train), ("test", self.test)):
      if len(split) == 0:
        continue
      low, high = int(split.labels.min()), int(split.labels.max())
      if low < 0 or high >= self.num_classes:
        raise ValueError(
            f"{split_name} labels span [{low}, {high}] but must lie in "
            f"[0, {self.num_classes}) for num_classes={self.num_classes}"
        )
    channels = self.image_shape[2]
    if len(self.mean) != channels or len(self.std) != channels:
      raise ValueError(
          f"mean and std need one value per channel ({channels}), got "
          f"mean={self.mean} and std={self.std}"
      )
    if any(not value > 0 for value in self.std):
      raise ValueError(f"std must be positive in every channel, got {self.std}")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of every image in both splits."""
    height, width, channels = self.train.images.shape[1:]
    return int(height), int(width), int(channels)
