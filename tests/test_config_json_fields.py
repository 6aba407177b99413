"""config.json shows only the dataset and model fields that apply to the run, and a run
restores from it."""

import json

import pytest

from jaxat.config.applicable import applicable_fields
from jaxat.train import train as train_lib
from jaxat.train.experiment import build_experiment
from jaxat.train.restore import load_run_config
from tiny_runs import load_config, tiny_config

SYNTHETIC_FIELDS = {"num_train", "num_test", "image_size", "channels", "num_classes"}
OTHER_MODELS_FIELDS = {"channels", "batch_norm", "final_bn", "depth", "width"}


def test_an_npz_run_carries_no_synthetic_or_digits_fields():
  written = train_lib.config_to_dict(load_config("uiat", "cifar10_subset"))
  dataset, model = written["dataset"], written["model"]
  assert dataset["name"] == "npz"
  assert not SYNTHETIC_FIELDS & set(dataset), dataset
  assert {"test_size", "data_dir", "source", "val_size", "max_train", "max_test"} <= set(dataset)
  assert model["name"] == "resnet18"
  assert not OTHER_MODELS_FIELDS & set(model), model
  assert {"activation", "normalization"} <= set(model)


def test_each_dataset_and_model_keeps_its_own_fields():
  digits = train_lib.config_to_dict(load_config("pgd_at", "digits"))
  assert not (SYNTHETIC_FIELDS | {"test_size", "source", "data_dir"}) & set(digits["dataset"])
  assert {"channels", "batch_norm"} <= set(digits["model"])       # the digits small CNN
  assert not {"final_bn", "depth", "width"} & set(digits["model"])

  synthetic = train_lib.config_to_dict(load_config("pgd_at", "synthetic"))
  assert SYNTHETIC_FIELDS <= set(synthetic["dataset"])
  assert "test_size" not in synthetic["dataset"]

  cifar = train_lib.config_to_dict(load_config("trades", "cifar10"))
  assert {"source", "data_dir"} <= set(cifar["dataset"])
  assert not (SYNTHETIC_FIELDS | {"test_size"}) & set(cifar["dataset"])
  assert (cifar["model"]["depth"], cifar["model"]["width"]) == (34, 10)
  assert not {"channels", "batch_norm", "final_bn"} & set(cifar["model"])

  preact = train_lib.config_to_dict(load_config("pgd_at", "cifar10"))
  assert preact["model"]["final_bn"] is True


def test_overriding_the_dataset_name_after_the_preset_keeps_what_the_new_dataset_reads():
  config = load_config("pgd_at", "digits")
  config.dataset.name = "npz"   # as --config.dataset.name=npz does (README, real data)
  dataset = train_lib.config_to_dict(config)["dataset"]
  assert {"test_size", "data_dir", "source"} <= set(dataset)
  assert not SYNTHETIC_FIELDS & set(dataset)


def test_pruning_leaves_the_in_memory_config_and_other_sections_alone():
  config = load_config("pgd_at", "cifar10_subset")
  full = json.loads(config.to_json_best_effort())
  pruned = applicable_fields(full)
  assert "image_size" in full["dataset"] and "image_size" not in pruned["dataset"]
  assert "image_size" in config.dataset
  assert {k: v for k, v in full.items() if k not in ("dataset", "model", "method")} == {
      k: v for k, v in pruned.items() if k not in ("dataset", "model", "method")}
  # The method section loses only the settings of the budget role its attack does not use.
  assert "ecas" in full["method"]["attack"] and "ecas" not in pruned["method"]["attack"]
  del full["method"]["attack"]["ecas"]
  assert full["method"] == pruned["method"]


def test_the_ecas_settings_appear_only_in_an_ecas_run():
  fixed = train_lib.config_to_dict(load_config("pgd_at", "digits"))
  assert fixed["method"]["attack"]["budget"] == "fixed"
  assert "ecas" not in fixed["method"]["attack"]
  ecas = train_lib.config_to_dict(load_config("ecas", "digits"))
  assert ecas["method"]["attack"]["budget"] == "ecas"
  assert {"eps_list", "big", "rho_high", "rho_low", "reading", "bn_mode"} <= set(
      ecas["method"]["attack"]["ecas"])
  # AWP keeps the base's fields flat; UIAT over a single-step base nests them.
  awp = train_lib.config_to_dict(load_config("awp", "digits"))
  assert "ecas" not in awp["method"]["attack"]
  assert "ecas" in train_lib.config_to_dict(load_config("ecas", "digits,awp"))["method"]["attack"]


def test_a_run_restores_from_its_pruned_config_json(tmp_path):
  config = tiny_config("pgd_at", "synthetic")
  (tmp_path / "config.json").write_text(json.dumps(train_lib.config_to_dict(config)))
  restored = load_run_config(str(tmp_path))
  assert "test_size" not in restored.dataset
  exp = build_experiment(restored)   # reads only the fields that apply
  assert exp.ctx.image_shape == (config.dataset.image_size,) * 2 + (config.dataset.channels,)


def test_a_config_json_written_before_pruning_still_resumes(tmp_path):
  config = tiny_config("pgd_at", "synthetic")
  full = json.loads(config.to_json_best_effort())
  assert "test_size" in full["dataset"]
  (tmp_path / "config.json").write_text(json.dumps(full))
  train_lib._check_same_run(str(tmp_path), config)   # no "different config" error
  other = tiny_config("pgd_at", "synthetic", **{"dataset.num_train": 96})
  with pytest.raises(ValueError, match="dataset"):
    train_lib._check_same_run(str(tmp_path), other)


def test_a_config_json_written_before_the_budget_field_still_resumes(tmp_path):
  config = tiny_config("pgd_at", "synthetic")
  old = train_lib.config_to_dict(config)
  for field in ("budget", "final_clip_eps"):
    del old["method"]["attack"][field]
  (tmp_path / "config.json").write_text(json.dumps(old))
  train_lib._check_same_run(str(tmp_path), config)   # the fixed budget, as then
  ecas = tiny_config("pgd_at", "synthetic", **{"method.attack.budget": "ecas"})
  with pytest.raises(ValueError, match="method.attack.budget"):
    train_lib._check_same_run(str(tmp_path), ecas)
