"""Pre-activation ResNet-18 in the two layouts used by the reference methods."""

from typing import Any

from flax import linen as nn
import jax.numpy as jnp

from jaxat.models.activations import activation_fn
from jaxat.models.initializers import (pytorch_default_bias_init,
                                       pytorch_default_kernel_init)
from jaxat.models.input_normalization import normalize_input
from jaxat.models.layers import batch_norm, conv1x1, conv3x3

# (output channels, stride of the first block) per stage; two blocks per stage.
_PREACT_RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
_BLOCKS_PER_STAGE = 2
SHORTCUT_INPUTS = ('preactivated', 'input')


class PreActBlock(nn.Module):
  """Pre-activation block (He et al. 2016, identity mappings).

  out = act(BN1(x)); shortcut = conv1x1(out) if stride != 1 or C_in != features else x;
  returns conv2(act(BN2(conv1(out)))) + shortcut. The projection has no BN.
  shortcut_input='input' projects x instead of out (RobustBench's PreActBlock with its
  default out_shortcut=False, e.g. Wong2020Fast; only for imported models).
  Input (B, H, W, C_in) -> output (B, ceil(H/stride), ceil(W/stride), features), in `dtype`.
  """
  features: int
  stride: int
  activation: str
  shortcut_input: str = 'preactivated'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    act = activation_fn(self.activation)
    dt = self.dtype
    out = act(batch_norm(train, 'bn1', dt)(x))
    if self.stride != 1 or x.shape[-1] != self.features:
      projected = out if self.shortcut_input == 'preactivated' else x
      shortcut = conv1x1(self.features, self.stride, 'shortcut_conv', dtype=dt)(projected)
    else:
      shortcut = x
    out = conv3x3(self.features, self.stride, 'conv1', dtype=dt)(out)
    out = conv3x3(self.features, 1, 'conv2', dtype=dt)(act(batch_norm(train, 'bn2', dt)(out)))
    return out + shortcut


class PreActResNet18(nn.Module):
  """PreAct ResNet-18: 3x3 stem conv 64 (no BN), four stages of PreActBlocks, GAP, dense.

  final_bn=True is the locuslab/AWP/N-FGSM layout (BN + act before pooling,
  11,172,170 parameters for 10 classes); final_bn=False is the kuangliu layout used
  by LAS-AT/FGSM-SDI/FGSM-PGI/GradAlign (pooling straight after the last block,
  11,171,146 parameters). Initialisation is PyTorch's default: conv/dense kernels and
  the dense bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BN gamma=1, beta=0.

  Attributes:
    num_classes: number of logits.
    final_bn: add the final BN + activation before pooling (submodule `bn_final`).
    activation: name from ACTIVATION_NAMES.
    mean, std: per-channel input statistics in [0, 1] pixel units.
    shortcut_input: what the projection shortcuts read, one of SHORTCUT_INPUTS:
      'preactivated' (jaxat, locuslab, kuangliu) or 'input' (models imported from
      RobustBench's PreActResNet with out_shortcut=False); same parameters either way.
    dtype: compute dtype, jnp.float32 or jnp.bfloat16 (docs/mixed_precision.md): the
      normalised input is cast to it and every conv/BN/dense computes in it; parameters
      and BatchNorm statistics stay float32; logits and features are returned in float32.
  """
  num_classes: int
  final_bn: bool = True
  activation: str = 'relu'
  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)
  shortcut_input: str = 'preactivated'
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
    if self.shortcut_input not in SHORTCUT_INPUTS:
      raise ValueError(f'shortcut_input={self.shortcut_input!r} is invalid; valid choices: '
                       f'{SHORTCUT_INPUTS}.')
    x = normalize_input(x, self.mean, self.std).astype(self.dtype)
    x = conv3x3(64, 1, 'conv1', dtype=self.dtype)(x)
    for stage, (features, first_stride) in enumerate(_PREACT_RESNET18_STAGES, start=1):
      for block in range(_BLOCKS_PER_STAGE):
        stride = first_stride if block == 0 else 1
        x = PreActBlock(features, stride, self.activation, self.shortcut_input,
                        dtype=self.dtype, name=f'layer{stage}_{block}')(x, train)
    if self.final_bn:
      x = activation_fn(self.activation)(batch_norm(train, 'bn_final', self.dtype)(x))
    features = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, kernel_init=pytorch_default_kernel_init,
                      bias_init=pytorch_default_bias_init(features.shape[-1]),
                      dtype=self.dtype, param_dtype=jnp.float32, name='dense')(features)
    return logits.astype(jnp.float32), features.astype(jnp.float32)
