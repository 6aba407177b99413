"""MART (Wang et al., ICLR 2020): misclassification-aware adversarial training.

Official behaviour (YisenWang/MART @2d83e17, mart.py; docs/baselines.md#mart), the default here:
- Attack: CE PGD, x_0 = x + 0.001·N(0,1), 10 sign steps of 0.007 inside eps = 0.031,
  clipped to [0,1], the model in *eval* BatchNorm mode.
- Loss (model in train mode: a clean forward, then an adversarial forward), with
  p_adv = softmax(f(x_adv)) and p_nat = softmax(f(x)), both (B,K):
      ŷ_i   = argmax_{k != y_i} p_adv,ik            (the most likely wrong class)
      L_adv = CE(f(x_adv), y) + mean_i[-log(1.0001 - p_adv,i,ŷ_i + 1e-12)]   ("boosted CE")
      L_rob = (1/B) sum_i KL(p_nat,i || p_adv,i) · (1.0000001 - p_nat,i,y_i),
              the KL with log(p_adv + 1e-12), as in the code
      L     = L_adv + beta · L_rob,   beta = 6 (WRN-34-10 script; 5 in the ResNet-18 script).
  p_nat is not detached: gradients flow into the KL target and into the weight.

The official code finds ŷ by sorting p_adv and taking the top class unless it is y (then
the second); that is argmax over k != y except for exact ties, which are measure-zero.
`label_smoothing` is the true-class mass f of the CE term of L_adv (docs/baselines.md#label-smoothing-as-true-class-mass);
1.0 (plain CE) is the official setting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxat.methods import losses, maximizer
from jaxat.methods.base import Method

# The constants of the official mart.py.
BOOST_OFFSET = 1.0001
LOG_FLOOR = 1e-12
WEIGHT_OFFSET = 1.0000001


def most_likely_wrong_class(probs: jax.Array, labels: jax.Array) -> jax.Array:
  """argmax_{k != y_i} probs_ik per example: (B,K), (B,) -> (B,) int32."""
  is_label = jax.nn.one_hot(labels, probs.shape[-1], dtype=bool)
  return jnp.argmax(jnp.where(is_label, -jnp.inf, probs), axis=-1).astype(jnp.int32)


def misclassification_weights(clean_logits: jax.Array, labels: jax.Array) -> jax.Array:
  """(B,) weights 1.0000001 - p_nat,y of the KL term (differentiable)."""
  probs = jax.nn.softmax(clean_logits, axis=-1)
  return WEIGHT_OFFSET - jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]


def mart_loss(clean_logits: jax.Array, adv_logits: jax.Array, labels: jax.Array, beta: float,
              true_class_mass: float = 1.0) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(L, L_adv, L_rob) of MART from (B,K) clean and adversarial logits and (B,) labels."""
  adv_probs = jax.nn.softmax(adv_logits, axis=-1)
  nat_log_probs = jax.nn.log_softmax(clean_logits, axis=-1)
  nat_probs = jnp.exp(nat_log_probs)
  wrong = most_likely_wrong_class(adv_probs, labels)
  wrong_prob = jnp.take_along_axis(adv_probs, wrong[:, None], axis=-1)[:, 0]
  boosted = -jnp.mean(jnp.log(BOOST_OFFSET - wrong_prob + LOG_FLOOR))
  adversarial = losses.cross_entropy(adv_logits, labels, true_class_mass) + boosted
  # PyTorch KLDivLoss(log(p_adv + 1e-12), p_nat): p_nat · (log p_nat - log(p_adv + 1e-12)).
  # log p_nat comes from log_softmax: a class whose p_nat underflows to 0 adds 0 with
  # gradient 0, as PyTorch's masked kl_div gradient (xlogy(p, p) would give NaN gradients).
  kl = jnp.sum(nat_probs * (nat_log_probs - jnp.log(adv_probs + LOG_FLOOR)), axis=-1)
  robust = jnp.mean(kl * misclassification_weights(clean_logits, labels))
  return adversarial + beta * robust, adversarial, robust


class MART(Method):
  name = "mart"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        attack=maximizer.attack_config(eps=0.031, step_size=0.007, num_steps=10, init="normal",
                                       bn_mode="eval", objective="ce"),
        beta=6.0,
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
    if num_classes is not None and num_classes < 2:
      raise ValueError(f"MART needs at least 2 classes (it boosts the most likely wrong "
                       f"class), got num_classes={num_classes}")

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    x_adv, batch_stats, metrics = maximizer.maximize(ctx, params, batch_stats, batch, key,
                                                     self.cfg.attack, info)
    return {"x_adv": x_adv}, batch_stats, method_state, metrics

  def count_metric_labels(self):
    return maximizer.count_metric_labels(self.cfg.attack)

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    cfg = self.cfg
    clean_logits, _, batch_stats = ctx.model(params, batch_stats, batch.images, "train")
    adv_logits, _, batch_stats = ctx.model(params, batch_stats, prepared["x_adv"], "train")
    loss, adversarial, robust = mart_loss(clean_logits, adv_logits, batch.labels, cfg.beta,
                                          cfg.label_smoothing)
    metrics = {"adv_loss": adversarial, "robust_loss": robust,
               "clean_acc": losses.accuracy(clean_logits, batch.labels),
               "adv_acc": losses.accuracy(adv_logits, batch.labels)}
    return loss, (batch_stats, metrics)
