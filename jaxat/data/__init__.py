"""Data: datasets in host memory (uint8 NHWC) and on-device augmentation.

  load_dataset      config -> DatasetSplits (digits, synthetic, CIFAR-10/100, SVHN, npz,
                    Tiny-ImageNet)
  split_validation  a seeded held-out validation split of the training set
  augment_batch     random crop + flip, pure JAX
"""

from jaxat.data.augment import PADDING_MODES, augment_batch, random_crop, random_flip
from jaxat.data.registry import DATASET_NAMES, SOURCES, load_dataset
from jaxat.data.types import ArrayDataset, DatasetSplits
from jaxat.data.validation import split_validation

__all__ = [
    "ArrayDataset",
    "DATASET_NAMES",
    "DatasetSplits",
    "PADDING_MODES",
    "SOURCES",
    "augment_batch",
    "load_dataset",
    "random_crop",
    "random_flip",
    "split_validation",
]
