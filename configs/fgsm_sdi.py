r"""FGSM-SDI: fast adversarial training with a learnable sample-dependent initialisation
(Jia et al., IEEE TIP, "Boosting Fast Adversarial Training with Learnable Adversarial
Initialization"; the official code path, FGSM_SDI.py at its last commit).

Per batch (classifier in train mode throughout): g = ∇_x CE(f(x), y); at batches 0, 20,
40, … of each epoch the generator G takes one Adam step (lr 1e-3, L2 5e-4) on
−LSCE_0.5(f(x_adv), y); then η = G(x, sign g) ∈ (−ε, ε) with G in eval mode,
g₁ = ∇ CE(f(x + η), y), x_adv = x + clip_ε(η + clip_ε(α·sign g₁)) (not clipped to [0, 1]),
loss LSCE_0.5(f(x_adv), y). See jaxat/methods/fgsm_sdi.py for every field and the official
quirks, docs/fast_adversarial_training.md#fgsm-sdi for the choices, and
jaxat/config/prior_recipe.py for the recipes (shared with FGSM-BP/EP/MEP: same authors,
same protocol).

Presets (`--config=configs/fgsm_sdi.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; add `smoke` to shrink everything to seconds. Real data:
ResNet-18 on raw [0, 1] inputs, ε = α = 8/255, SGD 0.1 / 0.9 / 5e-4, batch 128, 110 epochs,
lr ×0.1 at 100/110 and 105/110 of the iterations; generator every 20 batches. svhn is not in
the paper (jaxat's choice: the CIFAR-10 recipe with lr 0.01, crop without flip). digits:
the small-CNN digits recipe with ε = α = 32/255 and the generator updated every 2 of its 22
batches per epoch (about the official 20 updates per epoch; with k = 20 it would learn
from 2 batches an epoch). Not yet trained to the published numbers with jaxat (needs a
GPU); the paper's Table IV (CIFAR-10, ResNet-18, ε = 8/255, best checkpoint): 84.86 clean,
53.73 PGD-10, 52.54 PGD-20, 51.00 C&W, 48.50 AA.

Measured on digits (30 epochs, ε = α = 32/255, one seed, all 360 test images, jaxat.evaluate
on the last checkpoint): 98.06 clean / 81.67 FGSM / 77.78 PGD-20 / 70.00 CW∞-20 / 68.06 AA
(FGSM-MEP on the same preset: 97.78 / 83.33 / 80.28 / 69.72 / 67.22; pgd_at: 98.15 clean,
75.74 PGD-20, 71.02 AA, mean of 3 seeds). As for FGSM-MEP, label-smoothed training widens
the gap between PGD-CE and CW∞ / AA: judge it by AA.

  python -m jaxat.main --config=configs/fgsm_sdi.py --workdir=runs/fgsm_sdi_digits  # two CPU cores
  python -m jaxat.main --config=configs/fgsm_sdi.py:cifar10 --workdir=runs/fgsm_sdi_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/fgsm_sdi.py:cifar10 --workdir=runs/fgsm_sdi_c10_f09 \
      --config.dataset.data_dir=/path/to/cifar --config.method.label_smoothing=0.9
  python -m jaxat.evaluate --workdir=runs/fgsm_sdi_c10 --attacks=clean,pgd20,cw20,aa
"""

from jaxat.config import base, presets, prior_recipe


def get_config(arg=None):
  dataset, modifiers = presets.parse_arg(arg)
  c = base.base_config("fgsm_sdi")
  presets.apply_dataset(c, dataset)
  prior_recipe.apply_sdi_recipe(c, dataset, modifiers)
  c.lock()
  return c
