r"""MART (Wang et al. 2020): boosted CE on x_adv + beta·KL(p(x) || p(x_adv))·(1 - p_y(x)).

Presets (`--config=configs/mart.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; add `smoke` to shrink everything to seconds, and
`resnet18` for the official ResNet-18 script instead of the WRN-34-10 one.

cifar10 — the official recipe (YisenWang/MART train_wideresnet.py,
docs/baselines.md#mart):
WRN-34-10, no input normalisation, crop 4 (zero padding) + flip, CE PGD attack (0.001·N
start, 10 x 0.007, eps 0.031, eval-mode BatchNorm), beta 6, SGD momentum 0.9, wd 7e-4,
batch 128, 90 epochs (the argparse default), lr 0.1 x0.1 from epoch 75 and x0.01 from
epoch 90 (1-based, per epoch), no validation split. The author trained 100 epochs (MART#3;
then the decays fall at 75/90/100: `--config.num_epochs=100
--config.schedule.boundaries='(0.75, 0.9, 1.0)'`).
`resnet18` (train_resnet.py): ResNet-18, beta 5, lr 0.01, wd 3.5e-3, 120 epochs, decays
at epochs 75, 90, 100.
cifar100 — the same recipe (MART has no CIFAR-100 script). svhn — not official either: the
cifar10 recipe with the SVHN changes of the official Rice / AT-AWP SVHN recipes (lr / 10,
attack step 1/255; crop without flip).
cifar10_subset — the common jaxat recipe of configs/pgd_at.py (PreAct ResNet-18, Rice
schedule, 30 epochs) with MART's loss and attack, so it compares with the other methods.

Published numbers (eps 8/255): UIAT Table 1 (ResNet-18): CIFAR-10 82.20 clean / 53.94
PGD-20 / 50.43 CW / 48.04 AA; CIFAR-100 54.78 / 28.79 / 26.15 / 24.58; SVHN 89.88 /
58.48 / 52.48 / 48.44. LAS-AT Table 2 (WRN-34-10): CIFAR-10 84.17 clean / 58.56 PGD-20 /
51.10 AA.

  python -m jaxat.main --config=configs/mart.py:cifar10 --workdir=runs/mart_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/mart.py:cifar10,resnet18 --workdir=runs/mart_r18_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/mart.py:digits --workdir=runs/mart_digits
"""

from jaxat.config import base, presets, table1_recipe

def apply_mart_recipe(c, dataset: str, variant) -> None:
  """YisenWang/MART on top of the Rice preset's evaluation settings (docs/baselines.md#mart)."""
  presets.apply_rice_recipe(c, dataset)
  c.batch_size = 128
  c.optimizer.update(momentum=0.9, nesterov=False)
  c.dataset.val_size = 0
  c.method.attack.update(eps=0.031, step_size=0.007)
  if variant == "resnet18":
    c.model.update(name="resnet18", normalization="none")
    c.num_epochs = 120
    c.method.beta = 5.0
    c.optimizer.weight_decay = 3.5e-3
    c.schedule.update(name="multistep", lr_max=0.01, boundaries=(75 / 120, 90 / 120, 100 / 120),
                      decay_factor=0.1, per_epoch=True)
  else:
    c.model.update(name="wide_resnet", depth=34, width=10, normalization="none")
    c.num_epochs = 90
    c.method.beta = 6.0
    c.optimizer.weight_decay = 7e-4
    c.schedule.update(name="multistep", lr_max=0.1, boundaries=(75 / 90, 1.0), decay_factor=0.1,
                      per_epoch=True)
  if dataset == "svhn":
    c.schedule.lr_max /= 10
    c.method.attack.step_size = 1 / 255


def get_config(arg=None):
  dataset, modifiers = presets.parse_arg(arg, extra_modifiers=("resnet18", table1_recipe.TABLE1_TOKEN))
  variant = "resnet18" if "resnet18" in modifiers else None
  c = base.base_config("mart")
  presets.apply_dataset(c, dataset)
  if dataset in ("cifar10", "cifar100", "svhn"):
    apply_mart_recipe(c, dataset, variant)
  else:
    presets.apply_common_recipe(c, dataset, set())
    if variant == "resnet18":
      c.model.update(name="resnet18", normalization="none")
      c.method.beta = 5.0
  if table1_recipe.TABLE1_TOKEN in modifiers:
    table1_recipe.apply_table1_recipe(c, dataset)
  if "smoke" in modifiers:
    presets.apply_smoke(c)
  c.lock()
  return c
