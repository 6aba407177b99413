"""PGD adversarial training (Madry et al. 2018) with the Rice et al. recipe.

Official behaviour (locuslab/robust_overfitting, docs/baselines.md#pgd-at), the default here:
L-inf PGD-10, eps 8/255, step 2/255, uniform random start, CE, model in *train* BatchNorm
mode during the attack (running statistics updated by attack passes, as the original never
switches to eval). Loss CE(f(x_adv), y) in train mode. `attack.bn_mode` = 'eval' gives the
TRADES/MART-style attack instead.
"""

from __future__ import annotations

import ml_collections

from jaxat.methods import losses, maximizer
from jaxat.methods.base import Method


class PGDAT(Method):
  name = "pgd_at"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        attack=maximizer.attack_config(eps=8 / 255, step_size=2 / 255, num_steps=10,
                                       init="uniform", bn_mode="train"),
        label_smoothing=1.0,
    ))

  @classmethod
  def validate(cls, cfg, num_classes=None):
    maximizer.validate_attack_config(cfg.attack)
    if not 0.0 < cfg.label_smoothing <= 1.0:
      raise ValueError(f"method.label_smoothing is the true-class mass and must be in (0, 1], "
                       f"got {cfg.label_smoothing}")

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    x_adv, batch_stats, metrics = maximizer.maximize(ctx, params, batch_stats, batch, key,
                                                     self.cfg.attack, info)
    return {"x_adv": x_adv}, batch_stats, method_state, metrics

  def count_metric_labels(self):
    return maximizer.count_metric_labels(self.cfg.attack)

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    logits, _, batch_stats = ctx.model(params, batch_stats, prepared["x_adv"], "train")
    loss = losses.cross_entropy(logits, batch.labels, self.cfg.label_smoothing)
    return loss, (batch_stats, {"loss": loss, "adv_acc": losses.accuracy(logits, batch.labels)})
