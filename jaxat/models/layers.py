"""Conv and BatchNorm layers configured to match PyTorch's semantics exactly.

Convolutions use jaxat/models/conv_op.py (same values; an input gradient that stays fast
inside the attacks' XLA loops).

Must be called inside a Flax `@nn.compact` method (the layer is attached to the
module that is being set up).

`dtype` is the compute dtype (docs/mixed_precision.md): float32, or bfloat16 for mixed
precision. Parameters and BatchNorm running statistics are float32 whatever `dtype` is
(Flax's `param_dtype` default); BatchNorm's batch mean and variance are reduced in float32.
"""

from typing import Any

from flax import linen as nn
import jax.numpy as jnp

from jaxat.models.conv_op import conv_general_dilated
from jaxat.models.initializers import pytorch_default_kernel_init

# PyTorch BatchNorm2d(momentum=0.1) updates running = 0.9 * running + 0.1 * batch;
# Flax's `momentum` is the weight of the old value, hence 0.9.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# Explicit padding: 'SAME' pads (0, 1) for stride 2 on even sizes, PyTorch pads (1, 1).
_PAD_3X3 = ((1, 1), (1, 1))


def conv3x3(features: int, stride: int, name: str, *, use_bias: bool = False,
            kernel_init=pytorch_default_kernel_init, bias_init=None,
            dtype: Any = jnp.float32) -> nn.Conv:
  """3x3 conv with PyTorch padding=1 (output size ceil(H / stride)) on NHWC inputs.

  (B, H, W, C) -> (B, ceil(H/stride), ceil(W/stride), features) in `dtype`; the float32
  kernel (and bias) are cast to `dtype` for the product.
  """
  extra = {} if bias_init is None else {'bias_init': bias_init}
  return nn.Conv(features, (3, 3), strides=(stride, stride), padding=_PAD_3X3,
                 use_bias=use_bias, kernel_init=kernel_init, name=name,
                 conv_general_dilated=conv_general_dilated, dtype=dtype,
                 param_dtype=jnp.float32, **extra)


def conv1x1(features: int, stride: int, name: str, *,
            kernel_init=pytorch_default_kernel_init, dtype: Any = jnp.float32) -> nn.Conv:
  """Bias-free 1x1 conv (padding=0), the projection used by residual shortcuts; output in
  `dtype` with a float32 kernel."""
  return nn.Conv(features, (1, 1), strides=(stride, stride), padding='VALID',
                 use_bias=False, kernel_init=kernel_init, name=name,
                 conv_general_dilated=conv_general_dilated, dtype=dtype,
                 param_dtype=jnp.float32)


def batch_norm(train: bool, name: str, dtype: Any = jnp.float32) -> nn.BatchNorm:
  """BatchNorm2d over the channel axis with PyTorch momentum/epsilon, gamma=1, beta=0.

  Uses batch statistics and updates the 'batch_stats' collection when `train`,
  otherwise the running averages. Flax keeps the biased batch variance in the
  running average where PyTorch keeps the unbiased one (a factor n/(n-1), n = B*H*W).
  The statistics are computed and kept in float32; the normalised output is in `dtype`.
  """
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                      epsilon=BN_EPSILON, name=name, dtype=dtype, param_dtype=jnp.float32,
                      force_float32_reductions=True)
