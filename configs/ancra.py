r"""ANCRA (Zhou et al. 2023, arXiv 2310.03358): adversarial training with an asymmetric negative
contrast and reverse attention; TRADES-ANCRA (the only variant in the official code) by default.

Presets (`--config=configs/ancra.py:<args>`): digits (default), cifar10, cifar100, svhn,
cifar10_subset; modifiers `pgd_at` / `mart` select the paper's other variants
(method.objective), `smoke` shrinks everything to seconds.

cifar10 — the official recipe (changzhang777/ANCRA, docs/ancra.md#recipe): ResNet-18 with
reverse attention on its penultimate features, no input normalisation, crop 4 + flip,
untargeted CE PGD on both heads (0.001·N start, 10 x 0.007, eps 8/255, eval-mode BatchNorm,
predicted-label gate), random_adv negatives, cr_beta 2, beta 6, zeta 3, alpha 1, SGD
momentum 0.9, wd 2e-4, lr 0.01 x0.1 at epochs 75, 90, 100 (1-based, per epoch), 120 epochs,
batch 128, the whole training set. cifar100 / svhn: the same recipe (the official code has
only CIFAR-10 scripts); svhn takes attack step 1/255. cifar10_subset: the common jaxat subset
recipe (configs/pgd_at.py) with ANCRA's loss and attack, so it compares with other methods.

Published numbers (ResNet-18, CIFAR-10, eps 8/255, paper Table 1 and its adaptive table):
TRADES-ANCRA 81.70 clean / AA 59.70 on the authors' protocol (the gate on the model's own
prediction, attacks on the final logits only); against adaptive attacks the paper's
WRN numbers fall to 51.85-51.99 AA (Table 9). jaxat reports both protocols
(docs/ancra.md#evaluation); the robust accuracy is the adaptive one.

  python -m jaxat.main --config=configs/ancra.py:cifar10 --workdir=runs/ancra_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/ancra.py:digits --workdir=runs/ancra_digits
  python -m jaxat.main --config=configs/ancra.py:digits,pgd_at --workdir=runs/ancra_pgd_digits
"""

from jaxat.config import base, presets

VARIANTS = ("pgd_at", "mart")


def apply_ancra_recipe(c, dataset: str) -> None:
  """changzhang777/ANCRA's CIFAR-10 ResNet-18 recipe on top of the Rice evaluation settings."""
  presets.apply_rice_recipe(c, dataset)
  c.model.update(name="resnet18", normalization="none")
  c.num_epochs = 120
  c.batch_size = 128
  c.optimizer.update(momentum=0.9, nesterov=False, weight_decay=2e-4)
  c.schedule.update(name="multistep", lr_max=0.01, boundaries=(75 / 120, 90 / 120, 100 / 120),
                    decay_factor=0.1, per_epoch=True)
  c.dataset.val_size = 0
  if dataset == "svhn":
    c.method.attack.step_size = 1 / 255


def get_config(arg=None):
  dataset, modifiers = presets.parse_arg(arg, extra_modifiers=VARIANTS)
  c = base.base_config("ancra")
  presets.apply_dataset(c, dataset)
  if dataset in ("cifar10", "cifar100", "svhn"):
    apply_ancra_recipe(c, dataset)
  else:
    presets.apply_common_recipe(c, dataset, set())
  for variant in VARIANTS:
    if variant in modifiers:
      c.method.objective = variant
      if variant == "mart":
        c.method.beta = 5.0   # MART's own beta, as the paper's MART-ANCRA.
  if "smoke" in modifiers:
    presets.apply_smoke(c)
  c.lock()
  return c
