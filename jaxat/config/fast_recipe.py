"""Recipes of the fast (single-step) adversarial-training methods: configs/fgsm_rs.py,
configs/n_fgsm.py, configs/grad_align.py, and UIAT's single-step plug-in
(configs/uiat_oneoff.py:<dataset>,fgsm_rs|n_fgsm via jaxat/config/inverse_recipe.py).

Attacks (one signed step, train-mode BatchNorm, L∞, pixel units):
  fgsm_rs:    start U(−ε, ε), step α = 1.25·ε, projected to the ε-ball (Wong et al.);
  n_fgsm:     start U(−k·ε, k·ε) with k = 2, step α = ε, not projected (de Jorge et al.);
              SVHN at ε = 12/255 uses k = 3;
  grad_align: zero start, step 1.25·ε clipped to the ε-ball, plus λ·(1 − cos) with λ from
              the λ(ε) tables below (Andriushchenko & Flammarion).

Training on the real datasets (cifar10, cifar100, svhn, cifar10_subset): PreAct ResNet-18,
batch 128, SGD momentum 0.9 (no Nesterov), weight decay 5e-4, triangular cyclic learning
rate from 0 to lr_max and back to 0, per iteration:
  fgsm_rs:    final BN+ReLU, dataset normalisation, 15 epochs, lr_max 0.2, peak at 1/2;
  n_fgsm:     final BN+ReLU, dataset normalisation, 30 epochs, lr_max 0.2, peak at 1/2;
              SVHN: lr_max 0.05, peak at 2/5, ε and α ramped over the first 5 epochs;
  grad_align: no final BN+ReLU, raw [0,1] inputs, 30 epochs, lr_max 0.3, peak at 2/5;
              SVHN: 15 epochs, lr_max 0.05, the step alone ramped over the first 5 epochs.
FGSM-RS has no official SVHN recipe: its SVHN preset takes N-FGSM's (lr_max 0.05, peak at
2/5, ε and α ramped over 5 epochs), the setting under which N-FGSM's code runs its
baselines. CIFAR-100 takes the CIFAR-10 recipe in all three (GradAlign: the CIFAR-10 λ).
No validation split (the official codes report the final model); cifar10_subset (5085
real images) keeps the 500-image validation split and whole-test monitoring of the other
subset presets. Monitor: PGD-10 with step 2/255 on 1000 test images.

`eps<k>` tokens (k = 1..16; SVHN 1..12) set ε = k/255 and everything tied to it: the step,
N-FGSM's noise, GradAlign's λ(ε), and the monitor's ε (step ε/4).

digits: the shared small-CNN digits recipe of presets.py (ε = 32/255, one-cycle lr), with
each method's own step and noise; GradAlign's λ there is 0.2, the CIFAR-10 value at the
standard threat model (ε = 8/255), which 32/255 stands for on digits (the tables are
CIFAR-10/SVHN-specific; λ(32/255) = 200 from the CIFAR-10 formula would be meaningless).
"""

from __future__ import annotations

import ml_collections

from jaxat.config import base, presets

FAST_METHODS = ("fgsm_rs", "n_fgsm", "grad_align")
EPS_TOKENS = tuple(f"eps{k}" for k in range(1, 17))
REAL_DATASETS = ("cifar10", "cifar100", "svhn", "cifar10_subset")

FGSM_RS_STEP_FACTOR = 1.25
N_FGSM_NOISE_FACTOR = 2.0
GRAD_ALIGN_STEP_FACTOR = 1.25
# GradAlign's λ on SVHN at ε = k/255 (official sh/exps_diff_eps_svhn.sh), k = 1..12.
SVHN_ALIGN_LAMBDA = (1.657, 1.757, 1.864, 1.976, 2.096, 2.223, 2.357, 2.500, 2.651, 2.812,
                     2.982, 3.162)
DIGITS_ALIGN_LAMBDA = 0.2


def grad_align_lambda(eps_255: int, dataset: str) -> float:
  """λ of GradAlign at ε = eps_255/255: 0.02·10^{k/8} (CIFAR-10 and every non-SVHN data
  set, k = 1..16), SVHN's table (k = 1..12)."""
  if dataset == "svhn":
    if not 1 <= eps_255 <= len(SVHN_ALIGN_LAMBDA):
      raise ValueError(f"GradAlign's SVHN λ(ε) table covers ε = 1/255..12/255, got "
                       f"eps{eps_255}; set method.align_lambda yourself")
    return SVHN_ALIGN_LAMBDA[eps_255 - 1]
  if not 1 <= eps_255 <= 16:
    raise ValueError(f"GradAlign's CIFAR-10 λ(ε) table covers ε = 1/255..16/255, got eps{eps_255}")
  return round(0.02 * 10 ** (eps_255 / 8), 6)


def noise_factor(dataset: str, eps_255: int | None) -> float:
  """N-FGSM's k: 2, except SVHN at ε = 12/255 (3), as in the official experiments."""
  return 3.0 if dataset == "svhn" and eps_255 == 12 else N_FGSM_NOISE_FACTOR


def set_single_step_attack(attack: ml_collections.ConfigDict, method: str, eps: float,
                           k: float = N_FGSM_NOISE_FACTOR) -> None:
  """One signed step in train-mode BatchNorm, with the method's start, step and projection."""
  attack.update(eps=float(eps), num_steps=1, bn_mode="train", restarts=1, norm="linf",
                objective="ce")
  if method == "fgsm_rs":
    attack.update(init="uniform", step_size=FGSM_RS_STEP_FACTOR * eps, init_eps=0.0, project=True)
  elif method == "n_fgsm":
    attack.update(init="uniform", step_size=float(eps), init_eps=k * eps, project=False)
  elif method == "grad_align":
    attack.update(init="zero", step_size=GRAD_ALIGN_STEP_FACTOR * eps, init_eps=0.0, project=True)
  else:
    raise ValueError(f"unknown fast method {method!r}; valid choices: {', '.join(FAST_METHODS)}")


def apply_fast_training(c: ml_collections.ConfigDict, method: str, dataset: str) -> None:
  """Model, epochs, optimiser, cyclic schedule and warm-ups of `method` on a real data set."""
  grad_align = method == "grad_align"
  if grad_align:
    c.model.update(name="preact_resnet18", final_bn=False, normalization="none")
  else:
    c.model.update(name="preact_resnet18", final_bn=True, normalization="dataset")
  c.num_epochs = {"fgsm_rs": 15, "n_fgsm": 30, "grad_align": 30}[method]
  c.optimizer.update(momentum=0.9, nesterov=False, weight_decay=5e-4)
  c.schedule.update(name="cyclic", lr_max=0.3 if grad_align else 0.2,
                    pct_start=0.4 if grad_align else 0.5)
  if dataset == "svhn":
    c.schedule.update(lr_max=0.05, pct_start=0.4)
    if grad_align:
      c.num_epochs = 15
      c.method.step_ramp_epochs = 5
    else:
      c.method.attack.ramp_epochs = 5


def parse_eps_token(modifiers: set[str]) -> int | None:
  tokens = sorted(modifiers & set(EPS_TOKENS))
  if len(tokens) > 1:
    raise ValueError(f"config arg names several radii {tokens}; give at most one eps<k> token")
  return int(tokens[0][3:]) if tokens else None


def apply_fast_recipe(c: ml_collections.ConfigDict, method: str, dataset: str,
                      modifiers: set[str]) -> None:
  """The full recipe of configs/<method>.py (see the module docstring), then `smoke`."""
  eps_255 = parse_eps_token(modifiers)
  if dataset == "digits":
    presets.apply_digits_recipe(c)
  elif dataset == "synthetic":
    presets.apply_synthetic_recipe(c)
  else:
    c.batch_size = 128
    c.eval_batch_size = 500
    c.dataset.val_size = 0
    c.eval.update(eps=8 / 255, step_size=2 / 255, pgd_steps=10, num_test_examples=1000)
    apply_fast_training(c, method, dataset)
    if dataset == "cifar10_subset":
      c.dataset.val_size = 500
      c.eval.num_test_examples = 0
  eps = c.method.attack.eps if eps_255 is None else eps_255 / 255
  if eps_255 is not None:
    c.eval.update(eps=eps, step_size=eps / 4)
  set_single_step_attack(c.method.attack, method, eps, noise_factor(dataset, eps_255))
  if method == "grad_align":
    if eps_255 is not None:
      c.method.align_lambda = grad_align_lambda(eps_255, dataset)
    elif dataset == "svhn":
      c.method.align_lambda = grad_align_lambda(8, dataset)
    elif dataset == "digits":
      c.method.align_lambda = DIGITS_ALIGN_LAMBDA
    else:
      c.method.align_lambda = grad_align_lambda(8, "cifar10")
  if "smoke" in modifiers:
    presets.apply_smoke(c)


def get_fast_config(method: str, arg: str | None) -> ml_collections.ConfigDict:
  """configs/<method>.py:get_config for the three fast methods (locked)."""
  dataset, modifiers = presets.parse_arg(arg, extra_modifiers=EPS_TOKENS)
  c = base.base_config(method)
  presets.apply_dataset(c, dataset)
  apply_fast_recipe(c, method, dataset, modifiers)
  c.lock()
  return c
