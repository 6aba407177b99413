"""Tests of the dataset loaders, the registry and the validation split.

Every file format is exercised by writing a tiny file in the original layout to
tmp_path and loading it through `load_dataset`; TFDS is served offline by
`tfds.testing.mock_data`.
"""

from __future__ import annotations

import pickle

import ml_collections
import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from jaxat.data import ArrayDataset, DatasetSplits, load_dataset, split_validation
from jaxat.data.channel_statistics import channel_mean_std
from jaxat.data.public_datasets import CIFAR10, CIFAR100, SVHN
from jaxat.data.tfds_source import class_names_from_label_feature


def make_config(**overrides) -> ml_collections.ConfigDict:
  fields = dict(
      name="digits",
      source="auto",
      data_dir="",
      num_train=60,
      num_test=30,
      image_size=6,
      channels=3,
      num_classes=3,
      test_size=5,
  )
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def tagged_images(count: int, height: int = 32, width: int = 32, channels: int = 3,
                  first_tag: int = 0) -> np.ndarray:
  """uint8 (count, H, W, C) random images whose pixel [0, 0, 0] is a unique tag."""
  rng = np.random.default_rng(first_tag + 1000)
  images = rng.integers(0, 256, size=(count, height, width, channels), dtype=np.uint8)
  images[:, 0, 0, 0] = np.arange(first_tag, first_tag + count, dtype=np.uint8)
  return images


def to_cifar_rows(images: np.ndarray) -> np.ndarray:
  """NHWC uint8 -> the archives' (N, 3072) rows, each channel-major (C, H, W)."""
  return images.transpose(0, 3, 1, 2).reshape(images.shape[0], -1)


def write_pickle(path, contents: dict) -> None:
  with open(path, "wb") as file:
    pickle.dump(contents, file)


def write_cifar10(folder, per_batch: int = 2):
  """Writes a tiny cifar-10-batches-py folder; returns (train, test) ArrayDatasets."""
  folder.mkdir(parents=True)
  train_parts = []
  for batch_index in range(1, 6):
    images = tagged_images(per_batch, first_tag=10 * batch_index)
    labels = [(batch_index + offset) % 10 for offset in range(per_batch)]
    write_pickle(folder / f"data_batch_{batch_index}",
                 {b"data": to_cifar_rows(images), b"labels": labels})
    train_parts.append((images, labels))
  test_images = tagged_images(per_batch, first_tag=200)
  test_labels = [9 - offset for offset in range(per_batch)]
  write_pickle(folder / "test_batch", {b"data": to_cifar_rows(test_images), b"labels": test_labels})
  write_pickle(folder / "batches.meta",
               {b"label_names": [name.encode() for name in CIFAR10.class_names]})
  train = ArrayDataset(np.concatenate([images for images, _ in train_parts]),
                       np.array([label for _, labels in train_parts for label in labels], np.int32))
  return train, ArrayDataset(test_images, np.array(test_labels, np.int32))


# ----------------------------------------------------------------------------- CIFAR-10


def test_cifar10_pixel_lands_at_nhwc_position(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  write_cifar10(folder)
  rows = np.zeros((2, 3072), np.uint8)
  channel, row, column = 2, 5, 7
  rows[1, channel * 1024 + row * 32 + column] = 123  # blue plane, row 5, column 7
  write_pickle(folder / "data_batch_1", {b"data": rows, b"labels": [0, 1]})

  splits = load_dataset(make_config(name="cifar10", source="files", data_dir=str(tmp_path)))

  second_image = splits.train.images[1]
  assert second_image[row, column, channel] == 123
  assert np.count_nonzero(second_image) == 1
  assert np.count_nonzero(splits.train.images[0]) == 0


def test_cifar10_files_round_trip(tmp_path):
  expected_train, expected_test = write_cifar10(tmp_path / "cifar-10-batches-py")

  splits = load_dataset(make_config(name="cifar10", source="files", data_dir=str(tmp_path)))

  assert splits.name == "cifar10"
  assert splits.train.images.dtype == np.uint8 and splits.train.labels.dtype == np.int32
  assert splits.train.images.shape == (10, 32, 32, 3)
  np.testing.assert_array_equal(splits.train.images, expected_train.images)
  np.testing.assert_array_equal(splits.train.labels, expected_train.labels)
  np.testing.assert_array_equal(splits.test.images, expected_test.images)
  np.testing.assert_array_equal(splits.test.labels, expected_test.labels)
  assert splits.num_classes == 10
  assert splits.class_names == CIFAR10.class_names
  assert splits.mean == CIFAR10.mean and splits.std == CIFAR10.std
  assert splits.image_shape == (32, 32, 3)


def test_cifar10_data_dir_may_be_the_extracted_folder(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  expected_train, _ = write_cifar10(folder)

  splits = load_dataset(make_config(name="cifar10", source="files", data_dir=str(folder)))

  np.testing.assert_array_equal(splits.train.images, expected_train.images)


def test_auto_prefers_original_files_over_tfds(tmp_path):
  expected_train, _ = write_cifar10(tmp_path / "cifar-10-batches-py")
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=3):
    splits = load_dataset(make_config(name="cifar10", source="auto", data_dir=str(tmp_path)))
  np.testing.assert_array_equal(splits.train.images, expected_train.images)


# ---------------------------------------------------------------------------- CIFAR-100


def test_cifar100_files_round_trip_uses_fine_labels(tmp_path):
  folder = tmp_path / "cifar-100-python"
  folder.mkdir()
  train_images, test_images = tagged_images(3), tagged_images(2, first_tag=50)
  fine_names = [f"fine_{index:02d}".encode() for index in range(100)]
  write_pickle(folder / "train", {b"data": to_cifar_rows(train_images),
                                  b"fine_labels": [99, 0, 42], b"coarse_labels": [19, 0, 7]})
  write_pickle(folder / "test", {b"data": to_cifar_rows(test_images),
                                 b"fine_labels": [5, 77], b"coarse_labels": [1, 2]})
  write_pickle(folder / "meta", {b"fine_label_names": fine_names,
                                 b"coarse_label_names": [b"c"] * 20})

  splits = load_dataset(make_config(name="cifar100", source="files", data_dir=str(tmp_path)))

  np.testing.assert_array_equal(splits.train.images, train_images)
  np.testing.assert_array_equal(splits.test.images, test_images)
  np.testing.assert_array_equal(splits.train.labels, [99, 0, 42])
  np.testing.assert_array_equal(splits.test.labels, [5, 77])
  assert splits.num_classes == 100
  assert splits.class_names[42] == "fine_42" and len(splits.class_names) == 100
  assert splits.mean == CIFAR100.mean and splits.std == CIFAR100.std


# --------------------------------------------------------------------------------- SVHN


def test_svhn_mat_round_trip_transposes_and_maps_label_10_to_0(tmp_path):
  train_images, test_images = tagged_images(4), tagged_images(2, first_tag=30)
  # The .mat files store the image index last: (32, 32, 3, N).
  scipy.io.savemat(tmp_path / "train_32x32.mat",
                   {"X": train_images.transpose(1, 2, 3, 0),
                    "y": np.array([[10], [1], [9], [10]], np.uint8)})
  scipy.io.savemat(tmp_path / "test_32x32.mat",
                   {"X": test_images.transpose(1, 2, 3, 0), "y": np.array([[3], [10]], np.uint8)})

  splits = load_dataset(make_config(name="svhn", source="files", data_dir=str(tmp_path)))

  np.testing.assert_array_equal(splits.train.images, train_images)
  np.testing.assert_array_equal(splits.test.images, test_images)
  np.testing.assert_array_equal(splits.train.labels, [0, 1, 9, 0])
  np.testing.assert_array_equal(splits.test.labels, [3, 0])
  assert splits.train.labels.dtype == np.int32
  assert splits.class_names == SVHN.class_names
  assert splits.mean == SVHN.mean and splits.std == SVHN.std


def test_svhn_labels_outside_1_to_10_are_rejected(tmp_path):
  images = tagged_images(2).transpose(1, 2, 3, 0)
  scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": images, "y": np.array([[0], [1]])})
  scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": images, "y": np.array([[1], [2]])})
  with pytest.raises(ValueError, match="labels in 1..10"):
    load_dataset(make_config(name="svhn", source="files", data_dir=str(tmp_path)))


# ---------------------------------------------------------------------------------- npz


def test_npz_single_file_carves_fixed_test_split(tmp_path):
  count, test_size = 20, 5
  images = tagged_images(count, height=4, width=4, channels=1)[..., 0]  # grayscale
  labels = (np.arange(count) % 4).astype(np.uint8)
  path = tmp_path / "data.npz"
  np.savez(path, x=images, y=labels)

  splits = load_dataset(make_config(name="npz", source="files", data_dir=str(path),
                                    test_size=test_size))

  permutation = np.random.default_rng(0).permutation(count)
  expected_test = np.sort(permutation[-test_size:])
  expected_train = np.sort(permutation[:-test_size])
  assert splits.train.images.shape == (count - test_size, 4, 4, 1)
  assert splits.test.images.shape == (test_size, 4, 4, 1)
  np.testing.assert_array_equal(splits.test.images[..., 0], images[expected_test])
  np.testing.assert_array_equal(splits.train.images[..., 0], images[expected_train])
  np.testing.assert_array_equal(splits.test.labels, labels[expected_test])
  assert splits.train.labels.dtype == np.int32
  assert splits.num_classes == 4
  expected_mean, expected_std = channel_mean_std(splits.train.images)
  assert splits.mean == expected_mean and splits.std == expected_std
  # The carve does not depend on anything but the file: a second load agrees.
  again = load_dataset(make_config(name="npz", source="auto", data_dir=str(path),
                                   test_size=test_size))
  np.testing.assert_array_equal(again.test.images, splits.test.images)


def test_npz_file_with_test_arrays(tmp_path):
  path = tmp_path / "data.npz"
  train_images, test_images = tagged_images(6, 5, 5, 3), tagged_images(3, 5, 5, 3, first_tag=40)
  np.savez(path, x=train_images, y=np.array([0, 1, 2, 0, 1, 2], np.int64),
           x_test=test_images, y_test=np.array([3, 0, 1], np.int16))

  splits = load_dataset(make_config(name="npz", source="files", data_dir=str(path), test_size=0))

  np.testing.assert_array_equal(splits.train.images, train_images)
  np.testing.assert_array_equal(splits.test.images, test_images)
  np.testing.assert_array_equal(splits.test.labels, [3, 0, 1])
  assert splits.num_classes == 4  # the largest label over both splits + 1
  assert splits.class_names == tuple(str(index) for index in range(4))


def test_npz_folder_with_train_and_test(tmp_path):
  train_images, test_images = tagged_images(4, 3, 3, 3), tagged_images(2, 3, 3, 3, first_tag=9)
  np.savez(tmp_path / "train.npz", x=train_images, y=np.array([1, 0, 1, 0]))
  np.savez(tmp_path / "test.npz", x=test_images, y=np.array([0, 1]))

  splits = load_dataset(make_config(name="npz", source="files", data_dir=str(tmp_path)))

  np.testing.assert_array_equal(splits.train.images, train_images)
  np.testing.assert_array_equal(splits.test.images, test_images)
  np.testing.assert_array_equal(splits.train.labels, [1, 0, 1, 0])
  assert splits.num_classes == 2 and splits.image_shape == (3, 3, 3)


@pytest.mark.parametrize("test_size", [0, -1, 10, 11])
def test_npz_carve_rejects_bad_test_size(tmp_path, test_size):
  path = tmp_path / "data.npz"
  np.savez(path, x=tagged_images(10, 2, 2, 1), y=np.zeros(10, np.int32))
  with pytest.raises(ValueError, match=f"test_size={test_size}"):
    load_dataset(make_config(name="npz", data_dir=str(path), test_size=test_size))


def test_npz_rejects_non_uint8_images(tmp_path):
  path = tmp_path / "data.npz"
  np.savez(path, x=np.zeros((4, 2, 2, 1), np.float32), y=np.zeros(4, np.int32))
  with pytest.raises(ValueError, match="uint8"):
    load_dataset(make_config(name="npz", data_dir=str(path)))


def test_npz_missing_file_names_the_path(tmp_path):
  missing = tmp_path / "nowhere.npz"
  with pytest.raises(FileNotFoundError, match="nowhere.npz"):
    load_dataset(make_config(name="npz", data_dir=str(missing)))


def test_npz_rejects_tfds_source(tmp_path):
  with pytest.raises(ValueError, match="'files' or 'auto'"):
    load_dataset(make_config(name="npz", source="tfds", data_dir=str(tmp_path)))


# --------------------------------------------------------------------------------- TFDS


@pytest.mark.parametrize(
    "name, tfds_name, facts",
    [("cifar10", "cifar10", CIFAR10), ("cifar100", "cifar100", CIFAR100),
     ("svhn", "svhn_cropped", SVHN)],
)
def test_tfds_source_matches_records(name, tfds_name, facts):
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=6):
    splits = load_dataset(make_config(name=name, source="tfds"))
    reference = tfds.data_source(tfds_name, split="test")
    expected_images = np.stack([reference[index]["image"] for index in range(6)])
    expected_labels = [int(reference[index]["label"]) for index in range(6)]

  assert splits.train.images.shape == (6, 32, 32, 3) and splits.test.images.shape == (6, 32, 32, 3)
  assert splits.train.images.dtype == np.uint8 and splits.test.labels.dtype == np.int32
  np.testing.assert_array_equal(splits.test.images, expected_images)
  np.testing.assert_array_equal(splits.test.labels, expected_labels)
  assert splits.num_classes == facts.num_classes
  assert splits.class_names == facts.class_names
  assert splits.mean == facts.mean and splits.std == facts.std


def test_auto_falls_back_to_tfds_when_no_files(tmp_path):
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=4):
    splits = load_dataset(make_config(name="cifar10", source="auto", data_dir=str(tmp_path)))
  assert len(splits.train) == 4 and splits.num_classes == 10


def test_class_names_prefer_recorded_names_over_placeholders():
  recorded = tfds.features.ClassLabel(names=[f"name_{index}" for index in range(10)])
  placeholder = tfds.features.ClassLabel(num_classes=10)
  assert class_names_from_label_feature(recorded, CIFAR10)[3] == "name_3"
  assert class_names_from_label_feature(placeholder, CIFAR10) == CIFAR10.class_names


# ------------------------------------------------------------------------------- errors


def test_unknown_dataset_name_lists_valid_names():
  with pytest.raises(ValueError) as raised:
    load_dataset(make_config(name="imagenet"))
  message = str(raised.value)
  assert "imagenet" in message
  for valid in ("digits", "synthetic", "cifar10", "cifar100", "svhn", "npz"):
    assert repr(valid) in message


def test_unknown_source_lists_valid_sources():
  with pytest.raises(ValueError, match="'auto', 'tfds', 'files'"):
    load_dataset(make_config(name="cifar10", source="web"))


def test_missing_original_files_names_paths_looked_at(tmp_path):
  with pytest.raises(FileNotFoundError) as raised:
    load_dataset(make_config(name="cifar10", source="files", data_dir=str(tmp_path)))
  message = str(raised.value)
  assert str(tmp_path / "cifar-10-batches-py") in message
  assert "data_batch_1" in message and "cifar-10-python.tar.gz" in message


def test_auto_without_any_data_names_every_path_and_both_remedies(tmp_path):
  with pytest.raises(FileNotFoundError) as raised:
    load_dataset(make_config(name="svhn", source="auto", data_dir=str(tmp_path)))
  message = str(raised.value)
  assert "train_32x32.mat" in message and str(tmp_path) in message
  assert str(tmp_path / "svhn_cropped") in message  # where TFDS looked
  assert "tfds build svhn_cropped" in message and "housenumbers" in message


def test_tfds_source_without_prepared_data_names_its_path(tmp_path):
  with pytest.raises(FileNotFoundError) as raised:
    load_dataset(make_config(name="cifar100", source="tfds", data_dir=str(tmp_path)))
  assert str(tmp_path / "cifar100") in str(raised.value)


# ------------------------------------------------------------------ digits and synthetic


def test_digits_fixed_split():
  splits = load_dataset(make_config(name="digits"))
  again = load_dataset(make_config(name="digits"))

  assert len(splits.train) == 1437 and len(splits.test) == 360
  assert splits.train.images.shape == (1437, 8, 8, 1)
  assert splits.train.images.dtype == np.uint8 and splits.train.labels.dtype == np.int32
  assert splits.train.images.min() == 0 and splits.train.images.max() == 255
  # Raw values 0..16 map to round(v * 255 / 16); nothing else can appear.
  allowed = np.rint(np.arange(17) * 255 / 16).astype(np.uint8)
  assert set(np.unique(splits.train.images)) <= set(allowed)
  assert splits.class_names == tuple("0123456789") and splits.num_classes == 10
  # Stratified: every class keeps roughly 20% of its examples in test.
  assert np.all(np.abs(np.bincount(splits.test.labels) - 36) <= 2)
  np.testing.assert_array_equal(splits.train.images, again.train.images)
  np.testing.assert_array_equal(splits.test.labels, again.test.labels)
  expected_mean, expected_std = channel_mean_std(splits.train.images)
  assert splits.mean == expected_mean and splits.std == expected_std


def test_synthetic_shape_determinism_and_learnability():
  config = make_config(name="synthetic", num_train=60, num_test=30, image_size=6,
                       channels=3, num_classes=3)
  splits = load_dataset(config)
  again = load_dataset(config)
  other = load_dataset(make_config(name="synthetic", num_train=61, num_test=30,
                                   image_size=6, channels=3, num_classes=3))

  assert splits.train.images.shape == (60, 6, 6, 3) and splits.test.images.shape == (30, 6, 6, 3)
  assert splits.train.images.dtype == np.uint8 and splits.train.labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(splits.train.labels), [20, 20, 20])
  assert splits.num_classes == 3 and splits.class_names == ("0", "1", "2")
  np.testing.assert_array_equal(splits.train.images, again.train.images)
  np.testing.assert_array_equal(splits.test.labels, again.test.labels)
  assert not np.array_equal(splits.train.images[:60], other.train.images[:60])
  # Learnable: the nearest class mean of the training images classifies test well.
  train = splits.train.images.reshape(60, -1).astype(np.float64)
  test = splits.test.images.reshape(30, -1).astype(np.float64)
  centroids = np.stack([train[splits.train.labels == label].mean(0) for label in range(3)])
  predictions = np.argmin(((test[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
  assert np.mean(predictions == splits.test.labels) > 0.9


def test_synthetic_rejects_bad_sizes():
  with pytest.raises(ValueError, match="num_classes >= 2"):
    load_dataset(make_config(name="synthetic", num_classes=1))


# ---------------------------------------------------------------------- containers/stats


def test_array_dataset_validates_dtype_rank_and_length():
  good_images = np.zeros((2, 3, 3, 1), np.uint8)
  with pytest.raises(ValueError, match="uint8"):
    ArrayDataset(good_images.astype(np.float32), np.zeros(2, np.int32))
  with pytest.raises(ValueError, match="rank 4"):
    ArrayDataset(good_images[..., 0], np.zeros(2, np.int32))
  with pytest.raises(ValueError, match="int32"):
    ArrayDataset(good_images, np.zeros(2, np.int64))
  with pytest.raises(ValueError, match="2 images, 3 labels"):
    ArrayDataset(good_images, np.zeros(3, np.int32))
  assert len(ArrayDataset(good_images, np.zeros(2, np.int32))) == 2


def test_dataset_splits_rejects_labels_out_of_range():
  data = ArrayDataset(np.zeros((2, 3, 3, 1), np.uint8), np.array([0, 5], np.int32))
  with pytest.raises(ValueError, match=r"\[0, 5\]"):
    DatasetSplits("toy", data, data, num_classes=5, class_names=tuple("abcde"),
                  mean=(0.5,), std=(0.2,))


def test_channel_mean_std_known_answer():
  images = np.zeros((2, 2, 2, 2), np.uint8)
  images[0, ..., 0] = 255  # channel 0: half 1.0, half 0.0; channel 1: all 0
  mean, std = channel_mean_std(images)
  np.testing.assert_allclose(mean, (0.5, 0.0))
  np.testing.assert_allclose(std, (0.5, 1 / 255))  # a constant channel gets the floor


# --------------------------------------------------------------------- validation split


def id_dataset(count: int) -> ArrayDataset:
  """A dataset whose label is each example's original index."""
  images = np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None],
                           (count, 2, 2, 1)).copy()
  return ArrayDataset(images, np.arange(count, dtype=np.int32))


def test_split_validation_partitions_deterministically():
  train = id_dataset(50)
  remaining, validation = split_validation(train, val_size=10, seed=3)
  remaining_again, validation_again = split_validation(train, val_size=10, seed=3)
  _, validation_other_seed = split_validation(train, val_size=10, seed=4)

  assert len(remaining) == 40 and len(validation) == 10
  assert set(remaining.labels).isdisjoint(validation.labels)
  assert sorted([*remaining.labels, *validation.labels]) == list(range(50))
  np.testing.assert_array_equal(validation.labels,
                                np.random.default_rng(3).permutation(50)[:10])
  assert np.all(np.diff(remaining.labels) > 0)  # remaining keeps the original order
  np.testing.assert_array_equal(remaining.images[:, 0, 0, 0], remaining.labels)
  np.testing.assert_array_equal(remaining.labels, remaining_again.labels)
  np.testing.assert_array_equal(validation.labels, validation_again.labels)
  assert set(validation.labels) != set(validation_other_seed.labels)


def test_split_validation_zero_returns_train_unchanged():
  train = id_dataset(5)
  remaining, validation = split_validation(train, val_size=0, seed=0)
  assert remaining is train and validation is None


@pytest.mark.parametrize("val_size", [-1, 5, 6])
def test_split_validation_rejects_bad_size(val_size):
  with pytest.raises(ValueError, match=f"val_size={val_size}.*\\[0, 4\\]"):
    split_validation(id_dataset(5), val_size=val_size, seed=0)
