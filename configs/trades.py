r"""TRADES (Zhang et al. 2019): CE(f(x), y) + beta·KL(p(x) || p(x_adv)), beta = 6.

Presets (`--config=configs/trades.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; add `smoke` to shrink everything to seconds.

cifar10 — the official recipe (yaodongyu/TRADES train_trades_cifar10.py,
docs/baselines.md#trades):
WRN-34-10, no input normalisation, crop 4 (zero padding) + flip, KL attack (0.001·N start,
10 x 0.007, eps 0.031, eval-mode BatchNorm), SGD momentum 0.9, wd 2e-4, batch 128, 76 epochs,
lr 0.1 x0.1 from epoch 75 (1-based, per epoch; the code's later decays at 90 and 100 are
unreachable in 76 epochs — TRADES#11: the reported model "uses early stopping after the
first learning-rate decay"), no validation split (the whole training set, as the code).
cifar100 — the same recipe (TRADES has no CIFAR-100 script). svhn — not official either:
the cifar10 recipe with the SVHN changes of the official Rice / AT-AWP SVHN recipes (lr
0.01, attack step 1/255; crop without flip).
cifar10_subset — the common jaxat recipe of configs/pgd_at.py (PreAct ResNet-18, Rice
schedule, 30 epochs) with TRADES' loss and attack, so it compares with the other methods.
Common re-implementations (Rice README, Bag-of-Tricks#3, Jia et al.) train 100 or 110
epochs with decays at 75/90 or 100/105 instead (docs/baselines.md#trades).

Published numbers (CIFAR-10, eps 8/255): UIAT Table 1 (ResNet-18, `--config.model.name=
resnet18`): 82.45 clean / 52.21 PGD-20 / 50.29 CW / 48.88 AA; CIFAR-100 54.36 / 27.49 /
24.19 / 23.14; SVHN 90.63 / 58.10 / 55.13 / 52.62. LAS-AT Table 2 (WRN-34-10, this
recipe's model): 85.72 clean / 56.10 PGD-20 / 53.40 AA; CIFAR-100 (LAS-AT Table 3) 58.61 /
28.66 / 25.94.

  python -m jaxat.main --config=configs/trades.py:cifar10 --workdir=runs/trades_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/trades.py:digits --workdir=runs/trades_digits
"""

from jaxat.config import base, presets, table1_recipe


def apply_trades_recipe(c, dataset: str) -> None:
  """yaodongyu/TRADES on top of the Rice preset's evaluation settings (docs/baselines.md#trades)."""
  presets.apply_rice_recipe(c, dataset)
  c.model.update(name="wide_resnet", depth=34, width=10, normalization="none")
  c.num_epochs = 76
  c.batch_size = 128
  c.optimizer.update(momentum=0.9, nesterov=False, weight_decay=2e-4)
  c.schedule.update(name="multistep", lr_max=0.1, boundaries=(75 / 76,), decay_factor=0.1,
                    per_epoch=True)
  c.dataset.val_size = 0
  c.method.attack.update(eps=0.031, step_size=0.007)
  if dataset == "svhn":
    c.schedule.lr_max = 0.01
    c.method.attack.step_size = 1 / 255


def get_config(arg=None):
  dataset, modifiers = presets.parse_arg(arg, extra_modifiers=(table1_recipe.TABLE1_TOKEN,))
  c = base.base_config("trades")
  presets.apply_dataset(c, dataset)
  if dataset in ("cifar10", "cifar100", "svhn"):
    apply_trades_recipe(c, dataset)
  else:
    presets.apply_common_recipe(c, dataset, set())
  if table1_recipe.TABLE1_TOKEN in modifiers:
    table1_recipe.apply_table1_recipe(c, dataset)
  if "smoke" in modifiers:
    presets.apply_smoke(c)
  c.lock()
  return c
