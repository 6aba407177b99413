"""Reverse attention (ANCRA, docs/ancra.md#reverse-attention): penultimate features re-weighted
by the classifier row of a gate label.

For features z (B,D) and the shared classifier (W (D,K), b (K,)) of the model's `dense` layer:
  auxiliary logits  a = z W + b                          (the pre-weighting head)
  gated features    z' = z ⊙ W[:, c]                     (ANCRA Eq. 5)
  final logits      f = z' W + b
c is the true label in training and argmax(a) at test time (the official code). Every
jaxat model family pools its last block into z and classifies it with `dense`, so the
wrapper applies to all of them; GAP commutes with a per-channel mask, so f equals the
official last RA block's logits exactly (the official code also gates the block before it,
docs/ancra.md#one-gated-block).

gate:
  'argmax'            c = argmax(a), no gradient through c (the authors' test-time model).
  'straight_through'  forward as 'argmax'; backward through the soft mask
                      sum_k softmax(a/tau)_k W[:, k] (an adaptive-evaluation surrogate).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxat.models.forward import ModelFn

GATES = ("argmax", "straight_through")


def classifier_of(params: Any) -> tuple[jax.Array, jax.Array]:
  """(kernel (D,K), bias (K,)) of the model's final `dense` layer."""
  return params["dense"]["kernel"], params["dense"]["bias"]


def gate_mask(kernel: jax.Array, gate_labels: jax.Array) -> jax.Array:
  """(B,D) rows W[:, c_i] of the classifier for (B,) int gate labels."""
  return kernel.T[gate_labels]


def soft_mask(kernel: jax.Array, aux_logits: jax.Array, temperature: float) -> jax.Array:
  """(B,D) sum_k softmax(a/tau)_k W[:, k]: the differentiable relaxation of the gate."""
  return jax.nn.softmax(aux_logits / temperature, axis=-1) @ kernel.T


@dataclasses.dataclass(frozen=True)
class GatedOutput:
  final_logits: jax.Array      # (B,K) logits of the gated features
  aux_logits: jax.Array        # (B,K) logits of the ungated features
  gated_features: jax.Array    # (B,D)
  batch_stats: Any


@dataclasses.dataclass(frozen=True)
class ReverseAttentionModelFn(ModelFn):
  """A ModelFn whose plain call is the test-time two-pass model (predicted-label gate).

  `gated(params, batch_stats, x, mode, gate_labels)` gates on the given (B,) labels (the
  training forward); with gate_labels=None it gates on the prediction of the auxiliary head.
  """

  gate: str = "argmax"
  temperature: float = 1.0

  def gated(self, params: Any, batch_stats: Any, x: jax.Array, mode: str,
            gate_labels: jax.Array | None = None) -> GatedOutput:
    _, features, batch_stats = ModelFn.__call__(self, params, batch_stats, x, mode)
    kernel, bias = classifier_of(params)
    aux_logits = features @ kernel + bias
    if gate_labels is not None:
      mask = gate_mask(kernel, gate_labels)
    else:
      hard = gate_mask(kernel, jnp.argmax(jax.lax.stop_gradient(aux_logits), axis=-1))
      if self.gate == "straight_through":
        soft = soft_mask(kernel, aux_logits, self.temperature)
        mask = soft + jax.lax.stop_gradient(hard - soft)
      else:
        mask = hard
    gated_features = features * mask
    return GatedOutput(gated_features @ kernel + bias, aux_logits, gated_features, batch_stats)

  def __call__(self, params: Any, batch_stats: Any, x: jax.Array, mode: str):
    out = self.gated(params, batch_stats, x, mode)
    return out.final_logits, out.gated_features, out.batch_stats

