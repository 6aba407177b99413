r"""FGSM-BP: fast adversarial training with a batch prior (Jia et al., ECCV 2022, "Prior-
Guided Adversarial Initialization for Fast Adversarial Training"; paper only, no official
code).

The FGSM step of batch t starts from the adversarial perturbation of batch t−1 (other
images; one B×H×W×C buffer η): z0 = f(x+η), g = ∇_η LSCE_0.6(z0, y),
δ = clip_[0,1](x + clip_ε(η + α·sign(g))) − x, stored for the next batch; loss
LSCE_0.6(f(x+δ), y) + 10·mean((f(x+δ) − z0)²), z0 not detached (the regulariser of
FGSM-MEP). The buffer is redrawn as random ±ε every 40 epochs (CIFAR-100: 10). See
jaxat/methods/fgsm_pgi.py and jaxat/config/prior_recipe.py.

Presets (`--config=configs/fgsm_bp.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; add `smoke` to shrink everything to seconds. Real data:
the FGSM-MEP recipe (ResNet-18, ε = α = 8/255, SGD 0.1, 110 epochs, lr ×0.1 at 100/110 and
105/110). Not yet trained to the published numbers with jaxat.

  python -m jaxat.main --config=configs/fgsm_bp.py:cifar10 --workdir=runs/fgsm_bp_c10 \
      --config.dataset.data_dir=/path/to/cifar
"""

from jaxat.config import base, presets, prior_recipe


def get_config(arg=None):
  dataset, modifiers = presets.parse_arg(arg)
  c = base.base_config("fgsm_bp")
  presets.apply_dataset(c, dataset)
  prior_recipe.apply_prior_recipe(c, dataset, modifiers)
  c.lock()
  return c
