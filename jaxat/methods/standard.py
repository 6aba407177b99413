"""Standard (natural) training: cross-entropy on clean examples."""

from __future__ import annotations

import ml_collections

from jaxat.methods import losses
from jaxat.methods.base import Method


class Standard(Method):
  """L = CE_f(f(x), y) with the model in train mode.

  Config: `label_smoothing` is the true-class mass f (1.0 = plain cross-entropy).
  """

  name = "standard"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(name=cls.name, label_smoothing=1.0))

  @classmethod
  def validate(cls, cfg, num_classes=None):
    if not 0.0 < cfg.label_smoothing <= 1.0:
      raise ValueError(f"method.label_smoothing is the true-class mass and must be in (0, 1], "
                       f"got {cfg.label_smoothing}")

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    return {}, batch_stats, method_state, {}

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    logits, _, batch_stats = ctx.model(params, batch_stats, batch.images, "train")
    loss = losses.cross_entropy(logits, batch.labels, self.cfg.label_smoothing)
    return loss, (batch_stats, {"loss": loss, "clean_acc": losses.accuracy(logits, batch.labels)})
