"""LAS-AT strategy network (docs/las_at.md#strategy-network): a backbone on the clean batch
and one linear categorical head per strategy choice (ε, iterations, step size, β)."""

from flax import linen as nn
import jax
import jax.numpy as jnp

from jaxat.models.resnet import ResNet18


class StrategyNet(nn.Module):
  """Per-example strategy logits.

  Attributes:
    head_sizes: number of options of each head, in head order.
    backbone: 'resnet18' (kuangliu ResNet-18 on un-normalised [0,1] inputs, 512-d pooled
      features, as in the official code) | 'small' (one 3x3 conv of 16 channels, ReLU and
      global average pooling: for digits/smoke runs and tests).
  """
  head_sizes: tuple[int, ...]
  backbone: str = 'resnet18'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> tuple[jnp.ndarray, ...]:
    """x: (B,H,W,C) clean pixels in [0,1]; returns one (B, head_sizes[h]) logits array per head."""
    if self.backbone == 'resnet18':
      # The 1-logit classifier layer of ResNet18 is unused; only its pooled features are.
      _, features = ResNet18(num_classes=1, name='backbone')(x, train)
    elif self.backbone == 'small':
      features = jnp.mean(nn.relu(nn.Conv(16, (3, 3), name='conv')(x)), axis=(1, 2))
    else:
      raise ValueError(f"backbone must be 'resnet18' or 'small', got {self.backbone!r}")
    return tuple(nn.Dense(size, name=f'head_{h}')(features)
                 for h, size in enumerate(self.head_sizes))


def sample_actions(key: jax.Array, head_logits: tuple[jnp.ndarray, ...]) -> tuple[jnp.ndarray, ...]:
  """One categorical sample per example and head (never argmax; docs/las_at.md#option-sets).

  Head h uses fold_in(key, h). Returns (B,) int32 option indices per head.
  """
  return tuple(jax.random.categorical(jax.random.fold_in(key, h), logits, axis=-1).astype(jnp.int32)
               for h, logits in enumerate(head_logits))
