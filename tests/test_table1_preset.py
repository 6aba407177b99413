"""The `table1` token: every Table 1 baseline on the UIAT paper's recipe, values checked
against the paper's Appendix A.2 (not against the recipe module's own constants)."""

import pytest

from tiny_runs import load_config

TABLE1_CONFIGS = ("pgd_at", "trades", "mart", "awp", "hat")


@pytest.mark.parametrize("name", TABLE1_CONFIGS)
@pytest.mark.parametrize("dataset, epochs, attack_step", [("cifar10", 100, 2 / 255),
                                                         ("cifar100", 100, 2 / 255),
                                                         ("svhn", 30, 1 / 255)])
def test_every_baseline_gets_uiats_recipe(name, dataset, epochs, attack_step):
  c = load_config(name, f"{dataset},table1")
  assert (c.model.name, c.model.normalization) == ("resnet18", "none")
  assert (c.num_epochs, c.batch_size) == (epochs, 128)
  assert (c.optimizer.momentum, c.optimizer.nesterov, c.optimizer.weight_decay) == (0.9, True, 5e-4)
  assert (c.schedule.name, c.schedule.lr_max) == ("onecycle", 0.1)
  assert c.dataset.val_size == 0
  a = c.method.attack
  assert (a.eps, a.step_size, a.num_steps) == (pytest.approx(8 / 255), pytest.approx(attack_step), 10)
  # The method keeps its own attack start, objective, BatchNorm mode and loss weights.
  own = load_config(name, dataset).method
  assert (a.init, a.objective, a.bn_mode) == (own.attack.init, own.attack.objective, own.attack.bn_mode)
  for field in ("beta", "gamma", "h", "weight_perturbation"):
    if field in own:
      assert c.method[field] == own[field]


def test_uiats_own_config_is_the_same_recipe():
  uiat = load_config("uiat", "cifar10")
  pgd = load_config("pgd_at", "cifar10,table1")
  for path in ("model.name", "num_epochs", "batch_size", "optimizer.nesterov", "schedule.name",
               "schedule.lr_max", "schedule.pct_start", "method.attack.step_size"):
    a, b = uiat, pgd
    for part in path.split("."):
      a, b = a[part], b[part]
    assert a == b, path


def test_table1_changes_the_baseline_recipe():
  # Without the token each baseline keeps its official recipe (e.g. TRADES' WRN-34-10).
  assert load_config("trades", "cifar10").model.name == "wide_resnet"
  assert load_config("trades", "cifar10,table1").model.name == "resnet18"


@pytest.mark.parametrize("arg, match", [
    ("digits,table1", "table1.*cifar10, cifar100, svhn, cifar10_subset"),
    ("synthetic,table1", "valid choices"),
])
def test_table1_without_a_table1_dataset_is_refused(arg, match):
  with pytest.raises(ValueError, match=match):
    load_config("pgd_at", arg)


def test_configs_without_the_token_refuse_it():
  with pytest.raises(ValueError, match="unknown config arg token"):
    load_config("fgsm_rs", "cifar10,table1")


def test_table1_smoke_still_shrinks_the_run():
  c = load_config("trades", "cifar10_subset,table1,smoke")
  assert c.num_epochs == 2 and c.model.name == "small_cnn"
