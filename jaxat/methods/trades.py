"""TRADES (Zhang et al., ICML 2019): clean cross-entropy plus a KL robustness term.

Official behaviour (yaodongyu/TRADES @6e8e11b, docs/baselines.md#trades), the default here:
- Attack: L-inf, x_0 = x + 0.001·N(0,1), 10 sign steps of 0.007 ascending
  sum_i KL(p(x_i) || p(x'_i)), projected onto eps = 0.031 and clipped to [0,1] after every
  step, the model in *eval* BatchNorm mode (p(x) is then a constant).
- Loss (TRADES Eq. 5, model in train mode):
      L = CE(f(x), y) + beta · (1/B) sum_i KL(p(x_i) || p(x_adv,i)),   beta = 6 (= 1/lambda).
  The clean softmax target is NOT detached: gradients flow into both branches
  (docs/baselines.md#clean-targets-are-not-detached).

`kl_target_forward`:
- 'separate' (official): the KL target comes from a second clean forward, so the training
  step runs three train-mode forwards (clean for CE, adversarial, clean again for the
  target). Both clean forwards compute the same logits (same weights, same batch), so loss
  and gradients equal those of 'shared'; the only effect is that the BatchNorm running
  averages see the clean batch twice: after one step they are
  0.729·r + 0.181·mean_clean + 0.09·mean_adv instead of 0.81·r + 0.09·mean_clean + 0.1·mean_adv.
  These running averages are what the eval-mode attack and the evaluation use.
  jaxat takes the KL target from the first clean forward and replays the second one's
  running-average update without running it (`replay_running_update`: equal up to float
  round-off), so the step costs what 'shared' costs: one clean forward and one backward
  through it, whose cotangent sums the CE's and the KL target's, where the official
  code's graph back-propagates through both clean passes (the same gradient up to float
  round-off; docs/baselines.md#second-clean-forward).
- 'shared': the CE forward's logits are the KL target, and the running averages see the
  clean batch once.

The order of the train-mode forwards is TRADES' (clean, adversarial, clean); TRADES-AWP's
script runs (adversarial, clean, clean), which changes only the order of the running-average
updates (docs/baselines.md#awp; jaxat/methods/awp.py uses this class unchanged).

`label_smoothing` is the true-class mass f of the clean CE (docs/baselines.md#label-smoothing-as-true-class-mass); 1.0 (plain
CE) is the official setting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxat.attacks import losses as per_example
from jaxat.methods import losses, maximizer
from jaxat.methods.base import Method
from jaxat.models.forward import replay_running_update

KL_TARGET_FORWARDS = ("separate", "shared")


def trades_loss(clean_logits: jax.Array, adv_logits: jax.Array, target_logits: jax.Array,
                labels: jax.Array, beta, true_class_mass: float = 1.0
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(L, natural, robust) of TRADES Eq. 5 from (B,K) logits and (B,) labels.

  natural = CE_f(clean_logits, y) (batch mean), robust = (1/B) sum_i KL(softmax(target_i) ||
  softmax(adv_i)) with gradients into both arguments, L = natural + beta · robust.
  `target_logits` is `clean_logits` itself or a second clean forward (see module docstring).
  `beta` is a scalar, or a (B,) array of per-example weights (LAS-TRADES,
  docs/las_at.md#reward): L = natural + (1/B) sum_i beta_i KL_i, `robust` still unweighted.
  """
  natural = losses.cross_entropy(clean_logits, labels, true_class_mass)
  if jnp.ndim(beta) == 1:
    kl = per_example.kl_divergence(target_logits, adv_logits)
    return natural + jnp.mean(beta * kl), natural, jnp.mean(kl)
  robust = losses.kl_batchmean(target_logits, adv_logits)
  return natural + beta * robust, natural, robust


class TRADES(Method):
  name = "trades"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        attack=maximizer.attack_config(eps=0.031, step_size=0.007, num_steps=10, init="normal",
                                       bn_mode="eval", objective="kl"),
        beta=6.0,
        kl_target_forward="separate",
        label_smoothing=1.0,
    ))

  @classmethod
  def validate(cls, cfg, num_classes=None):
    maximizer.validate_attack_config(cfg.attack)
    if not cfg.beta >= 0:
      raise ValueError(f"method.beta must be >= 0, got {cfg.beta}")
    if not 0.0 < cfg.label_smoothing <= 1.0:
      raise ValueError(f"method.label_smoothing is the true-class mass and must be in (0, 1], "
                       f"got {cfg.label_smoothing}")
    if cfg.kl_target_forward not in KL_TARGET_FORWARDS:
      raise ValueError(f"unknown method.kl_target_forward {cfg.kl_target_forward!r}; valid "
                       f"choices: {', '.join(KL_TARGET_FORWARDS)}")

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    x_adv, batch_stats, metrics = maximizer.maximize(ctx, params, batch_stats, batch, key,
                                                     self.cfg.attack, info)
    return {"x_adv": x_adv}, batch_stats, method_state, metrics

  def count_metric_labels(self):
    return maximizer.count_metric_labels(self.cfg.attack)

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    cfg = self.cfg
    before = batch_stats
    clean_logits, _, after_clean = ctx.model(params, before, batch.images, "train")
    adv_logits, _, batch_stats = ctx.model(params, after_clean, prepared["x_adv"], "train")
    if cfg.kl_target_forward == "separate":
      # The official second clean forward would give clean_logits again (same weights, same
      # batch, batch statistics): only its running-average update is replayed.
      batch_stats = replay_running_update(before, after_clean, batch_stats)
    target_logits = clean_logits
    loss, natural, robust = trades_loss(clean_logits, adv_logits, target_logits, batch.labels,
                                        prepared.get("beta", cfg.beta), cfg.label_smoothing)
    metrics = {"natural_loss": natural, "robust_loss": robust,
               "clean_acc": losses.accuracy(clean_logits, batch.labels),
               "adv_acc": losses.accuracy(adv_logits, batch.labels)}
    return loss, (batch_stats, metrics)
