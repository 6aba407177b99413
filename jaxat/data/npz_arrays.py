"""Any image classification set stored as numpy .npz arrays.

Accepted layouts:
  * one .npz file with `x` and `y`, and optionally `x_test` and `y_test`;
  * a folder with train.npz (`x`, `y`) and optionally test.npz (`x`, `y`).
`x` is uint8 NHWC, or (N, H, W) for grayscale; `y` is any integer dtype. Without test
arrays, a test split of `test_size` examples is carved off with a fixed permutation.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxat.data.channel_statistics import channel_mean_std
from jaxat.data.file_errors import read_data_file
from jaxat.data.types import ArrayDataset, DatasetSplits

TRAIN_FILE_NAME = "train.npz"
TEST_FILE_NAME = "test.npz"
# Fixed so the carved test set never depends on the run seed: every run of every
# method is evaluated on the same held-out images.
_CARVE_SEED = 0


def _as_dataset(images: np.ndarray, labels: np.ndarray, where: str) -> ArrayDataset:
  if images.dtype != np.uint8:
    raise ValueError(
        f"{where}: images must be uint8 (0..255), got dtype {images.dtype}; convert "
        "them with np.clip(np.rint(x), 0, 255).astype(np.uint8) if they are 0..255 "
        "values in another dtype"
    )
  if images.ndim == 3:
    images = images[..., np.newaxis]  # grayscale (N, H, W) -> (N, H, W, 1)
  if images.ndim != 4:
    raise ValueError(
        f"{where}: images must have shape (N, H, W, C) or (N, H, W), got {images.shape}"
    )
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
    raise ValueError(
        f"{where}: labels must be integers of shape (N,), got {labels.dtype} "
        f"{labels.shape}"
    )
  return ArrayDataset(images, labels.astype(np.int32))


def _read_arrays(path: pathlib.Path, image_key: str, label_key: str) -> ArrayDataset:
  def read() -> tuple[list[str], dict[str, np.ndarray]]:
    with np.load(path) as arrays:
      present = [key for key in (image_key, label_key) if key in arrays.files]
      return list(arrays.files), {key: arrays[key] for key in present}

  files, loaded = read_data_file(path, read, "an .npz archive of numpy arrays")
  missing = [key for key in (image_key, label_key) if key not in loaded]
  if missing:
    raise ValueError(f"{path} lacks the arrays {missing}; it holds {sorted(files)}")
  return _as_dataset(loaded[image_key], loaded[label_key], f"{path}[{image_key!r}]")


def _has_test_arrays(path: pathlib.Path) -> bool:
  def read() -> set[str]:
    with np.load(path) as arrays:
      return {"x_test", "y_test"} & set(arrays.files)

  present = read_data_file(path, read, "an .npz archive of numpy arrays")
  if len(present) == 1:
    raise ValueError(
        f"{path} holds {present.pop()!r} without its partner; a test split needs "
        "both 'x_test' and 'y_test'"
    )
  return bool(present)


def _subset(dataset: ArrayDataset, indices: np.ndarray) -> ArrayDataset:
  return ArrayDataset(dataset.images[indices], dataset.labels[indices])


def carve_test_split(
    dataset: ArrayDataset, test_size: int, where: str = "a file without test arrays"
) -> tuple[ArrayDataset, ArrayDataset]:
  """Splits off a test set with a permutation fixed by seed 0.

  The test set is the last `test_size` entries of
  `np.random.default_rng(0).permutation(len(dataset))`; both parts keep the
  original relative order of their examples.

  Args:
    dataset: the examples to split.
    test_size: number of test examples, 0 < test_size < len(dataset).
    where: the data's file, named in the error message.

  Returns:
    (train, test) with len(train) + len(test) == len(dataset).
  """
  if isinstance(test_size, bool) or not isinstance(test_size, (int, np.integer)):
    raise ValueError(f"test_size must be an int, got {test_size!r}")
  if not 0 < test_size < len(dataset):
    raise ValueError(
        f"dataset.test_size={test_size} is invalid for {where} (no test arrays, "
        f"{len(dataset)} examples): it must lie in [1, {len(dataset) - 1}]"
    )
  permutation = np.random.default_rng(_CARVE_SEED).permutation(len(dataset))
  split_at = len(dataset) - test_size
  train_indices = np.sort(permutation[:split_at])
  test_indices = np.sort(permutation[split_at:])
  return _subset(dataset, train_indices), _subset(dataset, test_indices)


def _read_splits(path: pathlib.Path, test_size: int) -> tuple[ArrayDataset, ArrayDataset]:
  if path.is_dir():
    train_path, test_path = path / TRAIN_FILE_NAME, path / TEST_FILE_NAME
    if not train_path.is_file():
      raise FileNotFoundError(
          f"npz data folder {path} has no {TRAIN_FILE_NAME} (looked at {train_path}); "
          f"put arrays 'x' and 'y' in {TRAIN_FILE_NAME} (and optionally "
          f"{TEST_FILE_NAME}), or point data_dir at a single .npz file"
      )
    train = _read_arrays(train_path, "x", "y")
    if test_path.is_file():
      return train, _read_arrays(test_path, "x", "y")
    return carve_test_split(train, test_size, str(train_path))
  train = _read_arrays(path, "x", "y")
  if _has_test_arrays(path):
    return train, _read_arrays(path, "x_test", "y_test")
  return carve_test_split(train, test_size, str(path))


def _checked_class_count(path: pathlib.Path, train: ArrayDataset, test: ArrayDataset) -> int:
  """The number of classes, largest label + 1, once the labels are known to be 0..K-1 with
  every class present in one of the splits: one stray label (say 100000) would otherwise
  build a 100001-way classifier without a word."""
  labels = np.concatenate([train.labels, test.labels])
  if labels.min() < 0:
    raise ValueError(f"{path}: labels must be class indices 0..K-1, found {int(labels.min())}")
  num_classes = int(labels.max()) + 1
  present = np.unique(labels)
  if len(present) < num_classes:
    absent = sorted(set(range(num_classes)) - set(present.tolist()))
    shown = ", ".join(str(a) for a in absent[:5]) + (", ..." if len(absent) > 5 else "")
    raise ValueError(
        f"{path}: labels must be 0..K-1 with no class missing; the largest label "
        f"{num_classes - 1} implies {num_classes} classes but {len(absent)} of them have no "
        f"example in either split ({shown}); relabel the data")
  return num_classes


def load_npz(data_path: str, test_size: int, name: str = "npz") -> DatasetSplits:
  """Train and test splits from a .npz file or a folder of train.npz / test.npz.

  Args:
    data_path: a .npz file, or a folder holding train.npz and optionally test.npz.
    test_size: size of the carved test split when no test arrays exist; ignored
      otherwise.
    name: the name recorded in the returned splits.

  Returns:
    DatasetSplits with uint8 NHWC images, int32 labels, num_classes = largest label
    over both splits + 1 (every class 0..K-1 must occur in one of them), class names '0'..'num_classes-1' and mean/std computed
    from the training images scaled to [0, 1].
  """
  if not data_path:
    raise ValueError(
        "dataset 'npz' needs data_dir: the path of a .npz file (arrays 'x', 'y', "
        f"optionally 'x_test', 'y_test') or of a folder holding {TRAIN_FILE_NAME} "
        f"and {TEST_FILE_NAME}"
    )
  path = pathlib.Path(os.path.expanduser(data_path))
  if not path.exists():
    raise FileNotFoundError(
        f"npz data not found: looked at {path}; set data_dir to a .npz file with "
        f"arrays 'x', 'y' or to a folder holding {TRAIN_FILE_NAME} and {TEST_FILE_NAME}"
    )
  train, test = _read_splits(path, test_size)
  if train.images.shape[1:] != test.images.shape[1:]:
    raise ValueError(
        f"{path}: train images have shape (H, W, C) {train.images.shape[1:]} but test "
        f"images have {test.images.shape[1:]}"
    )
  if len(train) == 0:
    raise ValueError(f"{path}: the training arrays are empty")
  num_classes = _checked_class_count(path, train, test)
  mean, std = channel_mean_std(train.images)
  return DatasetSplits(
      name=name,
      train=train,
      test=test,
      num_classes=num_classes,
      class_names=tuple(str(index) for index in range(num_classes)),
      mean=mean,
      std=std,
  )
