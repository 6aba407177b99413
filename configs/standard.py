r"""Standard (natural) training: cross-entropy on clean images.

Presets (`--config=configs/standard.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; add `smoke` to shrink everything to seconds. The real-data
presets use the same model, optimiser and schedule as configs/pgd_at.py (the Rice recipe)
so the two are comparable; natural training reaches about 94-95% clean and 0% PGD-20 on
CIFAR-10 with PreAct ResNet-18. It also trains the helper model of HAT.

  python -m jaxat.main --config=configs/standard.py:cifar10 --workdir=runs/standard_c10 \
      --config.dataset.data_dir=/path/to/cifar
"""

from jaxat.config import base, presets


def get_config(arg=None):
  dataset, modifiers = presets.parse_arg(arg)
  c = base.base_config("standard")
  presets.apply_dataset(c, dataset)
  presets.apply_common_recipe(c, dataset, modifiers)
  c.lock()
  return c
