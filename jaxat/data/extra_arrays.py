"""Extra training data mixed into every batch (`dataset.extra`), opened by memory map.

The 1M-to-20M-image DDPM-generated CIFAR-10 sets that RobustBench leaders train on do not
fit a host's memory comfortably, so their images are never loaded whole: the pages of
the rows a batch needs are read when gathered (jaxat/train/host_input.py).

Accepted files (`dataset.extra.path`):
  * an uncompressed .npz (np.savez) with images under 'image' (the DDPM files' name) or 'x'
    (jaxat's npz convention) and labels under 'label' or 'y'. np.load ignores mmap_mode for
    .npz, so the member's .npy data is located inside the zip (its local file header, then
    the .npy header) and mapped with np.memmap;
  * a folder holding image.npy and label.npy (or x.npy and y.npy), mapped with
    np.load(mmap_mode='r').
A compressed .npz (np.savez_compressed) cannot be mapped: the error gives the one command
that converts it.

Images are uint8 (N, H, W, C) (or (N, H, W) for one channel), labels integers (N,); labels
are read whole (4 bytes per example) and checked, images only by shape and dtype.
"""

from __future__ import annotations

import os
import pathlib
import struct
import zipfile

import numpy as np

from jaxat.data.types import ArrayDataset

IMAGE_KEYS = ("image", "x")
LABEL_KEYS = ("label", "y")
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # a zip member's local file header (30 bytes)
_LOCAL_HEADER_SIGNATURE = 0x04034B50


def extra_per_batch(fraction: float, batch_size: int) -> int:
  """E, the extra examples in a global batch of `batch_size`: fraction * batch_size rounded
  to the nearest integer (halves up)."""
  return int(np.floor(fraction * batch_size + 0.5))


def _field_error(path, message: str) -> ValueError:
  return ValueError(f"dataset.extra.path={str(path)!r}: {message}")


def _conversion_command(path: pathlib.Path, image_key: str, label_key: str) -> str:
  target = path.with_name(path.stem + "_uncompressed.npz")
  return (f"python -c \"import numpy as np; d = np.load('{path}'); np.savez('{target}', "
          f"image=d['{image_key}'], label=d['{label_key}'])\"")


def _npy_in_zip(path: pathlib.Path, archive: zipfile.ZipFile, member: str) -> np.memmap:
  """np.memmap of the .npy member `member` (stored, not deflated) of the .npz at `path`."""
  info = archive.getinfo(member)
  with open(path, "rb") as f:
    f.seek(info.header_offset)
    fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    if fields[0] != _LOCAL_HEADER_SIGNATURE:
      raise _field_error(path, f"member {member!r} has no valid zip header; the file is damaged")
    name_length, extra_length = fields[9], fields[10]
    f.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
    else:
      shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
    if dtype.hasobject:
      raise _field_error(path, f"member {member!r} holds Python objects; it must hold numbers")
    offset = f.tell()
  return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                   order="F" if fortran_order else "C")


def _pick(names, candidates, what: str, path) -> str:
  found = [key for key in candidates if key in names]
  if len(found) != 1:
    raise _field_error(path, f"needs exactly one {what} array named one of {list(candidates)}; "
                             f"it holds {sorted(names)}")
  return found[0]


def _open_npz(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  try:
    archive = zipfile.ZipFile(path)
  except zipfile.BadZipFile:
    raise _field_error(path, "is not an .npz archive (a zip of .npy files)") from None
  with archive:
    members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
    image_key = _pick(members, IMAGE_KEYS, "image", path)
    label_key = _pick(members, LABEL_KEYS, "label", path)
    for key in (image_key, label_key):
      if archive.getinfo(members[key]).compress_type != zipfile.ZIP_STORED:
        raise _field_error(
            path, "is a compressed .npz (np.savez_compressed), which cannot be memory-mapped; "
                  f"convert it once: {_conversion_command(path, image_key, label_key)}; and set "
                  "dataset.extra.path to the new file")
    return (_npy_in_zip(path, archive, members[image_key]),
            _npy_in_zip(path, archive, members[label_key]))


def _open_folder(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  names = {p.name[:-4] for p in path.glob("*.npy")}
  image_key = _pick(names, IMAGE_KEYS, "image", path)
  label_key = _pick(names, LABEL_KEYS, "label", path)
  return (np.load(path / f"{image_key}.npy", mmap_mode="r"),
          np.load(path / f"{label_key}.npy", mmap_mode="r"))


def open_extra_data(path_text: str) -> ArrayDataset:
  """The extra data at `path_text` with memory-mapped images.

  Returns:
    ArrayDataset whose images are a read-only np.memmap (N, H, W, C) uint8 (a grayscale
    (N, H, W) file gets a trailing axis, still a memmap) and labels int32 (N,) in memory.

  Raises:
    FileNotFoundError: no such file or folder.
    ValueError: one line naming the file and the field: a compressed .npz (with the command
      that converts it), missing or ambiguous arrays, a wrong dtype or rank, lengths that
      differ.
  """
  path = pathlib.Path(os.path.expanduser(path_text))
  if not path.exists():
    raise FileNotFoundError(f"dataset.extra.path={path_text!r} does not exist; give an "
                            "uncompressed .npz with 'image'/'label' (or 'x'/'y') arrays or a "
                            "folder of image.npy and label.npy")
  images, labels = _open_folder(path) if path.is_dir() else _open_npz(path)
  if images.dtype != np.uint8:
    raise _field_error(path, f"images must be uint8 (0..255), got dtype {images.dtype}")
  if images.ndim == 3:
    images = images[..., np.newaxis]
  if images.ndim != 4:
    raise _field_error(path, f"images must have shape (N, H, W, C), got {images.shape}")
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
    raise _field_error(path, f"labels must be integers of shape (N,), got {labels.dtype} "
                             f"{labels.shape}")
  if len(labels) != len(images):
    raise _field_error(path, f"holds {len(images)} images but {len(labels)} labels")
  if len(images) == 0:
    raise _field_error(path, "holds no examples")
  return ArrayDataset(images, np.asarray(labels, dtype=np.int32))


def check_extra_matches(extra: ArrayDataset, path: str, image_shape: tuple, num_classes: int,
                        needed: int) -> None:
  """One-line ValueError when the extra data does not fit the training set: image shape
  (H, W, C) other than `image_shape`, labels outside [0, num_classes), or fewer than
  `needed` examples (the extra examples of one batch, drawn without repetition)."""
  if tuple(extra.images.shape[1:]) != tuple(image_shape):
    raise _field_error(path, f"images have shape (H, W, C) {tuple(extra.images.shape[1:])} but "
                             f"the training set's are {tuple(image_shape)}")
  low, high = int(extra.labels.min()), int(extra.labels.max())
  if low < 0 or high >= num_classes:
    raise _field_error(path, f"labels span [{low}, {high}] but the dataset has {num_classes} "
                             f"classes: they must lie in [0, {num_classes})")
  if len(extra) < needed:
    raise _field_error(path, f"holds {len(extra)} examples, fewer than the {needed} extra "
                             "examples of one batch (dataset.extra.fraction x batch_size)")
