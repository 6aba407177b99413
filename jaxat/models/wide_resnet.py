"""Pre-activation Wide ResNet in the TRADES/MART layout (no dropout)."""

from typing import Any

from flax import linen as nn
import jax.numpy as jnp

from jaxat.models.activations import activation_fn
from jaxat.models.initializers import he_normal_fan_out_init, pytorch_default_kernel_init
from jaxat.models.input_normalization import normalize_input
from jaxat.models.layers import batch_norm, conv1x1, conv3x3

# Stride of the first block of each of the three groups.
_GROUP_STRIDES = (1, 2, 2)


def wide_resnet_blocks_per_group(depth: int) -> int:
  """Blocks per group n = (depth - 4) / 6; raises ValueError unless depth = 6n + 4, n >= 1."""
  if depth < 10 or (depth - 4) % 6 != 0:
    raise ValueError(
        f'Wide ResNet depth {depth} is invalid: depth must be 6n + 4 with n >= 1 '
        f'(e.g. 28, 34, 70).')
  return (depth - 4) // 6


class WideBasicBlock(nn.Module):
  """TRADES WRN block: BN -> act -> conv3x3(stride) -> BN -> act -> conv3x3, plus shortcut.

  When the shape changes, the pre-activated input act(BN(x)) feeds both the residual
  branch and the 1x1 projection shortcut; otherwise the shortcut is x itself.
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
    pre_activated = act(batch_norm(train, 'bn1', dt)(x))
    out = conv3x3(self.features, self.stride, 'conv1',
                  kernel_init=he_normal_fan_out_init, dtype=dt)(pre_activated)
    out = act(batch_norm(train, 'bn2', dt)(out))
    out = conv3x3(self.features, 1, 'conv2', kernel_init=he_normal_fan_out_init, dtype=dt)(out)
    # TRADES projects only when C_in != features; stride != 1 is included so that an
    # identity shortcut is never added to a spatially smaller residual (for every valid
    # WRN both conditions coincide).
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = conv1x1(self.features, self.stride, 'shortcut_conv',
                         kernel_init=he_normal_fan_out_init, dtype=dt)(pre_activated)
    else:
      shortcut = x
    return out + shortcut


class WideResNet(nn.Module):
  """WRN-depth-width: 3x3 stem conv 16, groups of widths 16k/32k/64k, BN-act, GAP, dense.

  Parameter counts for 10 classes: WRN-28-10 36,479,194; WRN-34-10 46,160,474 (as the
  TRADES reference without its unused `sub_block1`). Initialisation follows TRADES:
  conv kernels N(0, sqrt(2 / (k*k*out_channels))) (He normal, fan_out), BN gamma=1,
  beta=0, dense bias 0, dense kernel PyTorch default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

  Attributes:
    num_classes: number of logits.
    depth: 6n + 4 (n blocks per group), e.g. 28, 34, 70.
    width: widening factor k >= 1.
    activation: name from ACTIVATION_NAMES.
    mean, std: per-channel input statistics in [0, 1] pixel units.
    dtype: compute dtype, jnp.float32 or jnp.bfloat16 (docs/mixed_precision.md): the
      normalised input is cast to it and every conv/BN/dense computes in it; parameters
      and BatchNorm statistics stay float32; logits and features are returned in float32.
  """
  num_classes: int
  depth: int = 34
  width: int = 10
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
      float32 logits (B, num_classes) and float32 features (B, 64 * width), the pooled
      input of `dense`.
    """
    blocks_per_group = wide_resnet_blocks_per_group(self.depth)
    if self.width < 1:
      raise ValueError(f'Wide ResNet width {self.width} is invalid: must be >= 1.')
    x = normalize_input(x, self.mean, self.std).astype(self.dtype)
    x = conv3x3(16, 1, 'conv1', kernel_init=he_normal_fan_out_init, dtype=self.dtype)(x)
    group_widths = (16 * self.width, 32 * self.width, 64 * self.width)
    for group, (features, first_stride) in enumerate(
        zip(group_widths, _GROUP_STRIDES), start=1):
      for block in range(blocks_per_group):
        stride = first_stride if block == 0 else 1
        x = WideBasicBlock(features, stride, self.activation, dtype=self.dtype,
                           name=f'block{group}_{block}')(x, train)
    x = activation_fn(self.activation)(batch_norm(train, 'bn_final', self.dtype)(x))
    features = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, kernel_init=pytorch_default_kernel_init,
                      bias_init=nn.initializers.zeros, dtype=self.dtype,
                      param_dtype=jnp.float32, name='dense')(features)
    return logits.astype(jnp.float32), features.astype(jnp.float32)
