r"""IAT: instance-wise inverse adversarial training (Dong et al., CVPR 2023, Algorithm 2).

Per example, 5 steps of PGD descent of 2/255 on L_inv (Eq. 4, β = 1) from x + 0.001·N(0,1)
inside the 4/255 ball; loss CE(f(x̂), y) + λ·KL(p(x̃) ‖ p(x̂)), λ = 3.5 (3.0 on SVHN); no
momentum unless `--config.method.momentum=True`. See jaxat/methods/uiat.py.

Presets (`--config=configs/iat.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; add `smoke` to shrink everything to seconds. The real-data
presets follow the paper's recipe (docs/inverse_adversarial_training.md#training-recipe).

Published: Table 6 row 1 (CIFAR-10, ResNet-18, IAT without UAG/FR/IAM, i.e. with
`--config.method.inverse.beta=0`): 83.97 clean / 53.98 PGD-20 / 48.33 AA. Table 2 cost:
2.83 min/epoch on an A100 (UIAT 2.20, TRADES 2.57).

Measured on digits (30 epochs, eps 32/255, one seed): 98.6% clean / 76.1% PGD-20
(pgd_at on the same preset: 98.3 / 75.6).

  python -m jaxat.main --config=configs/iat.py:cifar10 --workdir=runs/iat_c10 \
      --config.dataset.data_dir=/path/to/cifar
"""

from jaxat.config import base, inverse_recipe, presets


def get_config(arg=None):
  dataset, modifiers = presets.parse_arg(arg)
  c = base.base_config("iat")
  presets.apply_dataset(c, dataset)
  inverse_recipe.apply_inverse_recipe(c, dataset, modifiers)
  c.lock()
  return c
