"""Weight initialisers reproducing the PyTorch reference implementations.

Flax's defaults (LeCun normal kernels, zero biases) differ from PyTorch's; the
reference adversarial-training results were obtained with PyTorch's, so the models use
these instead.
"""

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

# torch.nn.Conv2d / nn.Linear default: kaiming_uniform_(a=sqrt(5)), i.e.
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which has variance 1/(3 fan_in).
pytorch_default_kernel_init = nn.initializers.variance_scaling(
    1.0 / 3.0, 'fan_in', 'uniform')

# TRADES/MART WideResNet: conv weights ~ N(0, sqrt(2 / (k*k*out_channels))), untruncated.
he_normal_fan_out_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def pytorch_default_bias_init(fan_in: int) -> nn.initializers.Initializer:
  """PyTorch's default bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

  Args:
    fan_in: inputs feeding one output unit (in_channels * kh * kw for a conv,
      in_features for a dense layer).
  """
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init
