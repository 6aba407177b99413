r"""FGSM-RS, "fast adversarial training" (Wong, Rice & Kolter, ICLR 2020): one FGSM step of
α = 1.25·ε from a uniform random start in the ε-ball, projected back, CE on the result;
train-mode BatchNorm during the attack (jaxat/methods/fgsm_rs.py).

Presets (`--config=configs/fgsm_rs.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; `smoke` shrinks everything to seconds; `eps<k>` sets
ε = k/255 (and α = 1.25ε).

cifar10 (locuslab/fast_adversarial, CIFAR10/train_fgsm.py): PreAct ResNet-18 with the final
BN+ReLU, CIFAR-10 normalisation inside the model, ε = 8/255, α = 10/255, 15 epochs, batch
128, SGD momentum 0.9, wd 5e-4, cyclic lr 0 → 0.2 → 0 per iteration (peak at half), final
model. cifar100: the same (the official issues advise a smaller α on CIFAR-100 if training
is unstable: `--config.method.attack.step_size=8/255`). svhn: no official recipe; N-FGSM's
SVHN setting (lr_max 0.05, peak at 2/5, ε and α ramped over 5 epochs). See
jaxat/config/fast_recipe.py.

Published (fast_adversarial README, CIFAR-10, ε = 8/255): 86.06% clean / 46.06% PGD-50-10;
UIAT's Table 5: RS-FGSM 84.07% clean / 46.15% AutoAttack.

  python -m jaxat.main --config=configs/fgsm_rs.py:cifar10 --workdir=runs/fgsm_rs_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.evaluate --workdir=runs/fgsm_rs_c10 --attacks=clean,pgd50-10,aa
"""

from jaxat.config import fast_recipe


def get_config(arg=None):
  return fast_recipe.get_fast_config("fgsm_rs", arg)
