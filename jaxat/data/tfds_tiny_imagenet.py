"""A TFDS builder for Tiny-ImageNet, prepared from the files of `tiny-imagenet-200.zip`.

TensorFlow Datasets ships no Tiny-ImageNet builder, so this module defines one; defining
the class registers the name `tiny_imagenet` with TFDS, which is why jaxat imports this
module on use only (jaxat/data/tfds_source.py). TFDS cannot download the archive: the
files are read from a manual_dir holding the extracted `tiny-imagenet-200/` folder (or the
folder itself) or `tiny-imagenet-200.zip`. Prepare once with

  python -m jaxat.data.tfds_tiny_imagenet --manual_dir=MANUAL_DIR --data_dir=TFDS_DATA_DIR

and read it with `dataset.name=tiny_imagenet dataset.source=tfds dataset.data_dir=TFDS_DATA_DIR`.

The examples are those of the folder reader (jaxat/data/tiny_imagenet.py), whose parsing
functions are reused: label = index of the wnid in sorted wnids.txt order (the ClassLabel
names are those sorted wnids), every JPEG decoded by Pillow and converted to RGB, split
'train' = train/<wnid>/images class by class, split 'validation' = the labelled val folder
(val_annotations.txt), which jaxat uses as its test split. Shuffling is disabled, so
record k of a split is image k of the folder reader, and images are stored as PNG
(lossless), so both routes give identical arrays. The PNGs are encoded by Pillow: TFDS
encodes numpy images with TensorFlow, which jaxat does not depend on.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxat.data.tiny_imagenet import (
    ARCHIVE_FOLDER,
    IMAGE_SHAPE,
    TINY_IMAGENET_LAYOUT,
    decode_images,
    list_train,
    list_val,
    read_wnids,
)

TFDS_NAME = "tiny_imagenet"
ARCHIVE_FILE = "tiny-imagenet-200.zip"
ARCHIVE_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
PREPARE_MODULE = "jaxat.data.tfds_tiny_imagenet"
# The split of the validation folder; jaxat reads it as the test split.
VALIDATION_SPLIT = "validation"


def find_source_folder(manual_dir: pathlib.Path) -> pathlib.Path | None:
  """The extracted `tiny-imagenet-200` folder in manual_dir (or manual_dir itself), else None."""
  return TINY_IMAGENET_LAYOUT.find_folder(str(manual_dir))


def missing_source_message(manual_dir: pathlib.Path) -> str:
  """One line: where the files were looked for and where they come from."""
  return (f"Tiny-ImageNet files not found in manual_dir {manual_dir}: "
          f"{TINY_IMAGENET_LAYOUT.describe_search(str(manual_dir))}, and no "
          f"{manual_dir / ARCHIVE_FILE}; download {ARCHIVE_FILE} from {ARCHIVE_URL} into "
          "manual_dir (extracted or not)")


def extract_archive(archive: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
  """Extracts the zip into `target` (created) unless a finished extraction is there.

  Python's zipfile, not the TFDS extractor, which needs TensorFlow. The archive is
  extracted into a temporary sibling folder renamed when complete, so an interrupted
  extraction is never taken for a finished one. Returns `target`.
  """
  if target.is_dir():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  partial = pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
  try:
    with zipfile.ZipFile(archive) as zipped:
      zipped.extractall(partial)
    os.replace(partial, target)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  return target


def rgb_pil_image(path: pathlib.Path) -> Image.Image:
  """The JPEG as an RGB PIL image, decoded (and greyscale converted) by the folder reader."""
  return Image.fromarray(decode_images([path])[0])


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
  """Tiny-ImageNet: 200 classes of 64x64 RGB images, 100000 train, 10000 validation."""

  name = TFDS_NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Train and labelled validation split of tiny-imagenet-200.zip."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Download {ARCHIVE_FILE} from {ARCHIVE_URL} into manual_dir; it may stay zipped or "
      f"be extracted there (creating {ARCHIVE_FOLDER}/).")
  # No checksums file: TFDS looks for one next to the builder's module through
  # `code_path`, which for a class inside a package needs the importlib_resources package
  # (TFDS does not install it). Nothing is downloaded, so no checksum applies.
  code_path = None

  def _info(self) -> tfds.core.DatasetInfo:
    # The label names are the sorted wnids of the files, set in _split_generators; a
    # prepared dataset restores them from its label.labels.txt.
    # DatasetInfo directly, not dataset_info_from_configs: the latter reads metadata
    # files from this module's folder, which holds none.
    return tfds.core.DatasetInfo(
        builder=self,
        description="Tiny-ImageNet (cs231n): 200 ImageNet classes downsampled to 64x64.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=IMAGE_SHAPE, dtype=np.uint8),
            "label": tfds.features.ClassLabel(),
        }),
        supervised_keys=("image", "label"),
        # Record k of a split is image k of the folder reader's listing (the key k).
        disable_shuffling=True,
        homepage="http://cs231n.stanford.edu/",
    )

  def _source_folder(self, dl_manager: tfds.download.DownloadManager) -> pathlib.Path:
    """The extracted folder, extracting the zip of manual_dir when only that is there."""
    manual_dir = pathlib.Path(os.fspath(dl_manager.manual_dir))
    folder = find_source_folder(manual_dir)
    archive = manual_dir / ARCHIVE_FILE
    if folder is None and archive.is_file():
      extracted = pathlib.Path(os.fspath(dl_manager.download_dir)) / "extracted" / ARCHIVE_FILE
      folder = find_source_folder(extract_archive(archive, extracted))
    if folder is None:
      raise FileNotFoundError(missing_source_message(manual_dir))
    return folder

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    folder = self._source_folder(dl_manager)
    wnids = read_wnids(folder)
    self.info.features["label"].names = list(wnids)
    return {
        "train": self._generate_examples(*list_train(folder, wnids)),
        VALIDATION_SPLIT: self._generate_examples(*list_val(folder, wnids)),
    }

  def _generate_examples(self, paths: Sequence[pathlib.Path],
                         labels: np.ndarray) -> Iterator[tuple[int, dict]]:
    """(k, {'image': RGB PIL image, 'label': int}) for the k-th image of the listing;
    unshuffled TFDS needs integer keys and writes the records in their order."""
    for index, (path, label) in enumerate(zip(paths, labels)):
      yield index, {"image": rgb_pil_image(path), "label": int(label)}


def prepare(manual_dir: str, data_dir: str) -> pathlib.Path:
  """Builds the TFDS dataset (ArrayRecord files) from the Tiny-ImageNet files.

  Args:
    manual_dir: folder holding `tiny-imagenet-200/` (or being it) or `tiny-imagenet-200.zip`.
    data_dir: the TFDS data_dir to write into; '' = the TFDS default.

  Returns:
    The folder of the prepared version (data_dir/tiny_imagenet/1.0.0). A dataset already
    prepared there is kept as it is.

  Raises:
    FileNotFoundError: manual_dir holds neither the folder nor the zip (one line).
    ValueError: a malformed class list, annotation line or image (the folder reader's).
  """
  manual = pathlib.Path(os.path.expanduser(manual_dir))
  # Checked here, not only by the builder: TFDS reports an empty manual_dir in several
  # lines, after announcing the preparation.
  if find_source_folder(manual) is None and not (manual / ARCHIVE_FILE).is_file():
    raise FileNotFoundError(missing_source_message(manual))
  builder = TinyImagenet(data_dir=os.path.expanduser(data_dir) if data_dir else None,
                         file_format="array_record")
  # array_record: jaxat reads with tfds.data_source, which cannot read TFRecord.
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  return pathlib.Path(os.fspath(builder.data_path))


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog=f"python -m {PREPARE_MODULE}",
      description="Prepare the TFDS dataset 'tiny_imagenet' for dataset.source=tfds.")
  parser.add_argument("--manual_dir", required=True,
                      help=f"folder holding {ARCHIVE_FOLDER}/ (or being it) or {ARCHIVE_FILE}")
  parser.add_argument("--data_dir", default="",
                      help="TFDS data_dir to write (later dataset.data_dir); default: TFDS's")
  args = parser.parse_args(argv)
  try:
    path = prepare(args.manual_dir, args.data_dir)
  except (FileNotFoundError, ValueError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(f"prepared {path}; read it with --config.dataset.source=tfds "
        f"--config.dataset.data_dir={path.parent.parent}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
