r"""AWP (Wu et al. 2020): adversarial weight perturbation over any training method.

Presets (`--config=configs/awp.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; add `smoke` to shrink everything to seconds, and a base
method token: `pgd_at` (default, AT-AWP), `trades` (TRADES-AWP), or any other method with
a config file (`uiat`, `mart`, `hat`, ...). The base method is chosen here because its
fields (e.g. `method.beta`) differ; the AWP fields are `method.weight_perturbation.*`.
A base other than pgd_at/trades keeps the recipe of its own config file
(configs/<base>.py with the same dataset and modifiers) and gets the AWP values of its
family (jaxat/methods/awp.py, AWP_FAMILY): e.g. `configs/awp.py:cifar10,uiat` is UIAT's
paper recipe with gamma 0.01, proxy lr 0.01, no warm-up — a combination no published code
runs.

AT-AWP (csdongxian/AWP AT_AWP/train_cifar10.py, docs/baselines.md#awp): the Rice PGD-AT recipe
of configs/pgd_at.py — PreAct ResNet-18 with the final BN+ReLU, CIFAR normalisation inside
the model, PGD-10 (2/255, uniform start, train-mode BatchNorm), SGD momentum 0.9, wd 5e-4,
batch 128, 200 epochs, piecewise lr 0.1 (x0.1 at 50% and 75%, fractional epochs), best
checkpoint on a 1000-image validation split — plus AWP with gamma 0.01, proxy lr 0.01, no
warm-up. cifar10 uses reflect padding for the crop (the AWP/Rice CIFAR-10 loader);
cifar100 the same recipe with zero padding; svhn lr 0.01, attack step 1/255, 5 warm-up
epochs without AWP (AT_AWP/train_svhn.py).
TRADES-AWP (trades_AWP/train_trades_cifar.py): WRN-34-10, no input normalisation, crop
(zero padding) + flip, TRADES KL attack (10 x 2/255, eps 8/255, eval-mode BatchNorm),
beta 6, SGD momentum 0.9, wd 5e-4, batch 128, 200 epochs, lr 0.1 x0.1 from epoch 100 and
x0.01 from epoch 150 (1-based, per epoch), gamma 0.005, proxy lr 0.1 (not decayed), AWP
from the 10th epoch (`--awp-warmup 10` against 1-based epochs: 9 warm-up epochs), no
validation split. Its svhn preset is not official: lr 0.01 and attack step 1/255 as in
AT-AWP's SVHN script.
cifar10_subset — the common jaxat recipe of configs/pgd_at.py (PreAct ResNet-18, Rice
schedule, 30 epochs) with the method's attack and AWP values, so it compares with the
other methods. digits: the digits recipe, TRADES-AWP with 2 warm-up epochs of 30.

Published numbers (CIFAR-10, eps 8/255): LAS-AT Table 2 and ECAS Table 4 list "AWP" with
WRN-34-10 at 85.57 clean / 58.13 PGD-20 / 56.03 CW / 53.90 AA, and CIFAR-100 (LAS-AT
Table 3) 60.38 / 33.86 / 31.12 / 28.86; the seed papers do not say which variant. ANCRA
Table 1 (its own ResNet-18 runs, PGD-40): 76.38 clean / 48.88 PGD-40 / 44.65 AA. The AWP
paper's own tables are not given in the spec.

  python -m jaxat.main --config=configs/awp.py:cifar10 --workdir=runs/at_awp_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/awp.py:cifar10,trades --workdir=runs/trades_awp_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/awp.py:digits --workdir=runs/awp_digits
"""

from jaxat.config import base, config_files, presets, table1_recipe
from jaxat.methods.awp import AWP, BASES

OFFICIAL_BASES = ("pgd_at", "trades")


def wrapped_base_config(base_method: str, dataset: str, modifiers: set[str]):
  """The base method's own config file with AWP wrapped around its method sub-config."""
  arg = ",".join([dataset, *sorted(m for m in modifiers if m not in BASES)])
  c = config_files.sibling_config_module(__file__, base_method).get_config(arg)
  with c.unlocked():
    c.method = AWP.wrap_config(c.method)
  c.lock()
  return c


def apply_trades_awp_recipe(c, dataset: str) -> None:
  """trades_AWP/train_trades_cifar.py on top of the Rice preset's evaluation settings."""
  presets.apply_rice_recipe(c, dataset)
  c.model.update(name="wide_resnet", depth=34, width=10, normalization="none")
  c.num_epochs = 200
  c.batch_size = 128
  c.optimizer.update(momentum=0.9, nesterov=False, weight_decay=5e-4)
  c.schedule.update(name="multistep", lr_max=0.1, boundaries=(0.5, 0.75), decay_factor=0.1,
                    per_epoch=True)
  c.dataset.val_size = 0
  c.method.attack.update(eps=8 / 255, step_size=2 / 255)
  if dataset == "svhn":
    c.schedule.lr_max = 0.01
    c.method.attack.step_size = 1 / 255


def get_config(arg=None):
  dataset, modifiers = presets.parse_arg(arg, extra_modifiers=tuple(BASES) + (table1_recipe.TABLE1_TOKEN,))
  bases = sorted(modifiers & set(BASES))
  if len(bases) > 1:
    raise ValueError(f"config arg names several AWP base methods {bases}; give at most one of "
                     f"{', '.join(BASES)}")
  base_method = bases[0] if bases else "pgd_at"
  if base_method not in OFFICIAL_BASES:
    return wrapped_base_config(base_method, dataset, modifiers)
  c = base.base_config("awp")
  c.method = AWP.default_config(base_method)
  presets.apply_dataset(c, dataset)
  official = dataset in ("cifar10", "cifar100", "svhn")
  if official and base_method == "trades":
    apply_trades_awp_recipe(c, dataset)
  else:
    # AT-AWP is the Rice recipe (apply_rice_recipe sets SVHN's lr 0.01 and step 1/255).
    presets.apply_common_recipe(c, dataset, set())
  if dataset == "cifar10" and base_method == "pgd_at":
    c.augment.padding_mode = "reflect"
  if dataset == "svhn" and base_method == "pgd_at":
    c.method.weight_perturbation.warmup_epochs = 5
  if dataset == "digits" and base_method == "trades":
    c.method.weight_perturbation.warmup_epochs = 2
  if table1_recipe.TABLE1_TOKEN in modifiers:
    table1_recipe.apply_table1_recipe(c, dataset)
  if "smoke" in modifiers:
    presets.apply_smoke(c)
    # TRADES-AWP keeps one warm-up epoch of the two, so both phases run.
    c.method.weight_perturbation.warmup_epochs = min(c.method.weight_perturbation.warmup_epochs, 1)
  c.lock()
  return c
