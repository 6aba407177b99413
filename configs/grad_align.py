r"""GradAlign (Andriushchenko & Flammarion, NeurIPS 2020): FGSM from a zero start (the step
is ε·sign(g)) plus λ·(1 − mean cos(∇_x CE at x, ∇ CE at x + η)), η ~ U(−ε, ε), with double
back-propagation through the second gradient (jaxat/methods/grad_align.py).

Presets (`--config=configs/grad_align.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; `smoke` shrinks everything to seconds; `eps<k>` sets
ε = k/255 and λ from the official λ(ε) table (CIFAR-10: 0.02·10^{k/8}, k = 1..16; SVHN:
1.657 … 2.5 at 8 … 3.162 at 12). `--config.method.align_lambda=...` overrides λ.

cifar10 (tml-epfl/understanding-fast-adv-training, train.py, sh/exps_diff_eps_cifar10.sh):
PreAct ResNet-18 without the final BN+ReLU, raw [0,1] inputs, ε = 8/255, λ = 0.2, 30
epochs, batch 128, SGD momentum 0.9, wd 5e-4, cyclic lr 0 → 0.3 → 0 (peak at 2/5), final
model. cifar100: the CIFAR-10 recipe and λ (no official CIFAR-100 setting). svhn: 15
epochs, lr_max 0.05, λ = 2.5, the step's 1.25 factor ramped from 0 over the first 5 epochs
(`method.step_ramp_epochs=5`). digits: λ = 0.2. See jaxat/config/fast_recipe.py.

Published numbers: not given here.

  python -m jaxat.main --config=configs/grad_align.py:cifar10 --workdir=runs/grad_align_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/grad_align.py:cifar10,eps16 --workdir=runs/grad_align_c10_eps16 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.evaluate --workdir=runs/grad_align_c10 --attacks=clean,pgd50-10,aa
"""

from jaxat.config import fast_recipe


def get_config(arg=None):
  return fast_recipe.get_fast_config("grad_align", arg)
