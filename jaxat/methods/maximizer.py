"""The inner maximiser role: training-time adversarial examples from a method's config.

Every method that trains on adversarial examples describes its attack with the same
sub-config (`attack_config`), so the BatchNorm mode of attack generation is always an
explicit, per-method setting: 'eval', 'batch_stats' or 'train' (see models/forward.py).
In 'train' mode the running statistics are threaded through every attack pass and kept,
as in the PyTorch originals whose model stays in train mode while attacking (Rice PGD-AT,
fast AT); the returned batch_stats then contain those updates.

The budget role is part of the same sub-config (`attack.budget`, jaxat/methods/budgets.py):
'fixed' (with the optional `ramp_epochs` warm-up) or 'ecas' (entropy-guided per-example ε,
docs/ecas.md, its settings in `attack.ecas`). `maximize` is the one entry point that
computes it inside the jitted step and returns the role's count metrics (`counts/eps`), so
every method that attacks through it gets ECAS by configuration and forwards the metrics
from `prepare`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from jaxat.attacks import losses as attack_losses
from jaxat.attacks import pgd as pgd_lib
from jaxat.attacks.budget import Budget
from jaxat.attacks.inits import INITS
from jaxat.attacks.projections import NORMS
from jaxat.models.forward import validate_bn_mode
from jaxat.methods import budgets
from jaxat.methods import ecas_budget as ecas_rule
from jaxat.methods.base import Batch, Metrics, StepContext, StepInfo

OBJECTIVES = ("ce", "kl")
BUDGETS = ("fixed", "ecas")
# fold_in constant of the key that draws ECAS's per-batch ε_big: the attack keeps the key it
# has with a fixed budget, so switching the role on does not change the random start stream.
ECAS_KEY = 0xEC45


def ecas_config(eps_list=tuple(k / 255 for k in range(3, 13)),
                big=(10 / 255, 11 / 255, 12 / 255), rho_high: float = 2.274,
                rho_low: float = 1.3, reading: str = "example",
                bn_mode: str = "train") -> ml_collections.ConfigDict:
  """Sub-config of the ECAS budget role (docs/ecas.md). The defaults are the official ECAS-PGD-AT
  CIFAR-10 values.

  eps_list, big: the option set E and its "big" subset, in [0,1] pixel units (k/255).
  rho_high / rho_low: entropy thresholds in nats (strict: H > rho_high gets min(E), H <
    rho_low gets the batch's ε_big, otherwise the epoch's cyclic ε).
  reading: 'example' (official code) | 'class' (the paper's per-class reading).
  bn_mode: BatchNorm mode of the clean entropy forward; 'train' (official: the model is in
    train mode there, so that pass updates the running statistics).
  """
  return ml_collections.ConfigDict(dict(
      eps_list=tuple(float(e) for e in eps_list), big=tuple(float(e) for e in big),
      rho_high=float(rho_high), rho_low=float(rho_low), reading=reading, bn_mode=bn_mode))


def ecas_rule_of(cfg: ml_collections.ConfigDict) -> ecas_rule.EcasRule:
  """The pure rule's settings from an `attack.ecas` sub-config ([0,1] pixel units)."""
  return ecas_rule.EcasRule(eps_list=tuple(sorted(float(e) for e in cfg.eps_list)),
                            big=tuple(sorted(float(e) for e in cfg.big)),
                            rho_high=float(cfg.rho_high), rho_low=float(cfg.rho_low),
                            reading=cfg.reading)


def budget_of(cfg: ml_collections.ConfigDict) -> str:
  """The attack's budget role; configs written before the field existed are 'fixed'."""
  return cfg.get("budget", "fixed")


def attack_config(eps: float = 8 / 255, step_size: float = 2 / 255, num_steps: int = 10,
                  init: str = "uniform", bn_mode: str = "train", norm: str = "linf",
                  restarts: int = 1, objective: str = "ce", init_eps: float = 0.0,
                  project: bool = True, ramp_epochs: int = 0, budget: str = "fixed",
                  final_clip_eps: float = 0.0) -> ml_collections.ConfigDict:
  """Sub-config of a training-time attack. eps and step_size are in [0,1] pixel units.

  objective: 'ce' (ascent on cross-entropy) or 'kl' (TRADES: ascent on KL(p(x) || p(x'))).
  init_eps: radius of the uniform random start; 0 means eps (N-FGSM uses 2 * eps).
  project: False disables the projection onto the eps-ball (N-FGSM); [0,1] clipping stays.
  ramp_epochs: the budget role (jaxat/methods/budgets.py): 0 = fixed; R > 0 ramps eps and
    step_size linearly from 0 over the first R epochs (N-FGSM on SVHN).
  budget: 'fixed' (eps, step_size, num_steps; ramped when ramp_epochs > 0) or 'ecas' (per-
    example ε from the `ecas` sub-config; eps and step_size are then unused, num_steps is the
    step count). `ecas` is written to config.json only when budget = 'ecas'.
  final_clip_eps: > 0 clips the returned perturbation to [-final_clip_eps, final_clip_eps]
    after the attack (ECAS-AWP clips δ to 8/255 whatever ε the search used); 0 = off.
  FGSM-RS is num_steps=1, step_size=1.25*eps, init='uniform'.
  """
  return ml_collections.ConfigDict(dict(
      eps=float(eps), step_size=float(step_size), num_steps=int(num_steps), init=init,
      bn_mode=bn_mode, norm=norm, restarts=int(restarts), objective=objective,
      init_eps=float(init_eps), project=bool(project), ramp_epochs=int(ramp_epochs),
      budget=budget, final_clip_eps=float(final_clip_eps), ecas=ecas_config()))


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
  budget = budget_of(cfg)
  if budget not in BUDGETS:
    raise ValueError(f"unknown {where}.budget {budget!r}; valid choices: {', '.join(BUDGETS)}")
  final_clip = cfg.get("final_clip_eps", 0.0)
  if not 0.0 <= final_clip <= 1.0:
    raise ValueError(f"{where}.final_clip_eps={final_clip} must be in [0, 1] pixel units "
                     "(0 = off, 8/255 = 0.0314)")
  if budget == "ecas":
    if cfg.ramp_epochs > 0:
      raise ValueError(f"{where}.ramp_epochs={cfg.ramp_epochs} cannot be combined with "
                       f"{where}.budget='ecas'; valid: 0")
    validate_ecas_config(cfg.ecas, f"{where}.ecas")


def validate_ecas_config(cfg: ml_collections.ConfigDict, where: str = "method.attack.ecas") -> None:
  """One-line ValueErrors naming the field, its value and what is valid."""
  for name in ("eps_list", "big"):
    values = cfg[name]
    if not isinstance(values, (tuple, list)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
      raise ValueError(f"{where}.{name}={values!r} must be a tuple of ε in [0,1] pixel units")
    if any(not 0 < v <= 1 for v in values):
      raise ValueError(f"{where}.{name}={tuple(values)} must hold ε in (0, 1] pixel units "
                       "(k/255, e.g. 3/255 = 0.0118)")
  for name in ("rho_high", "rho_low"):
    if not cfg[name] >= 0:
      raise ValueError(f"{where}.{name}={cfg[name]} must be an entropy >= 0 in nats")
  validate_bn_mode(cfg.bn_mode, f"{where}.bn_mode")
  ecas_rule.validate_rule(ecas_rule.EcasRule(tuple(cfg.eps_list), tuple(cfg.big), cfg.rho_high,
                                             cfg.rho_low, cfg.reading), where)


def require_fixed_budget(cfg: ml_collections.ConfigDict, method: str,
                         where: str = "method.attack") -> None:
  """For methods whose attack does not go through `maximize` (the budget role would be
  silently ignored there)."""
  if budget_of(cfg) != "fixed":
    raise ValueError(f"{where}.budget={budget_of(cfg)!r} is invalid for {method}: its attack "
                     "does not go through the shared maximiser; valid choices: fixed")


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


class Maximized(NamedTuple):
  """What the inner maximiser returns: x_adv (B,H,W,C) (no gradient), the BatchNorm
  collection after the attack (and after the budget role's entropy pass), and the budget
  role's metrics (ECAS: {'counts/eps': (|E|, K) int32}; empty for a fixed budget), which the
  method returns from `prepare`."""

  x_adv: jax.Array
  batch_stats: Any
  metrics: Metrics


def maximize(ctx: StepContext, params: Any, batch_stats: Any, batch: Batch, key: jax.Array,
             cfg: ml_collections.ConfigDict, info: StepInfo | None = None,
             start: jax.Array | None = None) -> Maximized:
  """The training-time attack of `cfg` with its budget role (module docstring)."""
  if budget_of(cfg) != "ecas":
    x_adv, batch_stats = adversarial_examples(ctx, params, batch_stats, batch, key, cfg, info,
                                              start=start)
    return Maximized(x_adv, batch_stats, {})
  if info is None:
    raise ValueError("the ECAS budget role needs the StepInfo (its ε cycles with the epoch)")
  budget, batch_stats, counts = budgets.ecas_budget(
      ctx, params, batch_stats, batch, jax.random.fold_in(key, ECAS_KEY), info,
      ecas_rule_of(cfg.ecas), cfg.ecas.bn_mode, cfg.num_steps)
  x_adv, batch_stats = adversarial_examples(ctx, params, batch_stats, batch, key, cfg, info,
                                            budget=budget, start=start)
  return Maximized(x_adv, batch_stats, {"counts/eps": counts})


def count_metric_labels(cfg: ml_collections.ConfigDict) -> dict[str, tuple[str, ...]]:
  """The option labels of the count metrics `maximize` emits for the attack `cfg`."""
  if budget_of(cfg) != "ecas":
    return {}
  return {"counts/eps": ecas_rule.eps_labels(ecas_rule_of(cfg.ecas).eps_list)}


def adversarial_examples(ctx: StepContext, params: Any, batch_stats: Any, batch: Batch,
                         key: jax.Array, cfg: ml_collections.ConfigDict,
                         info: StepInfo | None = None, budget: Budget | None = None,
                         start: jax.Array | None = None) -> tuple[jax.Array, Any]:
  """x_adv (B,H,W,C) for a training batch, and the BatchNorm collection after the attack.

  The budget comes from the fixed budget role (budgets.training_budget: fixed, or ramped
  with `info`); an explicit `budget` overrides it with per-example arrays (ECAS through
  `maximize`, LAS-AT), and `cfg.num_steps` is then the static upper bound of the loop.
  `start` is the initialiser role's explicit start point x_0 (B,H,W,C) (prior buffers,
  generators); without it the attack starts from `cfg.init`. Methods call `maximize`, which
  also applies `cfg.budget`.
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
  x_adv = result.x_adv
  final_clip = cfg.get("final_clip_eps", 0.0)
  if final_clip > 0:
    # δ is clipped after the search; x + δ stays in [0,1] since x_adv and x both are.
    x_adv = batch.images + jnp.clip(x_adv - batch.images, -final_clip, final_clip)
  return jax.lax.stop_gradient(x_adv), result.aux
