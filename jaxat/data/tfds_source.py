"""Public datasets read from a prepared TensorFlow Datasets directory.

Uses `tfds.data_source`, the random-access reader over ArrayRecord files, which works
without TensorFlow. Nothing is ever downloaded here: the dataset must have been
prepared beforehand (`tfds build <name> --file_format=array_record`; for Tiny-ImageNet,
whose builder jaxat defines, `python -m jaxat.data.tfds_tiny_imagenet`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from typing import TYPE_CHECKING

import numpy as np

from jaxat.data.public_datasets import CIFAR10, CIFAR100, SVHN, PublicDatasetFacts
from jaxat.data.tiny_imagenet import ARCHIVE_FOLDER, IMAGE_SHAPE, MEAN, STD
from jaxat.data.types import ArrayDataset, DatasetSplits

if TYPE_CHECKING:
  import tensorflow_datasets as tfds


def _tfds():
  """tensorflow_datasets, imported on use: it takes seconds to import, and only runs with
  `dataset.source=tfds` read it (machines without it run everything else)."""
  import tensorflow_datasets
  return tensorflow_datasets


@dataclasses.dataclass(frozen=True)
class TfdsDataset:
  """How one of our dataset names maps onto TFDS.

  Attributes:
    tfds_name: the TFDS builder name.
    facts: canonical class names (none: the names TFDS recorded are used), channel
      statistics and image shape.
    test_split: the TFDS split read as jaxat's test split.
    register: makes TFDS know a builder it does not ship (None: TFDS ships it).
    prepare_command: the command that prepares the dataset, '{data_dir}' standing for the
      TFDS data_dir ('': `tfds build`).
  """

  tfds_name: str
  facts: PublicDatasetFacts
  test_split: str = "test"
  register: Callable[[], None] | None = None
  prepare_command: str = ""


def _register_tiny_imagenet() -> None:
  """Imports the builder module, whose class definition registers 'tiny_imagenet' with
  TFDS; imported on use because it imports TFDS, and a second import is a no-op."""
  import jaxat.data.tfds_tiny_imagenet  # noqa: F401  (imported for its registration)


# No canonical class names: they are the wnids of wnids.txt, recorded while preparing.
TINY_IMAGENET_FACTS = PublicDatasetFacts(class_names=(), mean=MEAN, std=STD,
                                         image_shape=IMAGE_SHAPE)


TFDS_DATASETS = {
    "cifar10": TfdsDataset("cifar10", CIFAR10),
  # TFDS's 'label' is the fine (100-class) label; 'coarse_label' is ignored.
    "cifar100": TfdsDataset("cifar100", CIFAR100),
  # svhn_cropped labels are already the digit shown, 0..9.
    "svhn": TfdsDataset("svhn_cropped", SVHN),
  # Tiny-ImageNet's labelled val folder is the test split, as for the folder reader.
    "tiny_imagenet": TfdsDataset(
        "tiny_imagenet", TINY_IMAGENET_FACTS, test_split="validation",
        register=_register_tiny_imagenet,
        prepare_command=("python -m jaxat.data.tfds_tiny_imagenet --manual_dir=<folder "
                         f"holding {ARCHIVE_FOLDER}/ or {ARCHIVE_FOLDER}.zip> "
                         "--data_dir={data_dir}")),
}


def _builder(name: str, data_dir: str):
  """The TFDS builder of our dataset `name`, registering it first when TFDS lacks it."""
  dataset = TFDS_DATASETS[name]
  if dataset.register is not None:
    dataset.register()
  return _tfds().builder(dataset.tfds_name, data_dir=_tfds_data_dir(data_dir))


def tfds_dataset_path(name: str, data_dir: str) -> str:
  """The folder where TFDS looks for the prepared dataset `name`.

  Args:
    name: one of TFDS_DATASETS.
    data_dir: the TFDS data_dir; '' means the TFDS default ($TFDS_DATA_DIR or
      ~/tensorflow_datasets).
  """
  return str(_builder(name, data_dir).data_path)


def build_instructions(name: str, data_dir: str) -> str:
  """How to prepare the dataset for TFDS: `tfds build` on a machine with internet access,
  or the dataset's own prepare command (Tiny-ImageNet, from local files)."""
  target = data_dir or "<tfds data_dir>"
  command = TFDS_DATASETS[name].prepare_command
  if command:
    # The archive cannot be downloaded by TFDS: it is prepared from local files.
    return (f"prepare it with `{command.format(data_dir=target)}` and set dataset.data_dir "
            "to that data_dir (source 'tfds' or 'auto')")
  return (
      f"on a machine with internet run `tfds build {TFDS_DATASETS[name].tfds_name} "
      f"--file_format=array_record --data_dir={target}` (array_record is required: "
      "the random-access reader cannot read TFRecord), copy that data_dir to this "
      "machine and set data_dir to it (source 'tfds' or 'auto')"
  )


def _tfds_data_dir(data_dir: str) -> str | None:
  return os.path.expanduser(data_dir) if data_dir else None


def _read_split(source: Sequence[dict], image_shape: tuple[int, int, int]) -> ArrayDataset:
  # Records are read one at a time: decoding each stored PNG dominates either way, and
  # the batched `__getitems__` is broken under `tfds.testing.mock_data` (TFDS 4.9.10),
  # so it could not be tested offline. Records land straight in preallocated arrays so
  # a 50k split never exists as a Python list of arrays.
  count = len(source)
  images = np.empty((count, *image_shape), np.uint8)
  labels = np.empty((count,), np.int32)
  for index in range(count):
    record = source[index]
    images[index] = record["image"]
    labels[index] = record["label"]
  return ArrayDataset(images, labels)


def class_names_from_label_feature(
    label_feature: tfds.features.ClassLabel, facts: PublicDatasetFacts
) -> tuple[str, ...]:
  """The label names TFDS recorded, or the canonical names if it recorded none.

  Args:
    label_feature: the dataset's 'label' feature from its TFDS info.
    facts: the canonical facts of the same dataset; with no class names (Tiny-ImageNet),
      the recorded names are returned.
  """
  names = tuple(label_feature.names)
  if not facts.class_names:
    return names
  # TFDS fills label names from the downloaded archive while preparing; info that
  # was not prepared from the archive holds the placeholders '0'..'n-1' instead.
  placeholders = tuple(str(index) for index in range(len(names)))
  if len(names) != facts.num_classes or names == placeholders:
    return facts.class_names
  return names


def load_tfds(name: str, data_dir: str) -> DatasetSplits:
  """The train and test splits of a prepared TFDS dataset.

  Args:
    name: one of TFDS_DATASETS ('cifar10', 'cifar100', 'svhn', 'tiny_imagenet').
    data_dir: the TFDS data_dir; '' means the TFDS default.

  Returns:
    DatasetSplits with uint8 (N, H, W, 3) images (32x32; 64x64 for Tiny-ImageNet), int32
    labels, class names from the TFDS metadata (canonical names when it has only
    placeholders) and the canonical mean/std. The test split is the dataset's
    `test_split` ('validation' for Tiny-ImageNet), read in record order.

  Raises:
    ValueError: name is not one of TFDS_DATASETS.
    FileNotFoundError: the dataset is not prepared under data_dir.
  """
  if name not in TFDS_DATASETS:
    raise ValueError(
        f"dataset {name!r} is not available from TFDS; choose one of "
        f"{sorted(TFDS_DATASETS)}"
    )
  dataset = TFDS_DATASETS[name]
  if dataset.register is not None:
    dataset.register()
  try:
    train_source, test_source = _tfds().data_source(
        dataset.tfds_name,
        split=["train", dataset.test_split],
        data_dir=_tfds_data_dir(data_dir),
        download=False,
    )
  except Exception as error:
    # TFDS reports a missing dataset as KeyError, NotImplementedError or OSError
    # depending on what is on disk. Only when the builder confirms that nothing is
    # prepared is the failure translated; any other error propagates unchanged.
    builder = _builder(name, data_dir)
    if builder.is_prepared():
      raise
    raise FileNotFoundError(
        f"TFDS dataset {dataset.tfds_name!r} is not prepared: looked at "
        f"{builder.data_path} (dataset.data_dir={data_dir!r}); "
        f"{build_instructions(name, data_dir)}"
    ) from error
  info = train_source.dataset_info
  image_shape = tuple(int(size) for size in info.features["image"].shape)
  num_classes = int(info.features["label"].num_classes)
  # Without canonical class names the class count is the data's (Tiny-ImageNet: wnids.txt).
  expected_classes = dataset.facts.num_classes or num_classes
  if image_shape != dataset.facts.image_shape or num_classes != expected_classes:
    raise ValueError(
        f"TFDS dataset {dataset.tfds_name!r} has images {image_shape} and "
        f"{num_classes} classes; expected {dataset.facts.image_shape} and "
        f"{expected_classes}"
    )
  return DatasetSplits(
      name=name,
      train=_read_split(train_source, image_shape),
      test=_read_split(test_source, image_shape),
      num_classes=num_classes,
      class_names=class_names_from_label_feature(info.features["label"], dataset.facts),
      mean=dataset.facts.mean,
      std=dataset.facts.std,
  )
