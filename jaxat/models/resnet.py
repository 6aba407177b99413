"""ResNet-18 for CIFAR-sized inputs in the kuangliu/pytorch-cifar layout."""

from typing import Any

from flax import linen as nn
import jax.numpy as jnp

from jaxat.models.activations import activation_fn
from jaxat.models.initializers import (pytorch_default_bias_init,
                                       pytorch_default_kernel_init)
from jaxat.models.input_normalization import normalize_input
from jaxat.models.layers import batch_norm, conv1x1, conv3x3

# (output channels, stride of the first block) per stage; two blocks per stage.
_RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
_BLOCKS_PER_STAGE = 2


class BasicBlock(nn.Module):
  """Post-activation residual block: act(BN(conv(act(BN(conv(x))))) + shortcut(x)).

  The shortcut is conv1x1 + BN when the stride or channel count changes, else x.
  Input (B, H, W, C_in) -> output (B, ceil(H/stride), ceil(W/stride), features), in `dtype`.
  """
  features: int
  stride: int
  activation: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    act = activation_fn(self.activation)
    dt = self.dtype
    out = act(batch_norm(train, 'bn1', dt)(
        conv3x3(self.features, self.stride, 'conv1', dtype=dt)(x)))
    out = batch_norm(train, 'bn2', dt)(conv3x3(self.features, 1, 'conv2', dtype=dt)(out))
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = batch_norm(train, 'shortcut_bn', dt)(
          conv1x1(self.features, self.stride, 'shortcut_conv', dtype=dt)(x))
    else:
      shortcut = x
    return act(out + shortcut)


class ResNet18(nn.Module):
  """kuangliu CIFAR ResNet-18: 3x3 stem (no max-pool), stages 64/128/256/512, GAP, dense.

  11,173,962 parameters for 10 classes (same as the PyTorch reference). Global average
  pooling equals the reference avg_pool2d(4) on 32x32 inputs and also accepts other
  sizes (8x8 digits, 64x64). Initialisation is PyTorch's default: conv/dense kernels
  and the dense bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BN gamma=1, beta=0.

  Attributes:
    num_classes: number of logits.
    activation: name from ACTIVATION_NAMES.
    mean, std: per-channel input statistics in [0, 1] pixel units.
    dtype: compute dtype, jnp.float32 or jnp.bfloat16 (docs/mixed_precision.md): the
      normalised input is cast to it and every conv/BN/dense computes in it; parameters
      and BatchNorm statistics stay float32; logits and features are returned in float32.
  """
  num_classes: int
  activation: str = 'relu'
  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Classifies NHWC images.

    Args:
      x: (B, H, W, C) float32 pixels in [0, 1].
      train: use and update batch statistics in 'batch_stats'.

    Returns:
      float32 logits (B, num_classes) and float32 features (B, 512), the pooled input of
      `dense`.
    """
    act = activation_fn(self.activation)
    x = normalize_input(x, self.mean, self.std).astype(self.dtype)
    x = act(batch_norm(train, 'bn1', self.dtype)(conv3x3(64, 1, 'conv1', dtype=self.dtype)(x)))
    for stage, (features, first_stride) in enumerate(_RESNET18_STAGES, start=1):
      for block in range(_BLOCKS_PER_STAGE):
        stride = first_stride if block == 0 else 1
        x = BasicBlock(features, stride, self.activation, dtype=self.dtype,
                       name=f'layer{stage}_{block}')(x, train)
    features = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, kernel_init=pytorch_default_kernel_init,
                      bias_init=pytorch_default_bias_init(features.shape[-1]),
                      dtype=self.dtype, param_dtype=jnp.float32, name='dense')(features)
    return logits.astype(jnp.float32), features.astype(jnp.float32)
