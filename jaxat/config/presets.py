"""Presets selected by the `:arg` string of a config file (big_vision style).

`configs/<method>.py:<args>` takes a comma list of tokens: at most one dataset token
(`digits` (default), `synthetic`, `cifar10`, `cifar10_subset`, `cifar100`, `svhn`) and the
modifier `smoke`, which shrinks model, data and epochs so a run takes seconds.
"""

from __future__ import annotations

import os

import ml_collections

DATASET_TOKENS = ("digits", "synthetic", "cifar10", "cifar10_subset", "cifar100", "svhn")
MODIFIER_TOKENS = ("smoke",)
# Accepted only by the config files with a Tiny-ImageNet recipe (configs/ecas.py, las_at.py),
# which pass it to parse_arg as an extra dataset token.
TINY_IMAGENET = "tiny_imagenet"

# The threat model of the digits presets (see apply_digits_recipe), in [0,1] pixel units.
DIGITS_EPS = 32 / 255

# The shared folder sits next to the repository (../shared from the repo root).
CIFAR10_SUBSET_PATH = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data",
    "cifar10_train_subset.npz"))


def parse_arg(arg: str | None, extra_modifiers: tuple[str, ...] = (),
              extra_datasets: tuple[str, ...] = ()) -> tuple[str, set[str]]:
  """Splits the config arg into (dataset token, set of modifiers); validates both.

  `extra_modifiers` are tokens only one config file understands (configs/uiat_oneoff.py:
  fgsm_rs, n_fgsm); other config files reject them. `extra_datasets` likewise are dataset
  tokens only some config files have a recipe for (TINY_IMAGENET).
  """
  tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
  modifiers = MODIFIER_TOKENS + tuple(extra_modifiers)
  dataset_tokens = DATASET_TOKENS + tuple(extra_datasets)
  valid = dataset_tokens + modifiers
  unknown = [t for t in tokens if t not in valid]
  if unknown:
    raise ValueError(f"unknown config arg token(s) {unknown}; valid choices: {', '.join(valid)}")
  datasets = [t for t in tokens if t in dataset_tokens]
  if len(datasets) > 1:
    raise ValueError(f"config arg names several datasets {datasets}; give at most one of "
                     f"{', '.join(dataset_tokens)}")
  return (datasets[0] if datasets else "digits"), {t for t in tokens if t in modifiers}


def apply_dataset(c: ml_collections.ConfigDict, dataset: str) -> None:
  """Sets dataset, augmentation and the default model input size for a dataset token."""
  d = c.dataset
  if dataset == "digits":
    d.name = "digits"
    c.augment.update(crop_padding=1, padding_mode="zero", flip=False)  # flipped digits change class
  elif dataset == "synthetic":
    d.name = "synthetic"
    c.augment.update(crop_padding=0, padding_mode="zero", flip=False)
  elif dataset in ("cifar10", "cifar100"):
    d.name = dataset
    c.augment.update(crop_padding=4, padding_mode="zero", flip=True)
  elif dataset == "cifar10_subset":
    # A 5085-image CIFAR-10 training subset in one .npz (CIFAR10_SUBSET_PATH by default, or
    # --config.dataset.data_dir=FILE): 1000 images held out as test.
    d.name = "npz"
    d.source = "files"
    d.data_dir = CIFAR10_SUBSET_PATH
    d.test_size = 1000
    c.augment.update(crop_padding=4, padding_mode="zero", flip=True)
  elif dataset == "svhn":
    d.name = "svhn"
    c.augment.update(crop_padding=4, padding_mode="zero", flip=False)  # SVHN: crop only
  elif dataset == TINY_IMAGENET:
    # 64x64x3, 200 classes (jaxat/data/tiny_imagenet.py); the CIFAR crop + flip by default,
    # a recipe without augmentation (LAS-AT's) turns it off.
    d.name = TINY_IMAGENET
    c.augment.update(crop_padding=4, padding_mode="zero", flip=True)
  else:
    raise ValueError(f"unknown dataset token {dataset!r}; valid choices: {', '.join(DATASET_TOKENS)}")


def apply_digits_recipe(c: ml_collections.ConfigDict) -> None:
  """A small CNN on the 8x8 digits: seconds per epoch on two CPU cores.

  eps is 32/255 (about two of the digits' 17 grey levels; 8/255 is about half a level and
  leaves PGD-20 accuracy near clean accuracy), with steps of eps/4 as in the CIFAR
  recipes (8/255 with 2/255).
  """
  c.model.update(name="small_cnn", channels=(32, 64), batch_norm=True, normalization="none")
  c.num_epochs = 30
  c.batch_size = 64
  c.eval_batch_size = 360
  c.schedule.update(name="onecycle", lr_max=0.05, pct_start=0.25)
  c.optimizer.update(weight_decay=5e-4, nesterov=True)
  c.eval.update(eps=DIGITS_EPS, step_size=DIGITS_EPS / 4, pgd_steps=20)
  if "attack" in c.method:
    c.method.attack.update(eps=DIGITS_EPS, step_size=DIGITS_EPS / 4)


def apply_synthetic_recipe(c: ml_collections.ConfigDict) -> None:
  c.model.update(name="small_cnn", channels=(8, 16), batch_norm=True, normalization="none")
  c.num_epochs = 2
  c.batch_size = 64
  c.eval_batch_size = 128
  c.schedule.update(name="constant", lr_max=0.05)


def apply_smoke(c: ml_collections.ConfigDict) -> None:
  """Shrinks model, data and epochs to seconds (keeps the dataset)."""
  c.model.update(name="small_cnn", channels=(8, 16), batch_norm=True)
  c.num_epochs = 2
  c.batch_size = 32
  c.eval_batch_size = 64
  c.dataset.max_train = 256
  c.dataset.max_test = 64
  c.dataset.num_train = 256
  c.dataset.num_test = 64
  c.eval.pgd_steps = 5
  c.eval.num_test_examples = 0
  c.checkpoint.keep = 2


def apply_rice_recipe(c: ml_collections.ConfigDict, dataset: str) -> None:
  """PGD-AT recipe of Rice et al. (docs/baselines.md#rice-recipe) for the real datasets.

  PreAct ResNet-18 with the final BN+ReLU, dataset normalisation inside the model, SGD
  momentum 0.9, wd 5e-4, batch 128, 200 epochs, piecewise lr 0.1 -> 0.01 (50%) -> 0.001
  (75%) at fractional epochs, PGD-10 monitor, best checkpoint by PGD on a 1000-image
  validation split, reflect padding for the crops on CIFAR. SVHN: lr 0.01 and attack step
  1/255. cifar10_subset (5085 real images):
  30 epochs, 500 validation images, the whole 1000-image test split monitored.
  """
  c.model.update(name="preact_resnet18", final_bn=True, normalization="dataset")
  c.num_epochs = 200
  c.batch_size = 128
  c.eval_batch_size = 500
  c.optimizer.update(momentum=0.9, nesterov=False, weight_decay=5e-4)
  c.schedule.update(name="piecewise", lr_max=0.1, boundaries=(0.5, 0.75), decay_factor=0.1)
  c.dataset.val_size = 1000
  c.eval.update(eps=8 / 255, step_size=2 / 255, pgd_steps=10, num_test_examples=1000)
  if dataset in ("cifar10", "cifar100", "cifar10_subset"):
    # Rice's own CIFAR loader pads by reflection (docs/baselines.md#reflect-padding).
    c.augment.padding_mode = "reflect"
  if dataset == "svhn":
    c.schedule.lr_max = 0.01
    if "attack" in c.method:
      c.method.attack.step_size = 1 / 255
  if dataset == "cifar10_subset":
    apply_subset_budget(c)


def apply_subset_budget(c: ml_collections.ConfigDict) -> None:
  """The shortened cifar10_subset run every real-data recipe shares, so subset runs of
  different methods compare: 30 epochs, a 500-image validation split, monitoring on the
  whole 1000-image test split."""
  c.num_epochs = 30
  c.dataset.val_size = 500
  c.eval.num_test_examples = 0


def apply_common_recipe(c: ml_collections.ConfigDict, dataset: str, modifiers: set[str]) -> None:
  """digits / synthetic recipes, the Rice recipe for real data, then `smoke`."""
  if dataset == "digits":
    apply_digits_recipe(c)
  elif dataset == "synthetic":
    apply_synthetic_recipe(c)
  else:
    apply_rice_recipe(c, dataset)
  if "smoke" in modifiers:
    apply_smoke(c)
