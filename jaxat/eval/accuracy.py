"""Clean and PGD accuracy over a whole split, every example exactly once.

Used by the training loop (per-epoch monitor, checkpoint selection on validation, final
report). The split is padded to a multiple of the batch size and placed on device once;
a jitted function evaluates batch `i` by slicing it on device, and padded rows are masked
out of the counts. One compilation serves every batch.

The attack is L-inf PGD with a uniform random start and cross-entropy, 1 restart, the
model in `bn_mode` (default 'eval': running statistics), as in the Rice/TRADES evaluators.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxat import xla_cpu
from jaxat.attacks import losses
from jaxat.attacks import pgd as pgd_lib
from jaxat.attacks.budget import Budget
from jaxat.models.forward import ModelFn
from jaxat.train import sharding


@dataclasses.dataclass(frozen=True)
class PGDSpec:
  """eps and step_size in [0,1] pixel units; num_steps iterations; bn_mode of the model."""

  eps: float
  step_size: float
  num_steps: int
  bn_mode: str = "eval"


@dataclasses.dataclass
class DeviceSplit:
  """A split padded to a multiple of `batch_size` and replicated on the mesh."""

  images: jax.Array   # (M,H,W,C) uint8, M = num_batches * batch_size
  labels: jax.Array   # (M,) int32
  num_examples: int
  batch_size: int

  @property
  def num_batches(self) -> int:
    return self.images.shape[0] // self.batch_size


def put_split(images: np.ndarray, labels: np.ndarray, batch_size: int, mesh) -> DeviceSplit:
  n = len(labels)
  num_batches = max(1, -(-n // batch_size))
  pad = num_batches * batch_size - n
  images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  labels = np.concatenate([labels, np.zeros((pad,), labels.dtype)]).astype(np.int32)
  replicated = sharding.replicated(mesh)
  return DeviceSplit(sharding.put(images, replicated), sharding.put(labels, replicated), n,
                     batch_size)


def make_batch_evaluator(model: ModelFn, spec: PGDSpec, batch_size: int, mesh):
  """jitted (params, batch_stats, images, labels, num_examples, batch_index, key) ->
  (clean_correct, pgd_correct, valid, clean_prediction), each (batch_size,): three bool,
  the last int32 (the argmax class on the clean input). With several processes they are
  replicated, so that every process reads them whole (a batch-sharded result is not
  readable by any one process); one process leaves their placement to XLA, as it always has."""
  data = sharding.batch_sharded(mesh)

  def evaluate_batch(params, batch_stats, images, labels, num_examples, batch_index, key):
    start = batch_index * batch_size
    x = jax.lax.dynamic_slice_in_dim(images, start, batch_size).astype(jnp.float32) / 255.0
    y = jax.lax.dynamic_slice_in_dim(labels, start, batch_size)
    x = jax.lax.with_sharding_constraint(x, data)
    valid = (start + jnp.arange(batch_size)) < num_examples

    def logits_fn(inputs):
      return model.logits(params, batch_stats, inputs, spec.bn_mode)

    clean_prediction = jnp.argmax(logits_fn(x), axis=-1).astype(jnp.int32)
    clean_correct = clean_prediction == y
    objective = pgd_lib.from_logits_fn(logits_fn, losses.cross_entropy, y)
    result = pgd_lib.pgd(objective, x, y, jax.random.fold_in(key, batch_index),
                         Budget(spec.eps, spec.step_size, spec.num_steps),
                         max_steps=spec.num_steps, init="uniform", norm="linf")
    # A point that is wrong on clean input is never counted as robust.
    return clean_correct, clean_correct & result.correct, valid, clean_prediction

  if jax.process_count() == 1:
    return xla_cpu.jit(evaluate_batch)
  return xla_cpu.jit(evaluate_batch, out_shardings=sharding.replicated(mesh))


def evaluate_split(evaluator, params: Any, batch_stats: Any, split: DeviceSplit,
                   key: jax.Array) -> dict[str, Any]:
  """Per-example correctness over a split; returns fractions, the boolean arrays, the clean
  predictions, `top_prediction` (the most predicted class) and `top_prediction_share`: the
  fraction of examples assigned to it (1.0 = the model predicts one class for everything)."""
  outputs = [evaluator(params, batch_stats, split.images, split.labels, split.num_examples, i, key)
             for i in range(split.num_batches)]
  clean, robust, valid, predictions = (np.concatenate(parts)
                                       for parts in zip(*jax.device_get(outputs)))
  clean, robust, predictions = clean[valid], robust[valid], predictions[valid]
  counts = np.bincount(predictions) if len(predictions) else np.zeros(1, np.int64)
  return {"clean_acc": float(clean.mean()), "pgd_acc": float(robust.mean()),
          "clean_correct": clean, "pgd_correct": robust, "clean_predictions": predictions,
          "top_prediction": int(counts.argmax()),
          "top_prediction_share": float(counts.max() / max(len(predictions), 1)),
          "num_examples": int(valid.sum())}
