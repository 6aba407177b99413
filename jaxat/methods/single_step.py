"""Single-step adversarial training: one signed gradient step from a start point, then CE.

The shared body of FGSM-RS (jaxat/methods/fgsm_rs.py) and N-FGSM (jaxat/methods/n_fgsm.py),
which differ only in their attack sub-config (`maximizer.attack_config`):

  x_0   = Π_img(x + η),  η ~ U(−r, r)  (r = attack.init_eps, or attack.eps when 0;
                                         attack.init='zero' gives η = 0)
  g     = ∇_x CE(f(x_0), y)             (BatchNorm mode attack.bn_mode; 'train' keeps the
                                         running-statistics update of this pass)
  x_adv = Π_img(Π_ε(x_0 + α·sign(g)))  (Π_ε skipped when attack.project is False)
  loss  = CE(f(x_adv), y), batch mean, train-mode BatchNorm.

ε and α may ramp from 0 over the first attack.ramp_epochs epochs (jaxat/methods/budgets.py;
the random start's radius ramps with them).
"""

from __future__ import annotations

import ml_collections

from jaxat.methods import losses, maximizer
from jaxat.methods.base import Method


def validate_single_step_attack(cfg: ml_collections.ConfigDict, method: str) -> None:
  """The generic attack checks, then the ones a single-step method adds."""
  attack = cfg.attack
  maximizer.validate_attack_config(attack)
  if attack.num_steps != 1:
    raise ValueError(f"method.attack.num_steps={attack.num_steps!r} is invalid for {method}: "
                     "it is a single-step method; valid: 1")
  if attack.restarts != 1:
    raise ValueError(f"method.attack.restarts={attack.restarts!r} is invalid for {method}; valid: 1")
  if attack.objective != "ce":
    raise ValueError(f"method.attack.objective={attack.objective!r} is invalid for {method}; "
                     "valid choices: ce")
  if attack.norm != "linf":
    raise ValueError(f"method.attack.norm={attack.norm!r} is invalid for {method}; valid choices: linf")


class SingleStepAT(Method):
  """One-step attack from `cfg.attack`, CE on the result (subclasses set the defaults)."""

  @classmethod
  def validate(cls, cfg, num_classes=None):
    validate_single_step_attack(cfg, cls.name)

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    x_adv, batch_stats, metrics = maximizer.maximize(ctx, params, batch_stats, batch, key,
                                                     self.cfg.attack, info)
    return {"x_adv": x_adv}, batch_stats, method_state, metrics

  def count_metric_labels(self):
    return maximizer.count_metric_labels(self.cfg.attack)

  exposes_adversarial_logits = True

  def loss_and_logits(self, ctx, params, batch_stats, batch, prepared, key, info):
    logits, _, batch_stats = ctx.model(params, batch_stats, prepared["x_adv"], "train")
    loss = losses.cross_entropy(logits, batch.labels)
    return loss, (batch_stats, {"loss": loss, "adv_acc": losses.accuracy(logits, batch.labels)},
                  logits)

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    loss, (batch_stats, metrics, _) = self.loss_and_logits(ctx, params, batch_stats, batch,
                                                           prepared, key, info)
    return loss, (batch_stats, metrics)
