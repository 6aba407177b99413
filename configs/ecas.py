r"""ECAS (Zhang et al., BMVC 2023): entropy-guided cyclical per-example ε plugged into PGD-AT,
TRADES, AWP or UIAT (docs/ecas.md).

`--config=configs/ecas.py:<dataset>,<variant>[,smoke]`: dataset digits (default),
synthetic, cifar10, cifar10_subset, cifar100, tiny_imagenet (svhn is refused: the official code has no
SVHN recipe); variant pgd_at (default, ECAS-PGD-AT), trades (ECAS-TRADES), awp
(ECAS-AWP over PGD-AT), uiat (ECAS+UIAT: UIAT's recipe with the ECAS budget on its
attack, a combination no published code runs). Each variant starts from the base method's
own config file (configs/pgd_at.py, trades.py, awp.py, uiat.py) and switches its attack to
`attack.budget='ecas'`; the ECAS settings are `method.attack.ecas.*` (eps_list, big,
rho_high, rho_low, reading, bn_mode).

The official ECAS code (huizhg/ECAS), per variant, on cifar10 / cifar100 (ε ×1/255):

| variant | E | big | ρ_high/ρ_low C10 | C100 | attack | loss | schedule |
|---|---|---|---|---|---|---|---|
| pgd_at | 3…12 | 10,11,12 | 2.274/1.3 | 4.582/3.35 | CE, U(−ε_i,ε_i) start | LSCE 0.7 | 110 ep., ×0.1 at 99/110 and 104/110 (per iteration) |
| trades | 5…9 | 8,9 | same | same | C10: CE, uniform start; C100: KL, 0.001·N start | CE + 6·KL | 110 ep., ×0.1 at 99/110 only |
| awp | 6…15 | 13,14,15 | same | same | CE, U(−8/255, 8/255) start, δ clipped to 8/255 after | CE, AWP γ 0.01 | 200 ep., ×0.1 at 50% and 75% |

Common: PGD-10 with the step size 2·ε_cyc/10 of the epoch's cyclic ε, eval-mode BatchNorm
during the attack, the entropy forward in train mode (it updates the running statistics),
WRN-34-10, SGD momentum 0.9, wd 5e-4, batch 128, lr 0.1, best checkpoint by PGD-10 on the
test set (no validation split). Seeds: PGD-AT 1, TRADES 0, AWP 1. Input normalisation:
AWP normalises CIFAR-10 inputs inside the model; for PGD-AT and TRADES the recipe here
feeds raw [0,1] inputs (no normalisation, as TRADES). Not reproduced: ECAS-AWP's CIFAR-10
entropy on un-normalised inputs, and the first batch of each epoch ≥ 1 running in eval mode.

tiny_imagenet (variants pgd_at, trades, awp): the official ECAS code has no Tiny-ImageNet
script, so this is jaxat's transfer of the variant's CIFAR-100 recipe above (option set,
CIFAR-100 thresholds 4.582/3.35 nats, attack, loss, epochs, schedule, seed, whole test split
monitored) with two changes: PreAct ResNet-18 without the final BN (LAS-AT's Tiny-ImageNet
classifier, the usual 64×64 architecture; WRN-34-10 would cost 4× its CIFAR time) and the
labelled val split as test split. Augmentation is the CIFAR crop 4 + flip. Inputs are raw
[0,1] for pgd_at / trades and normalised with the Tiny-ImageNet statistics for awp.

cifar10_subset, digits, synthetic: the base method's recipe for that dataset with the ECAS
attack and loss of the variant, and CIFAR-10's thresholds (these datasets have 10
classes). On digits, whose threat model is 32/255 (jaxat/config/presets.py), every ε of
the option set is multiplied by 4 (PGD-AT: 12/255 … 48/255).

Published numbers (WRN-34-10, ε 8/255, clean / AA; ECAS Table 2): CIFAR-10 ECAS-PGD-AT
86.32 / 53.43, ECAS-TRADES 83.99 / 52.02, ECAS-AWP 88.17 / 54.54; CIFAR-100 ECAS-PGD-AT
61.16 / 28.83, ECAS-TRADES 58.69 / 28.24, ECAS-AWP 64.77 / 29.78. ECAS-PGD-AT on
CIFAR-10 (Table 1): 86.32 clean / 57.80 PGD-10 / 56.80 PGD-20 / 56.48 PGD-50 / 55.89 CW /
53.43 AA. ECAS-AWP on CIFAR-10 (Table 4): 88.17 / 60.38 / 59.10 / 58.75 / 57.50 / 54.54.
ResNet-18, CIFAR-10 (Table 3), clean / AA: PGD-AT 81.39 / 49.94, TRADES 78.61 / 48.83,
AWP 83.16 / 49.64.

Measured on digits (30 epochs, ε 32/255, one seed, about 3 minutes on two shared CPU
cores): ECAS-PGD-AT 98.33% clean / 77.78% PGD-20; PGD-AT on the same preset and machine
98.33% / 74.44% (docs/ecas.md#measured-on-digits).

  python -m jaxat.main --config=configs/ecas.py:cifar10 --workdir=runs/ecas_pgd_at_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/ecas.py:cifar100,awp --workdir=runs/ecas_awp_c100 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/ecas.py:tiny_imagenet,pgd_at --workdir=runs/ecas_tin \
      --config.dataset.data_dir=/path/to/folder_holding_tiny-imagenet-200
  python -m jaxat.main --config=configs/ecas.py:digits --workdir=runs/ecas_digits
  python -m jaxat.analyze strategy --workdir=runs/ecas_digits
"""

from jaxat.config import config_files, presets

VARIANTS = ("pgd_at", "trades", "awp", "uiat")
DATASETS = ("digits", "synthetic", "cifar10", "cifar10_subset", "cifar100", presets.TINY_IMAGENET)
# Option sets (k for k/255) and big subsets of the official code.
OPTION_SETS = {
    "pgd_at": (tuple(range(3, 13)), (10, 11, 12)),
    "trades": (tuple(range(5, 10)), (8, 9)),
    "awp": (tuple(range(6, 16)), (13, 14, 15)),
}
# Entropy thresholds (ρ_high, ρ_low) in nats, hard-coded constants of the official code.
THRESHOLDS = {"cifar10": (2.274, 1.3), "cifar100": (4.582, 3.35)}
OFFICIAL_DATASETS = ("cifar10", "cifar100")
# Tiny-ImageNet: no official ECAS script; the CIFAR-100 recipe (thresholds included) is
# transferred with PreAct ResNet-18 (module docstring). UIAT has no Tiny-ImageNet recipe.
TINY_IMAGENET_BASE = "cifar100"
TINY_IMAGENET_VARIANTS = ("pgd_at", "trades", "awp")
# The digits threat model is 32/255 instead of 8/255: the option set is scaled with it.
DIGITS_SCALE = 4
# ECAS-AWP's fixed random-start radius and post-attack clip of δ.
AWP_RADIUS = 8 / 255
SEEDS = {"pgd_at": 1, "trades": 0, "awp": 1}


def parse(arg):
  """(dataset, variant, smoke) from the config arg; one-line errors for anything else."""
  tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
  valid = DATASETS + VARIANTS + presets.MODIFIER_TOKENS
  if "svhn" in tokens:
    raise ValueError("configs/ecas.py has no svhn preset: the official ECAS code has no SVHN "
                     f"recipe; valid datasets: {', '.join(DATASETS)}")
  unknown = [t for t in tokens if t not in valid]
  if unknown:
    raise ValueError(f"unknown config arg token(s) {unknown}; valid choices: {', '.join(valid)}")
  datasets = [t for t in tokens if t in DATASETS]
  variants = [t for t in tokens if t in VARIANTS]
  if len(datasets) > 1 or len(variants) > 1:
    raise ValueError(f"config arg names several datasets or variants {datasets + variants}; give "
                     f"at most one of {', '.join(DATASETS)} and one of {', '.join(VARIANTS)}")
  dataset, variant = datasets[0] if datasets else "digits", variants[0] if variants else "pgd_at"
  if dataset == presets.TINY_IMAGENET and variant not in TINY_IMAGENET_VARIANTS:
    raise ValueError(f"configs/ecas.py has no tiny_imagenet preset for variant {variant!r} (UIAT "
                     f"has no Tiny-ImageNet recipe); valid variants: "
                     f"{', '.join(TINY_IMAGENET_VARIANTS)}")
  return dataset, variant, "smoke" in tokens


def base_config(dataset: str, variant: str):
  """The base method's own config file for `dataset` (not shrunk); for tiny_imagenet the
  CIFAR-100 one with the dataset switched."""
  if dataset == presets.TINY_IMAGENET:
    c = base_config(TINY_IMAGENET_BASE, variant)
    presets.apply_dataset(c, dataset)
    return c
  if variant == "awp":
    return config_files.sibling_config_module(__file__, "awp").get_config(f"{dataset},pgd_at")
  return config_files.sibling_config_module(__file__, variant).get_config(dataset)


def apply_ecas_attack(c, dataset: str, variant: str) -> None:
  """attack.budget = 'ecas' with the variant's option set and the dataset's thresholds."""
  eps_list, big = OPTION_SETS["pgd_at" if variant == "uiat" else variant]
  scale = DIGITS_SCALE if dataset == "digits" else 1
  threshold_dataset = TINY_IMAGENET_BASE if dataset == presets.TINY_IMAGENET else dataset
  rho_high, rho_low = THRESHOLDS.get(threshold_dataset, THRESHOLDS["cifar10"])
  attack = c.method.attack
  attack.budget = "ecas"
  attack.ecas.update(eps_list=tuple(scale * k / 255 for k in eps_list),
                     big=tuple(scale * k / 255 for k in big), rho_high=rho_high,
                     rho_low=rho_low, reading="example", bn_mode="train")
  attack.update(num_steps=10, restarts=1, norm="linf")
  if variant == "uiat":
    return   # UIAT's own attack (uniform start, CE, train-mode BatchNorm) keeps its settings
  attack.update(bn_mode="eval", init="uniform", objective="ce", init_eps=0.0)
  if variant == "trades" and dataset in ("cifar100", presets.TINY_IMAGENET):
    # ECAS-TRADES on CIFAR-100 keeps TRADES' own attack; on CIFAR-10 it attacks with CE.
    attack.update(objective="kl", init="normal")
  if variant == "awp":
    attack.update(init_eps=scale * AWP_RADIUS, final_clip_eps=scale * AWP_RADIUS)


def apply_ecas_losses(c, variant: str) -> None:
  if variant == "pgd_at":
    c.method.label_smoothing = 0.7           # LSCE with 0.7 on the true class
  elif variant == "trades":
    c.method.update(beta=6.0, label_smoothing=1.0, kl_target_forward="shared")  # clean, adv
  elif variant == "awp":
    c.method.label_smoothing = 1.0
    c.method.weight_perturbation.update(gamma=0.01, warmup_epochs=0, proxy_lr=0.01)


def apply_official_recipe(c, dataset: str, variant: str) -> None:
  """The optimisation and evaluation of the official ECAS scripts (module docstring)."""
  c.seed = SEEDS[variant]
  c.model.update(name="wide_resnet", depth=34, width=10,
                 normalization="dataset" if variant == "awp" else "none")
  c.batch_size = 128
  c.optimizer.update(momentum=0.9, nesterov=False, weight_decay=5e-4)
  c.dataset.val_size = 0
  c.eval.update(eps=8 / 255, step_size=2 / 255, pgd_steps=10, num_test_examples=0)
  if variant == "pgd_at":
    c.num_epochs = 110
    c.schedule.update(name="multistep", lr_max=0.1, boundaries=(99 / 110, 104 / 110),
                      decay_factor=0.1, per_epoch=False)
  elif variant == "trades":
    # The second milestone, int(104/100·L), lies beyond the run: a single decay.
    c.num_epochs = 110
    c.schedule.update(name="multistep", lr_max=0.1, boundaries=(99 / 110,), decay_factor=0.1,
                      per_epoch=False)
  else:
    c.num_epochs = 200
    c.schedule.update(name="piecewise", lr_max=0.1, boundaries=(0.5, 0.75), decay_factor=0.1)


def get_config(arg=None):
  dataset, variant, smoke = parse(arg)
  c = base_config(dataset, variant)
  apply_ecas_attack(c, dataset, variant)
  apply_ecas_losses(c, variant)
  if dataset in OFFICIAL_DATASETS + (presets.TINY_IMAGENET,) and variant != "uiat":
    apply_official_recipe(c, dataset, variant)
  if dataset == presets.TINY_IMAGENET:
    c.model.update(name="preact_resnet18", final_bn=False)
  if smoke:
    presets.apply_smoke(c)
  c.lock()
  return c
