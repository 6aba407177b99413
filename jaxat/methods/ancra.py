"""ANCRA (Zhou et al., "Robust representation learning via asymmetric negative contrast and
reverse attention", arXiv 2310.03358): adversarial training with an asymmetric negative
contrast (ANC) and reverse attention (RA). Decisions and deviations: docs/ancra.md.

Model: the method declares the reverse-attention wrapper through `Method.wrap_model`
(jaxat/models/reverse_attention.py); the engine builds every ANCRA model through it, so the
plain forward used by evaluation and AutoAttack is the authors' test-time model (gate = the
auxiliary head's argmax).

Official behaviour (TRADES-ANCRA, the only released variant), the default:
- x_adv: untargeted PGD from x + 0.001·N(0,1), 10 sign steps of 0.007, eps 8/255, ascent on
  CE(final(x'), y) + cr_beta·CE(aux(x'), y), eval-mode BatchNorm, predicted-label gate.
- x_neg ('random_adv'): for anchor i, a class c != y_i drawn uniformly among the classes in the
  batch, an example j of class c drawn uniformly, then *targeted* PGD toward y_i (same
  schedule, descent on the same objective with label y_i).
- Loss, every forward in train mode gated by its true label (anchor: y, x_adv: y, x_neg: y_j):
    L_nat = CE(final(x), y) + cr_beta·CE(aux(x), y)
    L_rob = KL(p_final(x) || p_final(x_adv)) + cr_beta·KL(p_aux(x) || p_aux(x_adv))   (batchmean)
    L_anc = ANC(p_final(x), p_final(x_neg)) + cr_beta·ANC(p_aux(x), p_aux(x_neg))
    L = L_nat + beta·L_rob + zeta·L_anc,   cr_beta = 2, beta = 6, zeta = 3, alpha = 1.
  ANC (paper Eq. 4): (1/B) sum_i 1[h_i = h_i^o]·[alpha·sqrt(sg(max p_i)·max q_i)
  + (1-alpha)·sqrt(max p_i·sg(max q_i))]; alpha = 1 moves only the negative ("natural examples
  frozen").
objective 'pgd_at' / 'mart' (the paper's variants, not in the official code): the TRADES term
is replaced by CE(final(x_adv), y) + cr_beta·CE(aux(x_adv), y) (PGD-AT), or by the MART loss
on each head (beta_mart = 5), with the same L_anc.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from jaxat.attacks import losses as attack_losses
from jaxat.attacks import pgd as pgd_lib
from jaxat.attacks.budget import Budget
from jaxat.methods import losses
from jaxat.methods.base import Batch, Method
from jaxat.methods.mart import mart_loss
from jaxat.models.reverse_attention import GATES, ReverseAttentionModelFn

OBJECTIVES = ("trades", "pgd_at", "mart")
NEGATIVES = ("random_adv", "random")


def asymmetric_negative_contrast(anchor_logits: jax.Array, negative_logits: jax.Array,
                                 alpha: float) -> jax.Array:
  """Paper Eq. 4 from (B,K) logits: (1/B) sum_i 1[h_i = h^o_i]·[alpha·sqrt(sg(P_i)·Q_i)
  + (1-alpha)·sqrt(P_i·sg(Q_i))], P_i = max_k softmax(anchor)_ik, Q_i likewise for the negative.
  With alpha = 1 only the negative branch receives gradient."""
  p = jax.nn.softmax(anchor_logits, axis=-1)
  q = jax.nn.softmax(negative_logits, axis=-1)
  same = (jnp.argmax(p, axis=-1) == jnp.argmax(q, axis=-1)).astype(p.dtype)
  p_max, q_max = jnp.max(p, axis=-1), jnp.max(q, axis=-1)
  sg = jax.lax.stop_gradient
  pair = alpha * jnp.sqrt(sg(p_max) * q_max) + (1 - alpha) * jnp.sqrt(p_max * sg(q_max))
  return jnp.mean(same * pair)


def pick_negatives(key: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """(B,) index j of each anchor's negative: a class != y_i drawn uniformly among the classes
  present in the batch, then an example of that class drawn uniformly. An anchor whose batch
  holds no other class gets itself (its contrast term then pushes its own prediction)."""
  class_key, example_key = jax.random.split(key)
  present = jnp.zeros((num_classes,), bool).at[labels].set(True)
  other = present[None, :] & (jnp.arange(num_classes)[None, :] != labels[:, None])   # (B,K)
  classes = jax.random.categorical(class_key, jnp.where(other, 0.0, -jnp.inf), axis=-1)
  of_class = labels[None, :] == classes[:, None]                                      # (B,B)
  picked = jax.random.categorical(example_key, jnp.where(of_class, 0.0, -jnp.inf), axis=-1)
  return jnp.where(jnp.any(other, axis=-1), picked, jnp.arange(labels.shape[0]))


def heads_pgd(model, params, batch_stats, x, labels, key, attack, cr_beta: float,
              direction: float) -> jax.Array:
  """L-inf PGD (the shared driver, jaxat/attacks/pgd.py) on the per-example objective
  CE(final, y) + cr_beta·CE(aux, y) of the predicted-label model in eval BatchNorm mode:
  direction = +1 ascends (untargeted x_adv), -1 descends toward `labels` (targeted x_neg).
  Start x + 0.001·N(0,1); every iterate projected to the ε-ball and [0,1]."""

  def objective(x_adv, aux):
    out = model.gated(params, batch_stats, x_adv, "eval")
    value = (attack_losses.cross_entropy(out.final_logits, labels)
             + cr_beta * attack_losses.cross_entropy(out.aux_logits, labels))
    return value, (out.final_logits, aux)

  budget = Budget(attack.eps, attack.step_size, attack.num_steps)
  result = pgd_lib.pgd(objective, x, labels, key, budget, max_steps=attack.num_steps,
                       init="normal", direction=direction, evaluate_final=False)
  return jax.lax.stop_gradient(result.x_adv)


@dataclasses.dataclass(frozen=True)
class Heads:
  final: jax.Array
  aux: jax.Array


def ancra_loss(clean: Heads, adv: Heads, negative: Heads, labels: jax.Array,
               cfg: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
  """(L, parts) of the chosen objective plus zeta·L_anc (module docstring)."""
  anc = (asymmetric_negative_contrast(clean.final, negative.final, cfg.alpha)
         + cfg.cr_beta * asymmetric_negative_contrast(clean.aux, negative.aux, cfg.alpha))
  if cfg.objective == "trades":
    natural = (losses.cross_entropy(clean.final, labels)
               + cfg.cr_beta * losses.cross_entropy(clean.aux, labels))
    robust = (losses.kl_batchmean(clean.final, adv.final)
              + cfg.cr_beta * losses.kl_batchmean(clean.aux, adv.aux))
    base = natural + cfg.beta * robust
  elif cfg.objective == "pgd_at":
    natural = losses.cross_entropy(clean.final, labels)
    robust = (losses.cross_entropy(adv.final, labels)
              + cfg.cr_beta * losses.cross_entropy(adv.aux, labels))
    base = robust
  else:
    final_loss, natural, robust = mart_loss(clean.final, adv.final, labels, cfg.beta)
    base = final_loss + cfg.cr_beta * mart_loss(clean.aux, adv.aux, labels, cfg.beta)[0]
  return base + cfg.zeta * anc, {"natural_loss": natural, "robust_loss": robust, "anc_loss": anc}


class ANCRA(Method):
  name = "ancra"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        objective="trades",
        attack=ml_collections.ConfigDict(dict(eps=8 / 255, step_size=0.007, num_steps=10)),
        negatives="random_adv",
        beta=6.0,
        cr_beta=2.0,
        zeta=3.0,
        alpha=1.0,
        gate="argmax",
        gate_temperature=1.0,
    ))

  @classmethod
  def validate(cls, cfg, num_classes=None):
    for field, choices in (("objective", OBJECTIVES), ("negatives", NEGATIVES), ("gate", GATES)):
      if cfg[field] not in choices:
        raise ValueError(f"unknown method.{field} {cfg[field]!r}; valid choices: {', '.join(choices)}")
    if not 0 <= cfg.attack.eps <= 1:
      raise ValueError(f"method.attack.eps must be in [0, 1] (pixel units, e.g. 8/255), got {cfg.attack.eps}")
    if not cfg.attack.step_size >= 0:
      raise ValueError(f"method.attack.step_size must be >= 0, got {cfg.attack.step_size}")
    if cfg.attack.num_steps < 1:
      raise ValueError(f"method.attack.num_steps must be >= 1, got {cfg.attack.num_steps}")
    for field in ("beta", "cr_beta", "zeta"):
      if not cfg[field] >= 0:
        raise ValueError(f"method.{field} must be >= 0, got {cfg[field]}")
    if not 0 <= cfg.alpha <= 1:
      raise ValueError(f"method.alpha must be in [0, 1], got {cfg.alpha}")
    if not cfg.gate_temperature > 0:
      raise ValueError(f"method.gate_temperature must be > 0, got {cfg.gate_temperature}")

  @classmethod
  def wrap_model(cls, model, cfg):
    return ReverseAttentionModelFn(model.module, gate=cfg.gate, temperature=cfg.gate_temperature)

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    cfg = self.cfg
    model = ctx.model
    x, y = batch.images, batch.labels
    x_adv = heads_pgd(model, params, batch_stats, x, y, jax.random.fold_in(key, 0), cfg.attack,
                      cfg.cr_beta, +1.0)
    negative = pick_negatives(jax.random.fold_in(key, 1), y, ctx.num_classes)
    x_neg = x[negative]
    if cfg.negatives == "random_adv":
      x_neg = heads_pgd(model, params, batch_stats, x_neg, y, jax.random.fold_in(key, 2),
                        cfg.attack, cfg.cr_beta, -1.0)
    return {"x_adv": x_adv, "x_neg": x_neg, "neg_labels": y[negative]}, batch_stats, method_state, {}

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    model = ctx.model
    y = batch.labels
    clean = model.gated(params, batch_stats, batch.images, "train", y)
    adv = model.gated(params, clean.batch_stats, prepared["x_adv"], "train", y)
    neg = model.gated(params, adv.batch_stats, prepared["x_neg"], "train", prepared["neg_labels"])
    loss, parts = ancra_loss(Heads(clean.final_logits, clean.aux_logits),
                             Heads(adv.final_logits, adv.aux_logits),
                             Heads(neg.final_logits, neg.aux_logits), y, self.cfg)
    metrics = {**parts, "clean_acc": losses.accuracy(clean.final_logits, y),
               "adv_acc": losses.accuracy(adv.final_logits, y)}
    return loss, (neg.batch_stats, metrics)
