"""`load_dataset(cfg)`: from a data config to train/test splits in host memory.

Dataset names and where their pixels come from:
  digits     scikit-learn's bundled 8x8 digits (no files needed).
  synthetic  generated template-plus-noise images of any shape (no files needed).
  cifar10, cifar100, svhn, tiny_imagenet
             the original archives' files in data_dir (source='files'), a prepared
             TFDS directory (source='tfds'), or whichever is present (source='auto').
             Tiny-ImageNet's files are the folder tiny-imagenet-200.zip extracts to,
             decoded once into a cached .npz (jaxat/data/tiny_imagenet.py); its TFDS
             builder is jaxat's own (jaxat/data/tfds_tiny_imagenet.py).
  npz        a .npz file or a folder of train.npz / test.npz (source 'files'/'auto').
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from jaxat.data.cifar_pickles import (
    CIFAR10_LAYOUT,
    CIFAR100_LAYOUT,
    load_cifar10_folder,
    load_cifar100_folder,
)
from jaxat.data.digits import load_digits_splits
from jaxat.data.file_layout import FileLayout
from jaxat.data.npz_arrays import load_npz
from jaxat.data.svhn_mat import SVHN_LAYOUT, load_svhn_folder
from jaxat.data.synthetic import make_synthetic_splits
from jaxat.data.tfds_source import build_instructions, load_tfds, tfds_dataset_path
from jaxat.data.tiny_imagenet import (
    DOWNLOAD_HINT as TINY_IMAGENET_DOWNLOAD_HINT,
    TINY_IMAGENET_LAYOUT,
    load_tiny_imagenet_folder,
)
from jaxat.data.types import DatasetSplits


@dataclasses.dataclass(frozen=True)
class OriginalFiles:
  """Where a public dataset's original files live and how to read them.

  Attributes:
    layout: the file names and the folder the original archive extracts to.
    load_folder: reads the splits from the folder holding the files.
    download_hint: where the original archive comes from and what to do with it.
  """

  layout: FileLayout
  load_folder: Callable[..., DatasetSplits]
  download_hint: str


ORIGINAL_FILES = {
    "cifar10": OriginalFiles(
        CIFAR10_LAYOUT,
        load_cifar10_folder,
        "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        "and extract it into data_dir (it creates cifar-10-batches-py/)",
    ),
    "cifar100": OriginalFiles(
        CIFAR100_LAYOUT,
        load_cifar100_folder,
        "download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        "and extract it into data_dir (it creates cifar-100-python/)",
    ),
    "svhn": OriginalFiles(
        SVHN_LAYOUT,
        load_svhn_folder,
        "download train_32x32.mat and test_32x32.mat from "
        "http://ufldl.stanford.edu/housenumbers/ into data_dir",
    ),
    "tiny_imagenet": OriginalFiles(
        TINY_IMAGENET_LAYOUT, load_tiny_imagenet_folder, TINY_IMAGENET_DOWNLOAD_HINT,
    ),
}

DATASET_NAMES = ("digits", "synthetic", "cifar10", "cifar100", "svhn", "npz", "tiny_imagenet")
# Datasets read from their original files only: no TFDS builder exists for them.
FILES_ONLY = ("npz",)
SOURCES = ("auto", "tfds", "files")


def _validated_source(name: str, source: Any) -> str:
  if source not in SOURCES:
    raise ValueError(
        f"data source {source!r} is unknown for dataset {name!r}; choose one of "
        f"{list(SOURCES)}"
    )
  if name == "npz" and source == "tfds":
    raise ValueError(
        "dataset 'npz' is read from files only; set source to 'files' or 'auto'"
    )
  return source


def _load_from_files(name: str, data_dir: str, **options: Any) -> DatasetSplits:
  files = ORIGINAL_FILES[name]
  if not data_dir:
    raise ValueError(
        f"source='files' for dataset {name!r} needs data_dir, the folder holding "
        f"the original files: {files.download_hint}"
    )
  folder = files.layout.find_folder(data_dir)
  if folder is None:
    raise FileNotFoundError(
        f"original {name} files not found: {files.layout.describe_search(data_dir)}. "
        f"To provide them, {files.download_hint}"
    )
  return files.load_folder(folder, name=name, **options)


def _load_public(name: str, source: str, data_dir: str, **options: Any) -> DatasetSplits:
  """`options` are extra keyword arguments of the dataset's folder reader (cache_dir)."""
  if source == "files" or (source == "auto" and name in FILES_ONLY):
    return _load_from_files(name, data_dir, **options)
  if source == "tfds":
    return load_tfds(name, data_dir)
  # source == 'auto': original files take precedence because reading them needs
  # nothing but numpy/scipy; TFDS is the fallback.
  files = ORIGINAL_FILES[name]
  folder = files.layout.find_folder(data_dir)
  if folder is not None:
    return files.load_folder(folder, name=name, **options)
  try:
    return load_tfds(name, data_dir)
  except FileNotFoundError as error:
    raise FileNotFoundError(
        f"{name} data not found. Original files: "
        f"{files.layout.describe_search(data_dir)}. TFDS: looked at "
        f"{tfds_dataset_path(name, data_dir)}. Provide the data in either way: "
        f"(1) {files.download_hint}; or (2) {build_instructions(name, data_dir)}"
    ) from error


def load_dataset(cfg: Any) -> DatasetSplits:
  """Loads the train and test splits a data config asks for.

  Args:
    cfg: an ml_collections.ConfigDict (or any object with these attributes):
      name: one of DATASET_NAMES.
      source: one of SOURCES; ignored by 'digits' and 'synthetic'; 'npz' accepts
        'files' and 'auto' only.
      data_dir: str, '' when unset: the folder of original files, the TFDS
        data_dir, or (for 'npz') a .npz file or folder. For 'tiny_imagenet' with
        source 'tfds' the TFDS data_dir prepared by `python -m
        jaxat.data.tfds_tiny_imagenet`.
      num_train, num_test, image_size, channels, num_classes: ints, read only by
        'synthetic'.
      test_size: int, read only by 'npz' when the data has no test arrays.
      cache_dir: str, read only by 'tiny_imagenet' from files: folder of the
        decoded-array cache, '' = the dataset folder.

  Returns:
    DatasetSplits named cfg.name, images uint8 NHWC 0..255, labels int32.

  Raises:
    ValueError: unknown name or source, or malformed data.
    FileNotFoundError: the data is not where cfg says; the message names every
      path looked at and how to provide the data.
  """
  name = cfg.name
  if name not in DATASET_NAMES:
    raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASET_NAMES)}")
  if name == "digits":
    return load_digits_splits(name=name)
  if name == "synthetic":
    return make_synthetic_splits(
        num_train=cfg.num_train,
        num_test=cfg.num_test,
        image_size=cfg.image_size,
        channels=cfg.channels,
        num_classes=cfg.num_classes,
        name=name,
    )
  source = _validated_source(name, cfg.source)
  data_dir = cfg.data_dir or ""
  if name == "npz":
    return load_npz(data_dir, cfg.test_size, name=name)
  if name == "tiny_imagenet":
    # getattr: a config.json written before the field existed restores without it.
    return _load_public(name, source, data_dir, cache_dir=getattr(cfg, "cache_dir", "") or "")
  return _load_public(name, source, data_dir)
