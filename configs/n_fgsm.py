r"""N-FGSM (de Jorge et al., NeurIPS 2022): one step of α = ε from noise U(−2ε, 2ε), NOT
projected to the ε-ball (only clipped to [0,1]), CE on the result; train-mode BatchNorm
during the attack (jaxat/methods/n_fgsm.py).

Presets (`--config=configs/n_fgsm.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; `smoke` shrinks everything to seconds; `eps<k>` sets
ε = k/255, α = ε and the noise k·ε (SVHN at eps12: 3ε, as in the official experiments).

cifar10 / cifar100 (pdejorge/N-FGSM, train.py, experiments.sh): PreAct ResNet-18 with the
final BN+ReLU, dataset normalisation inside the model, ε = α = 8/255, noise 16/255, 30
epochs, batch 128, SGD momentum 0.9, wd 5e-4, cyclic lr 0 → 0.2 → 0 per iteration (peak at
half), final model. svhn: lr_max 0.05, peak at 2/5 of the iterations, ε and α (and the
noise) ramped linearly from 0 over the first 5 epochs (`method.attack.ramp_epochs=5`). See
jaxat/config/fast_recipe.py.

Published: UIAT's Table 5 lists N-FGSM at 80.29% clean / 48.24% AutoAttack (CIFAR-10,
ε = 8/255); the N-FGSM paper's own numbers are not given here.

  python -m jaxat.main --config=configs/n_fgsm.py:cifar10 --workdir=runs/n_fgsm_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/n_fgsm.py:svhn,eps12 --workdir=runs/n_fgsm_svhn_eps12 \
      --config.dataset.data_dir=/path/to/svhn
  python -m jaxat.evaluate --workdir=runs/n_fgsm_c10 --attacks=clean,pgd50-10,aa
"""

from jaxat.config import fast_recipe


def get_config(arg=None):
  return fast_recipe.get_fast_config("n_fgsm", arg)
