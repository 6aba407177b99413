"""SVHN (cropped digits, format 2) from the original MATLAB files.

The files train_32x32.mat and test_32x32.mat (http://ufldl.stanford.edu/housenumbers/)
hold 'X', uint8 of shape (32, 32, 3, N) (image index last), and 'y', of shape (N, 1)
with labels 1..10 where 10 stands for the digit 0.
"""

from __future__ import annotations

import pathlib

import numpy as np
import scipy.io

from jaxat.data.file_errors import read_data_file
from jaxat.data.file_layout import FileLayout
from jaxat.data.public_datasets import SVHN
from jaxat.data.types import ArrayDataset, DatasetSplits

SVHN_LAYOUT = FileLayout(required_files=("train_32x32.mat", "test_32x32.mat"))

_LABEL_OF_DIGIT_ZERO = 10


def _read_mat(path: pathlib.Path) -> ArrayDataset:
  contents = read_data_file(path, lambda: scipy.io.loadmat(path),
                            "an SVHN cropped-digits .mat file (train_32x32.mat, test_32x32.mat)")
  for key in ("X", "y"):
    if key not in contents:
      raise ValueError(
          f"{path} is not an SVHN cropped-digits file: it lacks the variable {key!r}"
      )
  stacked = np.asarray(contents["X"])
  if stacked.dtype != np.uint8 or stacked.ndim != 4 or stacked.shape[:3] != SVHN.image_shape:
    raise ValueError(
        f"{path}: 'X' must be uint8 of shape (32, 32, 3, N), got "
        f"{stacked.dtype} {stacked.shape}"
    )
  raw_labels = np.asarray(contents["y"]).reshape(-1)
  if raw_labels.shape[0] != stacked.shape[3] or not np.all(
      (raw_labels >= 1) & (raw_labels <= _LABEL_OF_DIGIT_ZERO)
  ):
    found = np.unique(raw_labels).tolist()
    raise ValueError(
        f"{path}: 'y' must hold {stacked.shape[3]} labels in 1..10, got "
        f"{raw_labels.shape[0]} labels with values {found}"
    )
  labels = raw_labels.astype(np.int32)
  labels[labels == _LABEL_OF_DIGIT_ZERO] = 0
  images = np.ascontiguousarray(stacked.transpose(3, 0, 1, 2))
  return ArrayDataset(images, labels)


def load_svhn_folder(folder: pathlib.Path, name: str = "svhn") -> DatasetSplits:
  """SVHN cropped digits from a folder holding train_32x32.mat and test_32x32.mat.

  Args:
    folder: folder holding the two .mat files.
    name: the name recorded in the returned splits.

  Returns:
    DatasetSplits with uint8 (N, 32, 32, 3) images (73257 train / 26032 test for
    the full files; the 'extra' set is not used), int32 labels 0..9 equal to the
    digit shown, and the canonical SVHN mean/std.
  """
  return DatasetSplits(
      name=name,
      train=_read_mat(folder / "train_32x32.mat"),
      test=_read_mat(folder / "test_32x32.mat"),
      num_classes=SVHN.num_classes,
      class_names=SVHN.class_names,
      mean=SVHN.mean,
      std=SVHN.std,
  )
