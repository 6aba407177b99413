"""Tiny-ImageNet (200 classes, 64x64 RGB) from the folder the official zip extracts to.

`tiny-imagenet-200.zip` (http://cs231n.stanford.edu/tiny-imagenet-200.zip) extracts to

  tiny-imagenet-200/wnids.txt                      one WordNet id per line, 200 lines
  tiny-imagenet-200/train/<wnid>/images/*.JPEG     500 images per class
  tiny-imagenet-200/val/images/val_<k>.JPEG        10000 images
  tiny-imagenet-200/val/val_annotations.txt        file<TAB>wnid<TAB>bbox... per image
  tiny-imagenet-200/test/images/*.JPEG             unlabelled: ignored

The labelled val split is returned as the test split, as the robustness papers (LAS-AT,
FGSM-PGI, ...) evaluate on it. Class index = position of the wnid in *sorted* wnids.txt
order: this is the order of torchvision's ImageFolder (which sorts the train/ folder
names) and of the TinyImageNet dataset class in the LAS-AT code (which sorts the lines of
wnids.txt), so a label k here is label k of a model trained by those codes. Images are
listed in sorted file-name order within each class (train) and over val/images (test).
Some JPEGs are greyscale: every image is converted to RGB (the grey value copied to the
three channels), as PIL's `convert('RGB')` in those codes does.

Decoding the 110k JPEGs takes minutes, so the decoded arrays are cached once in an
uncompressed `.npz` (CACHE_FILE_NAME) next to the data, or in `cache_dir` when given. The
cache records a fingerprint of the file list (relative path and size of every JPEG,
wnids.txt and val_annotations.txt); a cache whose fingerprint differs, or that cannot be
read, is rebuilt. Decoding writes each image straight into a preallocated uint8 array,
so memory stays at the final arrays (about 1.35 GB for the full set) plus one image.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import tempfile
from collections.abc import Sequence

import numpy as np

from jaxat.data.file_errors import read_data_file
from jaxat.data.file_layout import FileLayout
from jaxat.data.types import ArrayDataset, DatasetSplits

ARCHIVE_FOLDER = "tiny-imagenet-200"
WNIDS_FILE = "wnids.txt"
VAL_ANNOTATIONS_FILE = "val/val_annotations.txt"
TINY_IMAGENET_LAYOUT = FileLayout(
    required_files=(WNIDS_FILE, VAL_ANNOTATIONS_FILE), archive_folder=ARCHIVE_FOLDER)
DOWNLOAD_HINT = ("download tiny-imagenet-200.zip from http://cs231n.stanford.edu/"
                 "tiny-imagenet-200.zip and extract it into data_dir (it creates "
                 "tiny-imagenet-200/)")
CACHE_FILE_NAME = "tiny_imagenet_arrays.npz"
IMAGE_SHAPE = (64, 64, 3)
IMAGE_SUFFIX = ".JPEG"
# Per-channel statistics of the Tiny-ImageNet training images in [0, 1] (the constants used
# by the adversarial-training codes that normalise Tiny-ImageNet inputs).
MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2302, 0.2265, 0.2262)
# Bumped when the cache's contents change meaning, so that old caches are rebuilt.
_CACHE_FORMAT = "jaxat-tiny-imagenet-1"

log = logging.getLogger(__name__)


def _fail_missing(path: pathlib.Path, what: str) -> None:
  raise FileNotFoundError(f"Tiny-ImageNet {what} not found: {path}; the folder is "
                          f"incomplete. To provide it, {DOWNLOAD_HINT}")


def read_wnids(folder: pathlib.Path) -> tuple[str, ...]:
  """The class ids of wnids.txt in sorted order (class index = position); str tuple."""
  path = folder / WNIDS_FILE
  lines = read_data_file(path, lambda: path.read_text().split(), "the Tiny-ImageNet class list")
  wnids = tuple(sorted(lines))
  if not wnids:
    raise ValueError(f"{path}: lists no class ids; expected one WordNet id per line")
  if len(set(wnids)) != len(wnids):
    repeated = sorted({w for w in wnids if wnids.count(w) > 1})
    raise ValueError(f"{path}: class ids repeated: {repeated[:5]}")
  return wnids


def list_train(folder: pathlib.Path, wnids: Sequence[str]) -> tuple[list[pathlib.Path], np.ndarray]:
  """Paths of the training JPEGs, class by class in wnid order, and their int32 labels (N,)."""
  paths, labels = [], []
  for label, wnid in enumerate(wnids):
    images = folder / "train" / wnid / "images"
    if not images.is_dir():
      _fail_missing(images, f"training folder of class {wnid!r}")
    found = sorted(p for p in images.iterdir() if p.name.endswith(IMAGE_SUFFIX))
    if not found:
      raise ValueError(f"{images}: holds no {IMAGE_SUFFIX} image; class {wnid!r} has no "
                       "training example")
    paths.extend(found)
    labels.extend([label] * len(found))
  return paths, np.asarray(labels, np.int32)


def list_val(folder: pathlib.Path, wnids: Sequence[str]) -> tuple[list[pathlib.Path], np.ndarray]:
  """Paths of the labelled val JPEGs in sorted file-name order and their int32 labels (N,),
  each the index of the wnid val_annotations.txt gives for the file."""
  path = folder / VAL_ANNOTATIONS_FILE
  text = read_data_file(path, path.read_text, "the Tiny-ImageNet val annotations")
  index_of = {wnid: index for index, wnid in enumerate(wnids)}
  label_of: dict[str, int] = {}
  for number, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    fields = line.split("\t")
    if len(fields) < 2 or fields[1] not in index_of:
      raise ValueError(f"{path}:{number}: expected 'file<TAB>wnid<TAB>...' with a wnid of "
                       f"{WNIDS_FILE}, got {line.strip()[:80]!r}")
    label_of[fields[0]] = index_of[fields[1]]
  if not label_of:
    raise ValueError(f"{path}: annotates no image")
  images = folder / "val" / "images"
  paths = [images / name for name in sorted(label_of)]
  for image in paths:
    if not image.is_file():
      _fail_missing(image, "val image named in val_annotations.txt")
  return paths, np.asarray([label_of[p.name] for p in paths], np.int32)


def _decode_image(path: pathlib.Path) -> np.ndarray:
  """One JPEG as uint8 (H, W, 3) RGB; greyscale (and any other mode) converted to RGB."""
  from PIL import Image  # Pillow, imported on use: only this dataset decodes JPEGs

  def read() -> np.ndarray:
    with Image.open(path) as image:
      return np.asarray(image.convert("RGB"), dtype=np.uint8)

  return read_data_file(path, read, "a JPEG image of Tiny-ImageNet")


def decode_images(paths: Sequence[pathlib.Path]) -> np.ndarray:
  """uint8 (N, 64, 64, 3): each JPEG decoded into a preallocated array, one at a time."""
  images = np.empty((len(paths), *IMAGE_SHAPE), np.uint8)
  for index, path in enumerate(paths):
    image = _decode_image(path)
    if image.shape != IMAGE_SHAPE:
      raise ValueError(f"{path}: Tiny-ImageNet images are {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}, "
                       f"this one decodes to shape {image.shape}")
    images[index] = image
  return images


def fingerprint(folder: pathlib.Path, wnids: Sequence[str], train_paths: Sequence[pathlib.Path],
                val_paths: Sequence[pathlib.Path]) -> str:
  """sha256 hex of the cache format, the class list and the (relative path, size in bytes)
  of wnids.txt, val_annotations.txt and every image: what makes a cache stale."""
  digest = hashlib.sha256(_CACHE_FORMAT.encode())
  digest.update("\n".join(wnids).encode())
  for path in (folder / WNIDS_FILE, folder / VAL_ANNOTATIONS_FILE, *train_paths, *val_paths):
    digest.update(f"\n{path.relative_to(folder).as_posix()}\t{path.stat().st_size}".encode())
  return digest.hexdigest()


def cache_path(folder: pathlib.Path, cache_dir: str = "") -> pathlib.Path:
  """Where the decoded arrays are cached: `cache_dir` (when set) or the dataset folder."""
  base = pathlib.Path(os.path.expanduser(cache_dir)) if cache_dir else folder
  return base / CACHE_FILE_NAME


_CACHE_KEYS = ("fingerprint", "wnids", "train_images", "train_labels", "test_images",
               "test_labels")


def _read_cache(path: pathlib.Path, expected: str) -> dict[str, np.ndarray] | None:
  """The cached arrays when the cache exists, is readable and matches `expected`; else None."""
  if not path.is_file():
    return None
  try:
    with np.load(path, allow_pickle=False) as arrays:
      if set(_CACHE_KEYS) - set(arrays.files) or str(arrays["fingerprint"]) != expected:
        log.warning("Tiny-ImageNet cache %s is stale (the files changed): rebuilding it", path)
        return None
      return {key: arrays[key] for key in _CACHE_KEYS}
  except (OSError, ValueError, EOFError) as error:
    log.warning("Tiny-ImageNet cache %s cannot be read (%s): rebuilding it", path, error)
    return None


def _write_cache(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
  """Writes the uncompressed .npz atomically (temporary file + rename); a folder that cannot
  be written only costs the next run the decoding, so the failure is logged, not raised."""
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tiny_imagenet_",
                                         suffix=".npz.tmp")
    try:
      with os.fdopen(handle, "wb") as file:
        np.savez(file, **arrays)
      os.replace(temporary, path)
    except BaseException:
      os.unlink(temporary)
      raise
  except OSError as error:
    log.warning("Tiny-ImageNet cache not written to %s (%s); the JPEGs will be decoded again "
                "next run (set dataset.cache_dir to a writable folder)", path, error)


def load_tiny_imagenet_folder(folder: pathlib.Path, name: str = "tiny_imagenet",
                              cache_dir: str = "") -> DatasetSplits:
  """Tiny-ImageNet from an extracted `tiny-imagenet-200` folder, through the array cache.

  Args:
    folder: the folder holding wnids.txt, train/ and val/.
    name: the name recorded in the returned splits.
    cache_dir: folder of the decoded-array cache; '' puts it in `folder`.

  Returns:
    DatasetSplits with uint8 (N, 64, 64, 3) RGB images (100000 train / 10000 test = the
    labelled val split, for the full archive), int32 labels = index of the wnid in sorted
    wnids.txt order, the wnids as class names and the Tiny-ImageNet mean/std.

  Raises:
    FileNotFoundError: a class's train folder or an annotated val image is missing (one
      line naming the path and the download).
    ValueError / UsageError: a malformed class list, annotation line or image.
  """
  if not isinstance(cache_dir, str):
    raise ValueError(f"dataset.cache_dir must be a folder path string ('' = next to the data), "
                     f"got {cache_dir!r}")
  wnids = read_wnids(folder)
  train_paths, train_labels = list_train(folder, wnids)
  val_paths, val_labels = list_val(folder, wnids)
  expected = fingerprint(folder, wnids, train_paths, val_paths)
  path = cache_path(folder, cache_dir)
  arrays = _read_cache(path, expected)
  if arrays is None:
    log.info("decoding %d Tiny-ImageNet JPEGs from %s (cached afterwards in %s)",
             len(train_paths) + len(val_paths), folder, path)
    arrays = dict(fingerprint=np.asarray(expected), wnids=np.asarray(wnids),
                  train_images=decode_images(train_paths), train_labels=train_labels,
                  test_images=decode_images(val_paths), test_labels=val_labels)
    _write_cache(path, arrays)
  return DatasetSplits(
      name=name,
      train=ArrayDataset(arrays["train_images"], arrays["train_labels"].astype(np.int32)),
      test=ArrayDataset(arrays["test_images"], arrays["test_labels"].astype(np.int32)),
      num_classes=len(wnids),
      class_names=wnids,
      mean=MEAN,
      std=STD,
  )
