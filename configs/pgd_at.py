r"""PGD adversarial training (Madry et al. 2018), the Rice et al. recipe.

Presets (`--config=configs/pgd_at.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; add `smoke` to shrink everything to seconds.

cifar10 (docs/baselines.md#pgd-at, locuslab/robust_overfitting): PreAct ResNet-18 with the final
BN+ReLU, CIFAR-10 normalisation inside the model, PGD-10 (eps 8/255, step 2/255, uniform
start, train-mode BatchNorm during the attack), SGD momentum 0.9, wd 5e-4, batch 128,
200 epochs, piecewise lr 0.1 -> 0.01 at 50% -> 0.001 at 75% (fractional epoch), best
checkpoint by PGD-10 on a 1000-image validation split. Rice et al. report about 53% PGD-20
at the best checkpoint and about 82-84% clean for PreAct ResNet-18 on CIFAR-10; UIAT's
Table 1 lists SAT (ResNet-18) at 83.80 clean / 51.40 PGD-20 / 47.68 AA.

  python -m jaxat.main --config=configs/pgd_at.py:cifar10 --workdir=runs/pgd_at_c10 \
      --config.dataset.data_dir=/path/to/cifar
"""

from jaxat.config import base, presets, table1_recipe


def get_config(arg=None):
  dataset, modifiers = presets.parse_arg(arg, extra_modifiers=(table1_recipe.TABLE1_TOKEN,))
  c = base.base_config("pgd_at")
  presets.apply_dataset(c, dataset)
  presets.apply_common_recipe(c, dataset, modifiers - {"smoke"})
  if table1_recipe.TABLE1_TOKEN in modifiers:
    table1_recipe.apply_table1_recipe(c, dataset)
  if "smoke" in modifiers:
    presets.apply_smoke(c)
  c.lock()
  return c
