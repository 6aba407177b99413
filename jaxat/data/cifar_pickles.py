"""CIFAR-10 and CIFAR-100 from the original "python version" archives.

The archives (cifar-10-python.tar.gz, cifar-100-python.tar.gz from
https://www.cs.toronto.edu/~kriz/cifar.html) extract to folders of pickled dicts.
Each dict holds b'data', a uint8 (N, 3072) array whose rows are one image in
channel-major (C, H, W) order: 1024 red, then 1024 green, then 1024 blue bytes, each
plane row-major.
"""

from __future__ import annotations

import pathlib
import pickle

import numpy as np

from jaxat.data.file_errors import read_data_file
from jaxat.data.file_layout import FileLayout
from jaxat.data.public_datasets import CIFAR10, CIFAR100
from jaxat.data.types import ArrayDataset, DatasetSplits

_CIFAR10_TRAIN_FILES = tuple(f"data_batch_{index}" for index in range(1, 6))
CIFAR10_LAYOUT = FileLayout(
    required_files=(*_CIFAR10_TRAIN_FILES, "test_batch", "batches.meta"),
    archive_folder="cifar-10-batches-py",
)
CIFAR100_LAYOUT = FileLayout(
    required_files=("train", "test", "meta"),
    archive_folder="cifar-100-python",
)

_CHANNELS, _SIDE = 3, 32


def _read_pickle(path: pathlib.Path) -> dict:
  # The archives were pickled by Python 2; 'bytes' keeps their str keys as bytes.
  def read() -> dict:
    with open(path, "rb") as file:
      return pickle.load(file, encoding="bytes")

  return read_data_file(path, read, "a pickled CIFAR batch (cifar-10/100-python archives)")


def _batch_to_dataset(path: pathlib.Path, label_key: bytes) -> ArrayDataset:
  batch = _read_pickle(path)
  for key in (b"data", label_key):
    if key not in batch:
      raise ValueError(
          f"{path} is not a CIFAR batch: it lacks the key {key!r} "
          f"(keys present: {sorted(batch)})"
      )
  rows = np.asarray(batch[b"data"])
  if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != _CHANNELS * _SIDE * _SIDE:
    raise ValueError(
        f"{path}: b'data' must be uint8 of shape (N, {_CHANNELS * _SIDE * _SIDE}), "
        f"got {rows.dtype} {rows.shape}"
    )
  images = rows.reshape(-1, _CHANNELS, _SIDE, _SIDE).transpose(0, 2, 3, 1)
  labels = np.asarray(batch[label_key], dtype=np.int32)
  return ArrayDataset(np.ascontiguousarray(images), labels)


def _concatenate(parts: list[ArrayDataset]) -> ArrayDataset:
  return ArrayDataset(
      np.concatenate([part.images for part in parts]),
      np.concatenate([part.labels for part in parts]),
  )


def _label_names(path: pathlib.Path, key: bytes) -> tuple[str, ...]:
  meta = _read_pickle(path)
  if key not in meta:
    raise ValueError(
        f"{path} is not a CIFAR meta file: it lacks the key {key!r} "
        f"(keys present: {sorted(meta)})"
    )
  return tuple(
      name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in meta[key]
  )


def load_cifar10_folder(folder: pathlib.Path, name: str = "cifar10") -> DatasetSplits:
  """CIFAR-10 from an extracted `cifar-10-batches-py` folder.

  Args:
    folder: folder holding data_batch_1..5, test_batch and batches.meta.
    name: the name recorded in the returned splits.

  Returns:
    DatasetSplits with uint8 (N, 32, 32, 3) images (50000 train / 10000 test for
    the full archive), int32 labels 0..9, class names from batches.meta and the
    canonical CIFAR-10 mean/std.
  """
  train = _concatenate(
      [_batch_to_dataset(folder / file_name, b"labels") for file_name in _CIFAR10_TRAIN_FILES]
  )
  test = _batch_to_dataset(folder / "test_batch", b"labels")
  class_names = _label_names(folder / "batches.meta", b"label_names")
  return DatasetSplits(
      name=name,
      train=train,
      test=test,
      num_classes=CIFAR10.num_classes,
      class_names=class_names,
      mean=CIFAR10.mean,
      std=CIFAR10.std,
  )


def load_cifar100_folder(folder: pathlib.Path, name: str = "cifar100") -> DatasetSplits:
  """CIFAR-100 (fine labels) from an extracted `cifar-100-python` folder.

  Args:
    folder: folder holding train, test and meta.
    name: the name recorded in the returned splits.

  Returns:
    DatasetSplits with uint8 (N, 32, 32, 3) images (50000 train / 10000 test for
    the full archive), int32 fine labels 0..99, class names from meta's
    fine_label_names and the canonical CIFAR-100 mean/std.
  """
  train = _batch_to_dataset(folder / "train", b"fine_labels")
  test = _batch_to_dataset(folder / "test", b"fine_labels")
  class_names = _label_names(folder / "meta", b"fine_label_names")
  return DatasetSplits(
      name=name,
      train=train,
      test=test,
      num_classes=CIFAR100.num_classes,
      class_names=class_names,
      mean=CIFAR100.mean,
      std=CIFAR100.std,
  )
