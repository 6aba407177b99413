"""Adversarial weight perturbation (Wu et al., NeurIPS 2020) over any training method.

The weight-perturbation role (docs/architecture.md#weight_perturbation) as pure functions over the parameter
pytree, and the `awp` method that composes it with a base method by config
(csdongxian/AWP @a7acf5d, docs/baselines.md#awp):

1. proxy = a copy of the weights (and BatchNorm statistics) in train mode; one plain SGD
   step (no momentum, no weight decay, learning rate `proxy_lr`) on the proxy *ascends*
   the base method's training loss L at the current batch:
       w_proxy = w - proxy_lr · grad_w(-L)          (`proxy_ascent`)
   AT-AWP: L = CE(f(x_adv), y); TRADES-AWP: L = CE(f(x), y) + beta·KL_batchmean(p(x) || p(x_adv)).
   These are exactly the losses of jaxat's `pgd_at` and `trades`, so the proxy loss is the
   base method's `loss` evaluated at the unperturbed weights.
2. Per layer, only for conv and dense kernels (Flax leaves named 'kernel' with >= 2 dims:
   PyTorch's >= 2-dim 'weight' tensors; no BatchNorm scales, no biases):
       d_l = w_proxy,l - w_l,   v_l = ||w_l|| / (||d_l|| + 1e-20) · d_l   (Frobenius norms)
   (`relative_perturbation`); every other leaf gets v_l = 0.
3. The engine (jaxat/train/step.py) adds gamma·v, takes the gradient of L and the optimiser
   step AT the perturbed weights, then subtracts gamma·v from the updated weights — as the
   official perturb / opt.step() / restore. Adding and subtracting 0 is exact, so the
   unperturbed leaves and the warm-up epochs are exactly the base method's update.

The proxy's BatchNorm running statistics are discarded: only the forward at the perturbed
weights updates the model's statistics (docs/baselines.md#proxy-batchnorm-statistics). The proxy's gradient costs
the base loss's forward and backward passes once more per step: AT-AWP 12 instead of 11
forward+backward passes (PGD-10 + training), TRADES-AWP 17 instead of 14.

Warm-up: no perturbation for 0-based epochs < `warmup_epochs`, selected with jnp.where on
the epoch, so the step compiles once. The proxy pass still runs during warm-up and is
discarded: a lax.cond would skip it, but XLA:CPU ran the conditional's convolution
gradients about 5x slower than the same ops outside it (digits, measured), which costs far
more than the few warm-up epochs (TRADES-AWP: 9 of 200).

Any method of the catalogue (jaxat/methods/catalog.py) can be the base: the proxy loss
is the base's own `loss`, the base's `prepare` (attack, per-example buffers, prerequisites)
runs unchanged, so UIAT-AWP or FGSM-MEP-AWP are configurations, not code.

Config (`method.name = 'awp'`): `method.base` names the base method (any catalogue name);
the base's own fields sit next to it, flat (`method.attack`, `method.beta`, ...), so presets
and overrides address them exactly as for the base method; `method.weight_perturbation`
holds gamma, warmup_epochs, proxy_lr. `AWP.default_config(base)` gives the official values
of the AWP repository for its two bases; every other base takes the values of the one
whose loss it resembles (`AWP_FAMILY`: the TRADES-AWP values for losses with a clean KL
term — trades, mart, hat — and the AT-AWP values otherwise). Those pairings are jaxat's,
not published recipes:

| base   | gamma | warmup_epochs | proxy_lr | attack                                  |
|--------|-------|---------------|----------|-----------------------------------------|
| pgd_at | 0.01  | 0 (SVHN: 5)   | 0.01     | PGD-10, 2/255, uniform, train-mode BN   |
| trades | 0.005 | 9             | 0.1      | TRADES KL, 10 x 2/255, eps 8/255, eval  |

TRADES-AWP's `--awp-warmup 10` is compared with 1-based epochs (`for epoch in range(1, ...)`,
`if epoch >= awp_warmup`), so AWP starts in the 10th epoch: 9 epochs without it. Its proxy
learning rate is `--lr` = 0.1 and is not decayed with the schedule.
Not reproduced: AT-AWP attacks the first batch of every epoch >= 1 in eval mode (its model
is left in eval mode by the test loop; 1 batch in 391); here every batch uses
`attack.bn_mode`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxat.methods.base import Method
from jaxat.methods.catalog import BASE_METHODS
from jaxat.methods.pgd_at import PGDAT
from jaxat.methods.trades import TRADES

BASES: dict[str, type[Method]] = BASE_METHODS
# csdongxian/AWP: AT_AWP (train_cifar10.py, utils_awp.py) and trades_AWP.
OFFICIAL = {
    PGDAT.name: dict(gamma=0.01, warmup_epochs=0, proxy_lr=0.01),
    TRADES.name: dict(gamma=0.005, warmup_epochs=9, proxy_lr=0.1),
}
# Bases without an official AWP recipe take the values of the closest official one.
AWP_FAMILY = {"trades": TRADES.name, "mart": TRADES.name, "hat": TRADES.name}
NORM_FLOOR = 1e-20  # EPS of utils_awp.py
OWN_FIELDS = ("name", "base", "weight_perturbation")


def weight_perturbation_config(gamma: float, warmup_epochs: int,
                               proxy_lr: float) -> ml_collections.ConfigDict:
  """gamma: relative size of the perturbation (||gamma·v_l|| = gamma·||w_l||);
  warmup_epochs: epochs trained without it; proxy_lr: learning rate of the proxy's ascent step."""
  return ml_collections.ConfigDict(dict(gamma=float(gamma), warmup_epochs=int(warmup_epochs),
                                        proxy_lr=float(proxy_lr)))


def validate_weight_perturbation_config(cfg: ml_collections.ConfigDict,
                                        where: str = "method.weight_perturbation") -> None:
  if not cfg.gamma >= 0:
    raise ValueError(f"{where}.gamma must be >= 0 (0 = no perturbation), got {cfg.gamma}")
  warmup = cfg.warmup_epochs
  if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
    raise ValueError(f"{where}.warmup_epochs must be an integer >= 0, got {cfg.warmup_epochs!r}")
  if not cfg.proxy_lr > 0:
    raise ValueError(f"{where}.proxy_lr must be > 0, got {cfg.proxy_lr}")


def is_perturbed(path: tuple, leaf: jax.Array) -> bool:
  """True for conv and dense kernels: leaves named 'kernel' with at least 2 dimensions."""
  last = path[-1] if path else None
  name = getattr(last, "key", getattr(last, "name", None))
  return name == "kernel" and jnp.ndim(leaf) >= 2


def proxy_ascent(loss_fn: Callable[[Any], jax.Array], params: Any, proxy_lr: float) -> Any:
  """The proxy weights after one plain SGD step on -loss_fn (no momentum, no decay)."""
  grads = jax.grad(lambda p: -loss_fn(p))(params)
  sgd = optax.sgd(proxy_lr)
  updates, _ = sgd.update(grads, sgd.init(params), params)
  return optax.apply_updates(params, updates)


def relative_perturbation(params: Any, proxy_params: Any) -> Any:
  """v with v_l = ||w_l|| / (||d_l|| + 1e-20) · d_l, d_l = proxy_l - w_l, for kernels; 0 elsewhere."""

  def per_leaf(path, weight, proxy):
    if not is_perturbed(path, weight):
      return jnp.zeros_like(weight)
    diff = proxy - weight
    return jnp.linalg.norm(weight.ravel()) / (jnp.linalg.norm(diff.ravel()) + NORM_FLOOR) * diff

  return jax.tree_util.tree_map_with_path(per_leaf, params, proxy_params)


def adversarial_weight_perturbation(loss_fn: Callable[[Any], jax.Array], params: Any,
                                    cfg: ml_collections.ConfigDict, epoch: jax.Array) -> Any:
  """gamma·v for 0-based `epoch` >= cfg.warmup_epochs, exact zeros before (a pytree like params)."""
  v = relative_perturbation(params, proxy_ascent(loss_fn, params, cfg.proxy_lr))
  active = epoch >= cfg.warmup_epochs
  return jax.tree.map(lambda leaf: jnp.where(active, cfg.gamma * leaf, jnp.zeros_like(leaf)), v)


def base_method_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The base method's own sub-config: every field of `cfg` but AWP's, named after the base."""
  fields = {key: cfg[key] for key in cfg.keys() if key not in OWN_FIELDS}
  return ml_collections.ConfigDict({**fields, "name": cfg.base})


class AWP(Method):
  name = "awp"

  def __init__(self, cfg):
    super().__init__(cfg)
    self.base = BASES[cfg.base](base_method_config(cfg))

  @classmethod
  def default_config(cls, base: str = PGDAT.name):
    """AT-AWP by default; `base='trades'` gives TRADES-AWP (see the module docstring); any
    other catalogue method gets its own defaults wrapped (`wrap_config`)."""
    if base not in BASES:
      raise ValueError(f"unknown AWP base method {base!r}; valid choices: {', '.join(sorted(BASES))}")
    c = BASES[base].default_config()
    if base == TRADES.name:
      # trades_AWP/train_trades_cifar.py: --epsilon 8 --step-size 2 (of 255).
      c.attack.update(eps=8 / 255, step_size=2 / 255)
    return cls.wrap_config(c)

  @classmethod
  def wrap_config(cls, base_cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """An AWP method config over the base method config `base_cfg` (its fields kept flat,
    `base` = its name, the weight perturbation of its AWP family)."""
    base = base_cfg.name
    if base not in BASES:
      raise ValueError(f"unknown AWP base method {base!r}; valid choices: {', '.join(sorted(BASES))}")
    c = ml_collections.ConfigDict(base_cfg.to_dict())
    c.name = cls.name
    c.base = base
    c.weight_perturbation = weight_perturbation_config(**OFFICIAL[AWP_FAMILY.get(base, PGDAT.name)])
    return c

  @classmethod
  def validate(cls, cfg, num_classes=None):
    if cfg.base not in BASES:
      raise ValueError(f"unknown method.base {cfg.base!r}; valid choices: {', '.join(sorted(BASES))}")
    validate_weight_perturbation_config(cfg.weight_perturbation)
    expected = set(BASES[cfg.base].default_config().keys()) - {"name"}
    present = set(cfg.keys()) - set(OWN_FIELDS)
    if present != expected:
      raise ValueError(
          f"method.base={cfg.base!r} needs the fields {sorted(expected)} next to it, got "
          f"{sorted(present)}; choose the base with the config argument "
          f"(configs/awp.py:<dataset>,{cfg.base}), not by overriding method.base")
    BASES[cfg.base].validate(base_method_config(cfg), num_classes)

  @classmethod
  def wrap_model(cls, model, cfg):
    # The base decides the model (ANCRA's reverse-attention wrapper): AWP perturbs the
    # weights of whatever model the base trains.
    return BASES[cfg.base].wrap_model(model, base_method_config(cfg))

  def count_metric_labels(self):
    return self.base.count_metric_labels()

  def epoch_phase(self, epoch, ctx, method_state=None):
    return self.base.epoch_phase(epoch, ctx, method_state)

  def prerequisites(self, config, workdir):
    return self.base.prerequisites(config, workdir)

  def attach_prerequisites(self, runs):
    self.base.attach_prerequisites(runs)

  def init_state(self, key, ctx, params, batch_stats):
    return self.base.init_state(key, ctx, params, batch_stats)

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    return self.base.prepare(ctx, params, batch_stats, method_state, batch, key, info)

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    return self.base.loss(ctx, params, batch_stats, batch, prepared, key, info)

  def weight_perturbation(self, ctx, params, batch_stats, batch, prepared, key, info):
    def proxy_loss(proxy_params):
      # The proxy's updated BatchNorm statistics are dropped here.
      loss, _ = self.base.loss(ctx, proxy_params, batch_stats, batch, prepared, key, info)
      return loss

    return adversarial_weight_perturbation(proxy_loss, params, self.cfg.weight_perturbation,
                                           info.epoch)
