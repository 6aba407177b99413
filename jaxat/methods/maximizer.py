"""The inner maximiser role: training-time adversarial examples from a method's config.

Every method that trains on adversarial examples describes its attack with the same
sub-config (`attack_config`), so the BatchNorm mode of attack generation is always an
explicit, per-method setting: 'eval', 'batch_stats' or 'train' (see models/forward.py).
In 'train' mode the running statistics are threaded through every attack pass and kept,
as in the PyTorch originals whose model stays in train mode while attacking (Rice PGD-AT,
fast AT); the returned batch_stats then contain those updates.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections

from jaxat.attacks import losses as attack_losses
from jaxat.attacks import pgd as pgd_lib
from jaxat.attacks.budget import Budget
from jaxat.attacks.inits import INITS
from jaxat.attacks.projections import NORMS
from jaxat.models.forward import validate_bn_mode
from jaxat.methods import budgets
from jaxat.methods.base import Batch, StepContext, StepInfo

OBJECTIVES = ("ce", "kl")


def attack_config(eps: float = 8 / 255, step_size: float = 2 / 255, num_steps: int = 10,
                  init: str = "uniform", bn_mode: str = "train", norm: str = "linf",
                  restarts: int = 1, objective: str = "ce", init_eps: float = 0.0,
                  project: bool = True, ramp_epochs: int = 0) -> ml_collections.ConfigDict:
  """Sub-config of a training-time attack. eps and step_size are in [0,1] pixel units.

  objective: 'ce' (ascent on cross-entropy) or 'kl' (TRADES: ascent on KL(p(x) || p(x'))).
  init_eps: radius of the uniform random start; 0 means eps (N-FGSM uses 2 * eps).
  project: False disables the projection onto the eps-ball (N-FGSM); [0,1] clipping stays.
  ramp_epochs: the budget role (jaxat/methods/budgets.py): 0 = fixed; R > 0 ramps eps and
    step_size linearly from 0 over the first R epochs (N-FGSM on SVHN).
  FGSM-RS is num_steps=1, step_size=1.25*eps, init='uniform'.
  """
  return ml_collections.ConfigDict(dict(
      eps=float(eps), step_size=float(step_size), num_steps=int(num_steps), init=init,
      bn_mode=bn_mode, norm=norm, restarts=int(restarts), objective=objective,
      init_eps=float(init_eps), project=bool(project), ramp_epochs=int(ramp_epochs)))


def validate_attack_config(cfg: ml_collections.ConfigDict, where: str = "method.attack") -> None:
  if not cfg.eps >= 0:
    raise ValueError(f"{where}.eps must be >= 0 (pixel units in [0,1], e.g. 8/255), got {cfg.eps}")
  if cfg.eps > 1:
    raise ValueError(f"{where}.eps={cfg.eps} is larger than the image range [0,1]; give it in "
                     "pixel units divided by 255 (8/255 = 0.0314)")
  if not cfg.step_size >= 0:
    raise ValueError(f"{where}.step_size must be >= 0, got {cfg.step_size}")
  if cfg.num_steps < 1:
    raise ValueError(f"{where}.num_steps must be >= 1, got {cfg.num_steps}")
  if cfg.restarts < 1:
    raise ValueError(f"{where}.restarts must be >= 1, got {cfg.restarts}")
  if not cfg.init_eps >= 0:
    raise ValueError(f"{where}.init_eps must be >= 0 (0 = eps), got {cfg.init_eps}")
  if cfg.init not in INITS:
    raise ValueError(f"unknown {where}.init {cfg.init!r}; valid choices: {', '.join(INITS)}")
  if cfg.norm not in NORMS:
    raise ValueError(f"unknown {where}.norm {cfg.norm!r}; valid choices: {', '.join(NORMS)}")
  if cfg.objective not in OBJECTIVES:
    raise ValueError(f"unknown {where}.objective {cfg.objective!r}; valid choices: {', '.join(OBJECTIVES)}")
  validate_bn_mode(cfg.bn_mode, f"{where}.bn_mode")
  if isinstance(cfg.ramp_epochs, bool) or not isinstance(cfg.ramp_epochs, int) or cfg.ramp_epochs < 0:
    raise ValueError(f"{where}.ramp_epochs must be an integer >= 0 (0 = fixed budget), got "
                     f"{cfg.ramp_epochs!r}")


def model_objective(ctx: StepContext, params: Any, labels: jax.Array, bn_mode: str,
                    loss_fn, target_logits: jax.Array | None = None) -> pgd_lib.ObjectiveFn:
  """An attack objective over the classifier in the given BatchNorm mode.

  The threaded aux is the BatchNorm collection: it is read in every mode and replaced by
  the updated statistics only in 'train' mode.
  loss_fn(logits, labels) -> (B,), or loss_fn(target_logits, logits) when target_logits is
  given (TRADES KL).
  """

  def objective(x_adv, batch_stats):
    logits, _, batch_stats = ctx.model(params, batch_stats, x_adv, bn_mode)
    if target_logits is None:
      value = loss_fn(logits, labels)
    else:
      value = loss_fn(target_logits, logits)
    return value, (logits, batch_stats)

  return objective


def adversarial_examples(ctx: StepContext, params: Any, batch_stats: Any, batch: Batch,
                         key: jax.Array, cfg: ml_collections.ConfigDict,
                         info: StepInfo | None = None, budget: Budget | None = None,
                         start: jax.Array | None = None) -> tuple[jax.Array, Any]:
  """x_adv (B,H,W,C) for a training batch, and the BatchNorm collection after the attack.

  The budget comes from the budget role (budgets.training_budget: fixed, or ramped with
  `info`); an explicit `budget` overrides it with per-example arrays (ECAS, LAS-AT), and
  `cfg.num_steps` is then the static upper bound of the loop. `start` is the initialiser
  role's explicit start point x_0 (B,H,W,C) (prior buffers, generators); without it the
  attack starts from `cfg.init`.
  """
  init_eps = cfg.init_eps or None
  if budget is None:
    budget = budgets.training_budget(cfg, ctx, info)
    if init_eps is not None and info is not None and cfg.ramp_epochs > 0:
      # The random start widens with the ramp too (N-FGSM's noise is k·ε of the ramped ε).
      init_eps = budgets.ramp_scale(info, ctx, cfg.ramp_epochs) * init_eps
  if cfg.objective == "ce":
    objective = model_objective(ctx, params, batch.labels, cfg.bn_mode, attack_losses.cross_entropy)
  else:
    # TRADES recomputes p(x) at every step in eval mode; in eval mode it is a constant.
    clean_logits, _, _ = ctx.model(params, batch_stats, batch.images, "eval" if cfg.bn_mode == "eval" else "batch_stats")
    objective = model_objective(ctx, params, batch.labels, cfg.bn_mode, attack_losses.trades_kl,
                                target_logits=jax.lax.stop_gradient(clean_logits))
  result = pgd_lib.pgd(objective, batch.images, batch.labels, key, budget,
                       max_steps=cfg.num_steps, init=cfg.init, norm=cfg.norm,
                       restarts=cfg.restarts, evaluate_final=cfg.restarts > 1, aux=batch_stats,
                       init_eps=init_eps, project=cfg.project, start=start)
  return jax.lax.stop_gradient(result.x_adv), result.aux
