"""The training recipe of the UIAT paper (Appendix A.2;
docs/inverse_adversarial_training.md#training-recipe) for configs/uiat.py,
configs/uiat_oneoff.py and configs/iat.py, and the single-step plug-in of Appendix B.3.

Real datasets (cifar10, cifar100, svhn, cifar10_subset): ResNet-18 on raw [0,1] inputs
(HAT's default, whose hyperparameters the paper follows), SGD with Nesterov momentum 0.9,
weight decay 5e-4, batch 128, one-cycle learning rate with maximum 0.1 per iteration
(PyTorch OneCycleLR with pct_start 0.25 as in HAT), 100 epochs (SVHN 30), PGD-10 with
eps 8/255 and step 2/255 (SVHN 1/255), ε' = 4/255, λ = 3.5 (SVHN 3.0). The paper reports
the final model, so there is no validation split (cifar10_subset keeps the 500-image
split of the other methods' subset preset, so subset runs stay comparable).

digits: the small-CNN digits recipe of presets.py; its eps is larger than 8/255 (8/255 is
about half of one of the digits' 17 grey levels), so ε' and the inverse step scale with it,
keeping the paper's ratios: ε' = ε/2, α' = ε' (universal) or ε'/2 (instance).
"""

from __future__ import annotations

import ml_collections

from jaxat.config import base, fast_recipe, presets, prior_recipe, table1_recipe
from jaxat.methods.registry import get_method_class

# Single-step methods that are only an attack: UIAT's own maximiser runs them.
SINGLE_STEP_TOKENS = ("fgsm_rs", "n_fgsm")


def _fast(method):
  return lambda c, dataset, modifiers: fast_recipe.apply_fast_recipe(c, method, dataset, modifiers)


# Single-step methods with their own loss or state: UIAT is plugged into the method
# (`method.base_method`), trained with that method's own recipe.
PLUGIN_RECIPES = {
    "grad_align": _fast("grad_align"),
    "fgsm_bp": prior_recipe.apply_prior_recipe,
    "fgsm_ep": prior_recipe.apply_prior_recipe,
    "fgsm_mep": prior_recipe.apply_prior_recipe,
    "fgsm_sdi": prior_recipe.apply_sdi_recipe,
}
PLUGIN_TOKENS = tuple(PLUGIN_RECIPES)


def apply_paper_recipe(c: ml_collections.ConfigDict, dataset: str) -> None:
  """ResNet-18 / one-cycle 0.1 / 100 epochs (30 SVHN) / λ 3.5 (3.0 SVHN); see module doc.
  The recipe is the one every Table 1 row shares (table1_recipe.py); λ is UIAT's own."""
  table1_recipe.apply_table1_recipe(c, dataset)
  if dataset == "svhn":
    c.method.kl_weight = 3.0


def scale_inverse_to_digits(c: ml_collections.ConfigDict) -> None:
  """ε' = ε/2 of the digits attack (as 4/255 is half of 8/255 in the paper); α' keeps its
  ratio to ε' (1 universal, 1/2 instance)."""
  ratio = c.method.inverse.step_size / c.method.inverse.eps
  c.method.inverse.eps = c.method.attack.eps / 2
  c.method.inverse.step_size = ratio * c.method.inverse.eps


def apply_single_step(c: ml_collections.ConfigDict, token: str, dataset: str) -> None:
  """UIAT as a plug-in for single-step AT (Appendix B.3, Table 5;
  docs/inverse_adversarial_training.md#uiat-as-a-plug-in-for-single-step-at).

  The base method's inner maximisation and training recipe are those of its own config
  (jaxat/config/fast_recipe.py): one step, train-mode BatchNorm, uniform start;
    fgsm_rs: step 1.25·eps from U(−eps, eps), projected to the eps-ball (Wong et al.);
    n_fgsm:  step eps from U(−2·eps, 2·eps), not projected (de Jorge et al., k = 2).
  The class-wise inverse step uses CE only (β = 0). On the real datasets the base
  methods' recipe replaces the paper's multi-step one: PreAct ResNet-18 with dataset
  normalisation, SGD momentum 0.9 (no Nesterov), weight decay 5e-4, triangular cyclic lr
  0 → 0.2 → 0, 15 epochs (RS-FGSM) or 30 (N-FGSM); on SVHN lr_max 0.05 with the peak at
  2/5 and ε, α ramped over the first 5 epochs.
  """
  if token not in SINGLE_STEP_TOKENS:
    raise ValueError(f"unknown single-step token {token!r}; valid choices: "
                     f"{', '.join(SINGLE_STEP_TOKENS)}")
  fast_recipe.set_single_step_attack(c.method.attack, token, c.method.attack.eps)
  c.method.inverse.beta = 0.0
  if dataset not in ("digits", "synthetic"):
    fast_recipe.apply_fast_training(c, token, dataset)


def apply_inverse_recipe(c: ml_collections.ConfigDict, dataset: str, modifiers: set[str]) -> None:
  """The dataset's recipe, then the single-step token (if any), then `smoke`."""
  if dataset == "digits":
    presets.apply_digits_recipe(c)
    scale_inverse_to_digits(c)
  elif dataset == "synthetic":
    presets.apply_synthetic_recipe(c)
  else:
    apply_paper_recipe(c, dataset)
  single_step = sorted(modifiers & set(SINGLE_STEP_TOKENS))
  if len(single_step) > 1:
    raise ValueError(f"config arg names several single-step attacks {single_step}; give at "
                     f"most one of {', '.join(SINGLE_STEP_TOKENS)}")
  if single_step:
    apply_single_step(c, single_step[0], dataset)
  if "smoke" in modifiers:
    presets.apply_smoke(c)


def base_eps(base_cfg: ml_collections.ConfigDict) -> float:
  """ε of a single-step base method's threat model (`eps`, or `attack.eps`)."""
  return base_cfg.eps if "eps" in base_cfg else base_cfg.attack.eps


def plugged_config(method_name: str, token: str, dataset: str,
                   modifiers: set[str]) -> ml_collections.ConfigDict:
  """UIAT (`method_name`) plugged into the single-step method `token` (Eq. 13, Table 5).

  The run is the base method's run (configs/<token>.py:<dataset>: model, recipe, its
  method fields under `method.base_method`) with UIAT's inverse term added: ε' = ε/2 of
  the base's ε (4/255 at 8/255, as in the paper), α' = ε', the CE-only inverse step
  (β = 0), λ = 3.5 (SVHN 3.0), T' = 0.8 of training.
  """
  c = base.base_config(token)
  presets.apply_dataset(c, dataset)
  PLUGIN_RECIPES[token](c, dataset, modifiers - {token})
  plug = get_method_class(method_name).plug_into(c.method)
  plug.inverse.eps = base_eps(c.method) / 2
  plug.inverse.step_size = plug.inverse.eps
  if dataset == "svhn":
    plug.kl_weight = 3.0
  c.method = plug
  return c


def inverse_config(method_name: str, arg: str | None) -> ml_collections.ConfigDict:
  """configs/<method_name>.py:get_config with the single-step tokens (locked)."""
  dataset, modifiers = presets.parse_arg(arg, extra_modifiers=SINGLE_STEP_TOKENS + PLUGIN_TOKENS)
  chosen = sorted(modifiers & set(SINGLE_STEP_TOKENS + PLUGIN_TOKENS))
  if len(chosen) > 1:
    raise ValueError(f"config arg names several single-step methods {chosen}; give at most "
                     f"one of {', '.join(SINGLE_STEP_TOKENS + PLUGIN_TOKENS)}")
  if chosen and chosen[0] in PLUGIN_TOKENS:
    c = plugged_config(method_name, chosen[0], dataset, modifiers)
  else:
    c = base.base_config(method_name)
    presets.apply_dataset(c, dataset)
    apply_inverse_recipe(c, dataset, modifiers)
  c.lock()
  return c
