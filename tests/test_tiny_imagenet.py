"""Tiny-ImageNet: the original folder layout, the decoded-array cache, the TFDS route
(jaxat's own builder), the presets and a training run on a miniature folder written with
Pillow in tmp_path."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

import jaxat.data.tiny_imagenet as tiny_imagenet
from jaxat.config.validate import validate_config
from jaxat.data import load_dataset
from jaxat.models.registry import create_model
from jaxat.train import train as train_lib
from tiny_runs import load_config, run_cli

# wnids.txt lists them unsorted: the class index is the position in *sorted* order.
WNIDS_IN_FILE = ("n03", "n01", "n02")
SORTED_INDEX = {"n01": 0, "n02": 1, "n03": 2}
TRAIN_PER_CLASS = 4
# val file -> wnid; the annotation file lists them in a shuffled order.
VAL_WNIDS = {"val_0.JPEG": "n02", "val_1.JPEG": "n03", "val_2.JPEG": "n01",
             "val_3.JPEG": "n02", "val_4.JPEG": "n01"}
ANNOTATION_ORDER = ("val_3.JPEG", "val_0.JPEG", "val_4.JPEG", "val_2.JPEG", "val_1.JPEG")
# Hand-computed: val files sorted by name, label = index of their wnid in sorted order.
EXPECTED_TEST_LABELS = [1, 2, 0, 1, 0]
GREY_FILE = ("n02", 1)   # train/n02/images/n02_1.JPEG is written as a greyscale JPEG
SIDE = 64


def colour(seed: int) -> tuple[int, int, int]:
  """A distinct, JPEG-safe uniform colour per image (channels 30 apart at least)."""
  return (40 + 37 * seed % 180, 200 - 23 * seed % 160, 60 + 53 * seed % 150)


def grey_image() -> np.ndarray:
  """uint8 (64, 64) horizontal gradient."""
  return np.tile(np.linspace(10, 240, SIDE).astype(np.uint8), (SIDE, 1))


def write_jpeg(path, pixels: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path, format="JPEG", quality=100)


def write_miniature(root):
  """tiny-imagenet-200/ under root: 3 classes × 4 train JPEGs, 5 val JPEGs, an unlabelled
  test image; returns (folder, {train path: colour}, {val file: colour})."""
  folder = root / "tiny-imagenet-200"
  folder.mkdir(parents=True)
  (folder / "wnids.txt").write_text("\n".join(WNIDS_IN_FILE) + "\n")
  train_colours = {}
  for wnid in WNIDS_IN_FILE:
    for k in range(TRAIN_PER_CLASS):
      path = folder / "train" / wnid / "images" / f"{wnid}_{k}.JPEG"
      if (wnid, k) == GREY_FILE:
        write_jpeg(path, grey_image())
        continue
      seed = 10 * SORTED_INDEX[wnid] + k
      write_jpeg(path, np.full((SIDE, SIDE, 3), colour(seed), np.uint8))
      train_colours[(wnid, k)] = colour(seed)
    (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
  val_colours = {}
  for index, name in enumerate(sorted(VAL_WNIDS)):
    val_colours[name] = colour(100 + index)
    write_jpeg(folder / "val" / "images" / name, np.full((SIDE, SIDE, 3), val_colours[name], np.uint8))
  (folder / "val" / "val_annotations.txt").write_text("".join(
      f"{name}\t{VAL_WNIDS[name]}\t0\t0\t63\t63\n" for name in ANNOTATION_ORDER))
  write_jpeg(folder / "test" / "images" / "test_0.JPEG", np.zeros((SIDE, SIDE, 3), np.uint8))
  return folder, train_colours, val_colours


def data_config(data_dir, **overrides) -> ml_collections.ConfigDict:
  fields = dict(name="tiny_imagenet", source="auto", data_dir=str(data_dir), cache_dir="")
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


@pytest.fixture()
def miniature(tmp_path):
  return write_miniature(tmp_path / "data")


# ----------------------------------------------------------------------------- reading


def test_shapes_dtypes_and_sorted_wnid_labels(miniature):
  folder, train_colours, _ = miniature
  splits = load_dataset(data_config(folder.parent))
  assert splits.name == "tiny_imagenet" and splits.num_classes == 3
  assert splits.class_names == ("n01", "n02", "n03")
  assert splits.train.images.shape == (12, SIDE, SIDE, 3) and splits.train.images.dtype == np.uint8
  assert splits.test.images.shape == (5, SIDE, SIDE, 3)
  assert splits.train.labels.dtype == np.int32 and splits.test.labels.dtype == np.int32
  # Class by class in sorted wnid order, files sorted within a class.
  np.testing.assert_array_equal(splits.train.labels, [0] * 4 + [1] * 4 + [2] * 4)
  for wnid, label in SORTED_INDEX.items():
    for k in range(TRAIN_PER_CLASS):
      if (wnid, k) == GREY_FILE:
        continue
      image = splits.train.images[TRAIN_PER_CLASS * label + k].astype(int)
      assert np.abs(image - np.asarray(train_colours[(wnid, k)])).max() <= 3, (wnid, k)
  assert splits.mean == tiny_imagenet.MEAN and splits.std == tiny_imagenet.STD


def test_val_labels_come_from_the_annotations_file(miniature):
  folder, _, val_colours = miniature
  splits = load_dataset(data_config(folder))       # data_dir may be the extracted folder
  np.testing.assert_array_equal(splits.test.labels, EXPECTED_TEST_LABELS)
  for index, name in enumerate(sorted(VAL_WNIDS)):
    image = splits.test.images[index].astype(int)
    assert np.abs(image - np.asarray(val_colours[name])).max() <= 3, name


def test_greyscale_jpeg_becomes_rgb_with_equal_channels(miniature):
  folder, _, _ = miniature
  splits = load_dataset(data_config(folder.parent))
  wnid, k = GREY_FILE
  image = splits.train.images[TRAIN_PER_CLASS * SORTED_INDEX[wnid] + k]
  with Image.open(folder / "train" / wnid / "images" / f"{wnid}_{k}.JPEG") as grey:
    assert grey.mode == "L"
    decoded_grey = np.asarray(grey)
  for channel in range(3):
    np.testing.assert_array_equal(image[..., channel], decoded_grey)
  assert image[..., 0].std() > 10      # the gradient survived, not a flat image


# ----------------------------------------------------------------------------- cache


def refuse_decoding(monkeypatch):
  def fail(path):
    raise AssertionError(f"decoded {path} although the cache is valid")
  monkeypatch.setattr(tiny_imagenet, "_decode_image", fail)


def test_cache_is_written_then_reused_without_decoding(miniature, monkeypatch):
  folder, _, _ = miniature
  first = load_dataset(data_config(folder.parent))
  cache = folder / tiny_imagenet.CACHE_FILE_NAME
  assert cache.is_file()
  with np.load(cache) as arrays:
    assert {"train_images", "test_images", "fingerprint"} <= set(arrays.files)
  refuse_decoding(monkeypatch)
  again = load_dataset(data_config(folder.parent))
  np.testing.assert_array_equal(again.train.images, first.train.images)
  np.testing.assert_array_equal(again.test.labels, first.test.labels)
  assert again.class_names == first.class_names


def test_stale_cache_is_rebuilt(miniature, monkeypatch):
  folder, _, _ = miniature
  load_dataset(data_config(folder.parent))
  changed = folder / "val" / "images" / "val_2.JPEG"
  before = changed.stat().st_size
  pixels = np.asarray(Image.open(changed).convert("RGB")) // 2 + 1
  # Noise in one corner makes the file size differ for sure (the fingerprint's signal).
  pixels[32:, 32:] = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
  write_jpeg(changed, pixels)
  assert changed.stat().st_size != before
  with monkeypatch.context() as patch:
    refuse_decoding(patch)
    with pytest.raises(AssertionError, match="decoded"):
      load_dataset(data_config(folder.parent))
  rebuilt = load_dataset(data_config(folder.parent))
  assert abs(int(rebuilt.test.images[2, 0, 0, 0]) - (colour(102)[0] // 2 + 1)) <= 3
  refuse_decoding(monkeypatch)       # the rebuilt cache is valid again
  load_dataset(data_config(folder.parent))


def test_unreadable_cache_is_rebuilt(miniature):
  folder, _, _ = miniature
  first = load_dataset(data_config(folder.parent))
  (folder / tiny_imagenet.CACHE_FILE_NAME).write_bytes(b"not an npz")
  again = load_dataset(data_config(folder.parent))
  np.testing.assert_array_equal(again.train.images, first.train.images)


def test_cache_dir_field_places_the_cache(miniature, tmp_path):
  folder, _, _ = miniature
  cache_dir = tmp_path / "cache"
  load_dataset(data_config(folder.parent, cache_dir=str(cache_dir)))
  assert (cache_dir / tiny_imagenet.CACHE_FILE_NAME).is_file()
  assert not (folder / tiny_imagenet.CACHE_FILE_NAME).exists()


# ----------------------------------------------------------------------------- errors


def one_line(error: pytest.ExceptionInfo) -> str:
  message = str(error.value)
  assert "\n" not in message, message
  return message


def test_missing_folder_names_paths_and_download(tmp_path):
  for source in ("files", "auto"):
    with pytest.raises(FileNotFoundError) as error:
      load_dataset(data_config(tmp_path, source=source))
    message = one_line(error)
    assert str(tmp_path / "tiny-imagenet-200") in message
    assert "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in message


def test_missing_class_folder_names_it(miniature):
  folder, _, _ = miniature
  images = folder / "train" / "n02" / "images"
  for path in images.iterdir():
    path.unlink()
  images.rmdir()
  with pytest.raises(FileNotFoundError) as error:
    load_dataset(data_config(folder.parent))
  message = one_line(error)
  assert str(images) in message and "tiny-imagenet-200.zip" in message


def test_missing_val_image_names_it(miniature):
  folder, _, _ = miniature
  (folder / "val" / "images" / "val_4.JPEG").unlink()
  with pytest.raises(FileNotFoundError, match="val_4.JPEG") as error:
    load_dataset(data_config(folder.parent))
  one_line(error)


def test_malformed_annotation_names_file_and_line(miniature):
  folder, _, _ = miniature
  with open(folder / "val" / "val_annotations.txt", "a") as f:
    f.write("val_9.JPEG\tn99\t0\t0\t1\t1\n")
  with pytest.raises(ValueError, match=r"val_annotations.txt:6: .*'val_9.JPEG\\tn99") as error:
    load_dataset(data_config(folder.parent))
  one_line(error)


def test_corrupt_jpeg_names_the_file(miniature):
  folder, _, _ = miniature
  broken = folder / "train" / "n01" / "images" / "n01_2.JPEG"
  broken.write_bytes(b"not a jpeg")
  with pytest.raises(ValueError, match="n01_2.JPEG") as error:
    load_dataset(data_config(folder.parent))
  one_line(error)


def test_cache_dir_must_be_a_string(miniature):
  folder, _, _ = miniature
  with pytest.raises(ValueError, match="dataset.cache_dir must be a folder path") as error:
    load_dataset(data_config(folder.parent, cache_dir=3))
  one_line(error)
  config = load_config("las_at", "tiny_imagenet")   # an override is refused by the config
  with pytest.raises(TypeError, match="cache_dir"):
    config.dataset.cache_dir = 3


# ----------------------------------------------------------------------------- TFDS


def prepare_tfds(manual_dir, data_dir) -> None:
  """Prepares the TFDS dataset through the documented command's entry point."""
  from jaxat.data import tfds_tiny_imagenet
  assert tfds_tiny_imagenet.main([f"--manual_dir={manual_dir}", f"--data_dir={data_dir}"]) == 0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(folder of the miniature, TFDS data_dir prepared from it): written once per module."""
  root = tmp_path_factory.mktemp("tfds_tiny")
  folder, _, _ = write_miniature(root / "manual")
  prepare_tfds(root / "manual", root / "tfds")
  return folder, root / "tfds"


def test_tfds_route_gives_the_folder_routes_arrays(prepared):
  folder, tfds_dir = prepared
  from_tfds = load_dataset(data_config(tfds_dir, source="tfds"))
  from_files = load_dataset(data_config(folder, source="files", cache_dir=str(tfds_dir / "npz")))
  # Hand-computed labels, independent of both readers: a shifted label or a changed class
  # order fails here, not only a disagreement between the routes.
  np.testing.assert_array_equal(from_tfds.train.labels, [0] * 4 + [1] * 4 + [2] * 4)
  np.testing.assert_array_equal(from_tfds.test.labels, EXPECTED_TEST_LABELS)
  assert from_tfds.class_names == ("n01", "n02", "n03") and from_tfds.num_classes == 3
  for index, name in enumerate(sorted(VAL_WNIDS)):
    image = from_tfds.test.images[index].astype(int)
    assert np.abs(image - np.asarray(colour(100 + index))).max() <= 3, name
  # Same bits as the folder route, in the same order (PNG storage is lossless).
  for split in ("train", "test"):
    tfds_split, files_split = getattr(from_tfds, split), getattr(from_files, split)
    assert tfds_split.images.dtype == np.uint8 and tfds_split.labels.dtype == np.int32
    np.testing.assert_array_equal(tfds_split.images, files_split.images)
    np.testing.assert_array_equal(tfds_split.labels, files_split.labels)
  assert from_tfds.class_names == from_files.class_names
  assert from_tfds.mean == tiny_imagenet.MEAN and from_tfds.std == tiny_imagenet.STD


def test_tfds_route_converts_greyscale_to_rgb(prepared):
  folder, tfds_dir = prepared
  splits = load_dataset(data_config(tfds_dir, source="tfds"))
  wnid, k = GREY_FILE
  image = splits.train.images[TRAIN_PER_CLASS * SORTED_INDEX[wnid] + k]
  with Image.open(folder / "train" / wnid / "images" / f"{wnid}_{k}.JPEG") as grey:
    assert grey.mode == "L"
    decoded_grey = np.asarray(grey)
  assert image.shape == (SIDE, SIDE, 3)
  for channel in range(3):
    np.testing.assert_array_equal(image[..., channel], decoded_grey)


def test_auto_reads_a_prepared_tfds_dir_without_the_folder(prepared):
  _, tfds_dir = prepared
  splits = load_dataset(data_config(tfds_dir, source="auto"))
  np.testing.assert_array_equal(splits.test.labels, EXPECTED_TEST_LABELS)


def test_tfds_prepared_from_the_zip(tmp_path):
  folder, _, _ = write_miniature(tmp_path / "src")
  (tmp_path / "manual").mkdir()
  shutil.make_archive(str(tmp_path / "manual" / "tiny-imagenet-200"), "zip", folder.parent,
                      "tiny-imagenet-200")
  prepare_tfds(tmp_path / "manual", tmp_path / "tfds")
  splits = load_dataset(data_config(tmp_path / "tfds", source="tfds"))
  np.testing.assert_array_equal(splits.train.labels, [0] * 4 + [1] * 4 + [2] * 4)
  np.testing.assert_array_equal(splits.test.labels, EXPECTED_TEST_LABELS)
  assert splits.class_names == ("n01", "n02", "n03")


def test_unprepared_tfds_dir_names_field_value_and_command(tmp_path):
  with pytest.raises(FileNotFoundError) as error:
    load_dataset(data_config(tmp_path, source="tfds"))
  message = one_line(error)
  assert f"dataset.data_dir='{tmp_path}'" in message
  assert str(tmp_path / "tiny_imagenet") in message
  assert "python -m jaxat.data.tfds_tiny_imagenet --manual_dir=" in message
  assert f"--data_dir={tmp_path}" in message


def test_prepare_without_the_files_fails_in_one_line(tmp_path, capsys):
  from jaxat.data import tfds_tiny_imagenet
  (tmp_path / "manual").mkdir()
  assert tfds_tiny_imagenet.main([f"--manual_dir={tmp_path / 'manual'}",
                                  f"--data_dir={tmp_path / 'tfds'}"]) == 1
  error = capsys.readouterr().err.strip().splitlines()[-1]
  assert error.startswith("error: Tiny-ImageNet files not found in manual_dir")
  assert "tiny-imagenet-200.zip" in error


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("overrides", [dict(name="preact_resnet18", final_bn=False),
                                       dict(name="preact_resnet18", final_bn=True),
                                       dict(name="resnet18")])
def test_models_of_the_presets_take_64x64_inputs_and_200_classes(overrides):
  cfg = load_config("las_at", "tiny_imagenet").model
  cfg = ml_collections.ConfigDict({**cfg.to_dict(), **overrides})
  model = create_model(cfg, 200, tiny_imagenet.MEAN, tiny_imagenet.STD)
  x = jax.ShapeDtypeStruct((2, SIDE, SIDE, 3), jnp.float32)
  logits, features = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False)[0], x)
  assert logits.shape == (2, 200) and features.shape == (2, 512)


# ----------------------------------------------------------------------------- presets

LAS_AT_COMMON = dict(
    dataset={"name": "tiny_imagenet", "val_size": 0, "cache_dir": ""},
    model={"name": "preact_resnet18", "final_bn": False, "normalization": "none"},
    augment={"crop_padding": 0, "flip": False},
    optimizer={"momentum": 0.9, "weight_decay": 5e-4, "grad_clip_norm": 10.0, "nesterov": False},
    eval={"eps": 8 / 255, "step_size": 2 / 255, "pgd_steps": 10, "num_test_examples": 0},
    batch_size=128, num_epochs=110, seed=0)
EXPECTED = {
    ("las_at", "tiny_imagenet"): dict(
        LAS_AT_COMMON,
        schedule={"name": "multistep", "lr_max": 0.1, "boundaries": [99 / 110, 104 / 110],
                  "decay_factor": 0.1, "per_epoch": False},
        strategy={"interval": 1, "eps": [k / 255 for k in range(3, 16)],
                  "steps": [float(k) for k in range(3, 15)],
                  "step_size": [k / 255 for k in range(1, 6)], "beta": []},
        reward={"c2": 4.0, "c3": 2.0}, policy={"momentum": 0.0, "weight_decay": 0.0, "lr": 1e-4},
        base={"name": "pgd_at", "label_smoothing": 0.8}),
    ("las_at", "tiny_imagenet,trades"): dict(
        LAS_AT_COMMON,
        schedule={"name": "multistep", "lr_max": 0.1, "boundaries": [0.75, 0.9],
                  "decay_factor": 0.1, "per_epoch": False},
        strategy={"interval": 1, "eps": [k / 255 for k in range(5, 11)],
                  "steps": [float(k) for k in range(7, 15)],
                  "step_size": [k / 255 for k in range(2, 5)],
                  "beta": [float(k) for k in range(5, 10)]},
        reward={"c2": 8.0, "c3": 2.0, "attack_clip": 20.0, "piece_clip": 20.0},
        policy={"momentum": 0.0, "weight_decay": 0.0, "lr": 1e-4},
        base={"name": "trades"}),
}
ECAS_EXPECTED = {
    "pgd_at": dict(num_epochs=110, seed=1, normalization="none", eps=range(3, 13), big=(10, 11, 12),
                   schedule={"name": "multistep", "boundaries": [99 / 110, 104 / 110]},
                   objective="ce"),
    "trades": dict(num_epochs=110, seed=0, normalization="none", eps=range(5, 10), big=(8, 9),
                   schedule={"name": "multistep", "boundaries": [99 / 110]}, objective="kl"),
    "awp": dict(num_epochs=200, seed=1, normalization="dataset", eps=range(6, 16),
                big=(13, 14, 15), schedule={"name": "piecewise", "boundaries": [0.5, 0.75]},
                objective="ce"),
}


def assert_fields(section: dict, expected: dict, where: str) -> None:
  for key, value in expected.items():
    assert key in section, f"{where}.{key} missing"
    got = section[key]
    if isinstance(value, list):
      assert list(got) == pytest.approx(value), f"{where}.{key}"
    elif isinstance(value, float):
      assert got == pytest.approx(value), f"{where}.{key}"
    else:
      assert got == value, f"{where}.{key}: {got!r} != {value!r}"


@pytest.mark.parametrize("arg", ["tiny_imagenet", "tiny_imagenet,trades"])
def test_las_at_presets_validate_and_write_the_official_fields(arg):
  config = load_config("las_at", arg)
  validate_config(config, 1)
  written = json.loads(json.dumps(train_lib.config_to_dict(config)))
  expected = EXPECTED[("las_at", arg)]
  for section in ("dataset", "model", "augment", "optimizer", "eval", "schedule"):
    assert_fields(written[section], expected[section], section)
  for field in ("batch_size", "num_epochs", "seed"):
    assert written[field] == expected[field], field
  strategy = written["method"]["strategy"]
  assert_fields(strategy, expected["strategy"], "method.strategy")
  assert_fields(strategy["reward"], expected["reward"], "method.strategy.reward")
  assert_fields(strategy["optimizer"], expected["policy"], "method.strategy.optimizer")
  assert_fields(written["method"]["base"], expected["base"], "method.base")
  assert strategy["optimizer"]["boundaries"] == pytest.approx(expected["schedule"]["boundaries"])


@pytest.mark.parametrize("variant", sorted(ECAS_EXPECTED))
def test_ecas_presets_validate_and_write_the_cifar100_recipe_on_preact(variant):
  config = load_config("ecas", f"tiny_imagenet,{variant}")
  validate_config(config, 1)
  written = json.loads(json.dumps(train_lib.config_to_dict(config)))
  expected = ECAS_EXPECTED[variant]
  assert written["dataset"]["name"] == "tiny_imagenet" and written["dataset"]["val_size"] == 0
  assert {"cache_dir", "data_dir", "source"} <= set(written["dataset"])
  assert_fields(written["model"], {"name": "preact_resnet18", "final_bn": False,
                                   "normalization": expected["normalization"]}, "model")
  assert_fields(written["augment"], {"crop_padding": 4, "padding_mode": "zero", "flip": True},
                "augment")
  assert_fields(written["eval"], {"eps": 8 / 255, "step_size": 2 / 255, "pgd_steps": 10,
                                  "num_test_examples": 0}, "eval")
  assert_fields(written["schedule"], {"lr_max": 0.1, "decay_factor": 0.1, **expected["schedule"]},
                "schedule")
  assert written["num_epochs"] == expected["num_epochs"] and written["seed"] == expected["seed"]
  assert written["batch_size"] == 128
  method = written["method"]
  attack = method["attack"] if "attack" in method else method["base"]["attack"]
  assert attack["budget"] == "ecas" and attack["objective"] == expected["objective"]
  assert_fields(attack["ecas"], {"eps_list": [k / 255 for k in expected["eps"]],
                                 "big": [k / 255 for k in expected["big"]],
                                 "rho_high": 4.582, "rho_low": 3.35}, "attack.ecas")


def test_presets_refuse_variants_without_a_tiny_imagenet_recipe():
  with pytest.raises(ValueError, match="valid variants: pgd_at, trades$"):
    load_config("las_at", "tiny_imagenet,awp")
  with pytest.raises(ValueError, match="valid variants: pgd_at, trades, awp$"):
    load_config("ecas", "tiny_imagenet,uiat")
  with pytest.raises(ValueError, match="unknown config arg token"):
    load_config("pgd_at", "tiny_imagenet")     # no PGD-AT Tiny-ImageNet recipe


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
def test_training_smoke_run_on_the_miniature_folder(miniature, tmp_path):
  folder, _, _ = miniature
  workdir = tmp_path / "run"
  proc = run_cli(["-m", "jaxat.main", "--config=configs/ecas.py:tiny_imagenet,pgd_at,smoke",
                  f"--workdir={workdir}", f"--config.dataset.data_dir={folder.parent}",
                  "--config.log.progress=none", "--config.num_epochs=1", "--config.batch_size=4",
                  "--config.eval_batch_size=5", "--config.eval.pgd_steps=2"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(workdir / "config.json") as f:
    config = json.load(f)
  assert config["dataset"]["name"] == "tiny_imagenet"
  with open(workdir / "results.json") as f:
    results = json.load(f)
  assert 0.0 <= results["pgd20_acc"] <= results["clean_acc"] <= 1.0
  assert (folder / tiny_imagenet.CACHE_FILE_NAME).is_file()
