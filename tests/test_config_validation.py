"""Configs: every preset loads and validates; bad input fails early with a clear message."""


import pytest

from jaxat.config.validate import validate_config
from jaxat.errors import UsageError
from jaxat.train.train import train_and_evaluate
from tiny_runs import load_config, tiny_config

FOUNDATION_CONFIGS = ("standard", "pgd_at")
PRESETS = ("digits", "synthetic", "cifar10", "cifar10_subset", "cifar100", "svhn", "digits,smoke",
           "cifar10,smoke")


@pytest.mark.parametrize("name", FOUNDATION_CONFIGS)
@pytest.mark.parametrize("arg", PRESETS)
def test_every_preset_loads_locked_and_valid(name, arg):
  config = load_config(name, arg)
  assert config.is_locked
  for field in ("seed", "num_epochs", "batch_size"):
    assert field in config
  validate_config(config, num_devices=1)
  with pytest.raises(AttributeError):
    config.not_a_field = 1


def test_cifar10_pgd_at_preset_is_the_rice_recipe():
  c = load_config("pgd_at", "cifar10")
  assert (c.model.name, c.model.final_bn, c.model.normalization) == ("preact_resnet18", True, "dataset")
  assert (c.num_epochs, c.batch_size) == (200, 128)
  assert (c.optimizer.momentum, c.optimizer.weight_decay, c.optimizer.nesterov) == (0.9, 5e-4, False)
  assert (c.schedule.name, c.schedule.lr_max, tuple(c.schedule.boundaries)) == ("piecewise", 0.1, (0.5, 0.75))
  a = c.method.attack
  assert (a.eps, a.step_size, a.num_steps, a.init, a.bn_mode, a.restarts) == (
      8 / 255, 2 / 255, 10, "uniform", "train", 1)
  assert (c.augment.crop_padding, c.augment.padding_mode, c.augment.flip) == (4, "reflect", True)
  assert c.dataset.val_size == 1000


def test_unknown_preset_token_lists_choices():
  with pytest.raises(ValueError, match="valid choices: digits, synthetic, cifar10"):
    load_config("pgd_at", "imagenet")


@pytest.mark.parametrize("field,value,expected", [
    ("method.name", "fgsm_magic", "valid choices: .*pgd_at"),
    ("model.name", "vgg16", "small_cnn"),
    ("dataset.name", "mnist", "digits"),
    ("method.attack.eps", -0.1, "eps must be >= 0"),
    ("method.attack.eps", 8.0, "pixel units"),
    ("method.attack.bn_mode", "frozen", "eval, batch_stats, train"),
    ("method.attack.init", "gaussian", "uniform, normal, zero"),
    ("schedule.name", "cosine", "constant, piecewise"),
    ("augment.padding_mode", "wrap", "zero, reflect"),
    ("eval.final_attacks", "clean,deepfool", "deepfool"),
    ("batch_size", 0, "positive integer"),
    ("dataset.val_size", 100000, "val_size"),
])
def test_invalid_values_fail_before_anything_is_written(tmp_path, field, value, expected):
  config = tiny_config("pgd_at")
  config.unlock()
  if field == "method.name":
    config.method.name = value
  else:
    config.update_from_flattened_dict({field: value})
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match=expected):
    train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_batch_size_must_divide_over_devices():
  config = tiny_config("pgd_at", **{"batch_size": 30})
  with pytest.raises(ValueError, match="batch_size=30 is not divisible by the device count 8"):
    validate_config(config, num_devices=8)


def test_more_devices_than_available_is_refused(tmp_path):
  config = tiny_config("pgd_at", **{"num_devices": 64})
  with pytest.raises(ValueError, match="num_devices=64 but only"):
    train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_missing_dataset_names_the_paths(tmp_path):
  config = tiny_config("pgd_at", dataset="cifar10", **{"dataset.data_dir": str(tmp_path / "nowhere"),
                                                      "dataset.source": "files"})
  with pytest.raises(UsageError, match="nowhere"):
    train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
