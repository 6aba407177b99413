"""Two-conv CNN for tests and digit-sized data; matches the AutoAttack golden model."""

from typing import Any

from flax import linen as nn
import jax.numpy as jnp

from jaxat.models.activations import activation_fn
from jaxat.models.initializers import (pytorch_default_bias_init,
                                       pytorch_default_kernel_init)
from jaxat.models.input_normalization import normalize_input
# Aliased: the module has a boolean field called batch_norm.
from jaxat.models.layers import batch_norm as batch_norm_layer, conv3x3


class SmallCNN(nn.Module):
  """conv3x3(stride 1) -> [BN] -> act -> conv3x3(stride 2) -> [BN] -> act -> flatten -> dense.

  Both convs carry a bias and use PyTorch padding (1, 1). Initialisation is PyTorch's
  default (kernels and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))).

  Attributes:
    num_classes: number of logits.
    channels: output channels of conv1 and conv2.
    batch_norm: insert BatchNorm after each conv (submodules `bn1`, `bn2`).
    activation: name from ACTIVATION_NAMES.
    mean, std: per-channel input statistics in [0, 1] pixel units; (0,..), (1,..) is
      the identity.
    dtype: compute dtype, jnp.float32 or jnp.bfloat16 (docs/mixed_precision.md): the
      normalised input is cast to it and every conv/BN/dense computes in it; parameters
      and BatchNorm statistics stay float32; logits and features are returned in float32.
  """
  num_classes: int
  channels: tuple[int, int] = (16, 32)
  batch_norm: bool = False
  activation: str = 'relu'
  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Classifies NHWC images.

    Args:
      x: (B, H, W, C) float32 pixels in [0, 1].
      train: use and update batch statistics (only matters with batch_norm).

    Returns:
      float32 logits (B, num_classes) and float32 features (B, ceil(H/2) * ceil(W/2) *
      channels[1]), the NHWC-order flattening of the last activation fed to `dense`.
    """
    act = activation_fn(self.activation)
    x = normalize_input(x, self.mean, self.std).astype(self.dtype)
    for index, (features, stride) in enumerate(zip(self.channels, (1, 2)), start=1):
      fan_in = x.shape[-1] * 3 * 3
      x = conv3x3(features, stride, f'conv{index}', use_bias=True,
                  bias_init=pytorch_default_bias_init(fan_in), dtype=self.dtype)(x)
      if self.batch_norm:
        x = batch_norm_layer(train, f'bn{index}', self.dtype)(x)
      x = act(x)
    features = x.reshape((x.shape[0], -1))
    logits = nn.Dense(self.num_classes, kernel_init=pytorch_default_kernel_init,
                      bias_init=pytorch_default_bias_init(features.shape[-1]),
                      dtype=self.dtype, param_dtype=jnp.float32, name='dense')(features)
    return logits.astype(jnp.float32), features.astype(jnp.float32)
