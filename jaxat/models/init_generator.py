"""The adversarial-initialisation generator of FGSM-SDI (Jia et al., TIP, "Boosting Fast
Adversarial Training with Learnable Adversarial Initialization"): the official
`One_Layer_Attacker` of jiaxiaojunQAQ/FGSM-SDI (attacker.py), as a Flax module.

It maps a clean image and the sign of the classifier's input gradient at it to a
perturbation η ∈ (−ε, ε) that FGSM-SDI uses as the start of its FGSM step
(jaxat/methods/fgsm_sdi.py, docs/fast_adversarial_training.md#fgsm-sdi).

Layers (NHWC; C image channels, W = `width`, 64 in the official code):

  input   concat(x, sign g)                                  (B, H, W_img, 2C)
  stem    conv3x3(2C → W, no bias) → BN(eps 1e-3, affine) → ReLU
  block   h = BN(affine=False) → PReLU → conv3x3(W → W, bias)
              → BN(affine=False) → PReLU → conv3x3(W → W, bias);  out = h + input
  head    BN(affine=False) → conv3x3(W → C, bias)
  output  η = ε · tanh(head)                                 (B, H, W_img, C)

Every conv has stride 1 and padding 1, so the spatial size is kept. Initialisation as in
PyTorch: the two convolutions of the residual block Xavier-uniform with gain √2 (U(−b, b),
b = √2·√(6 / (fan_in + fan_out))) and PyTorch-default biases; the stem and head convs
PyTorch's default (U(±1/√fan_in) kernels and biases); each PReLU is one slope shared by all
channels, initialised to 0.25; BatchNorm with PyTorch's momentum 0.1 (Flax 0.9), eps 1e-5
unless stated, affine γ = 1, β = 0.

Parameters (hand count, C image channels, width W): stem 9·2C·W + BN 2W; block
2·(9·W² + W) + 2 PReLU slopes; head 9·W·C + C. For C = 3, W = 64: 3456 + 128 + 73858 + 1731
= 79,173. The official module has one more scalar (`scale_last`, initialised to 5) that its
forward never reads; it is omitted. Running statistics: 2W per BatchNorm, 4 BatchNorms.
"""

from __future__ import annotations

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from jaxat.models import conv_op
from jaxat.models.initializers import pytorch_default_bias_init, pytorch_default_kernel_init
from jaxat.models.layers import BN_MOMENTUM, BN_EPSILON

_NHWC_HWIO = ("NHWC", "HWIO", "NHWC")
_SAME_3X3 = ((1, 1), (1, 1))


def _conv(x, kernel):
  return lax.conv_general_dilated(x, kernel, (1, 1), _SAME_3X3, dimension_numbers=_NHWC_HWIO)


@jax.custom_vjp
def same_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1, padding-1 3x3 convolution (NHWC input, HWIO kernel) whose gradients are
  themselves plain NHWC/HWIO convolutions of explicitly transposed operands.

  Why: FGSM-SDI updates the generator inside a `lax.cond` (every k-th step). On XLA:CPU the
  kernel gradient of a convolution inside a conditional (or loop) body is lowered to a slow
  path: a 3x3 conv with 64 channels on a 64×8×8 batch took 1.1 s inside `lax.cond` against
  17 ms outside, which made the conditional generator update 25x slower than the same update
  computed unconditionally. Written as a convolution of transposed operands behind an
  optimisation barrier (the trick jaxat/models/conv_op.py applies to the input gradient),
  the kernel gradient takes 15 ms in either place. Values equal `lax.conv_general_dilated`'s
  VJP up to float summation order.
  """
  return _conv(x, kernel)


def _same_conv3x3_forward(x, kernel):
  return _conv(x, kernel), (x, kernel)


def _same_conv3x3_backward(residuals, cotangent):
  x, kernel = residuals
  # ∂x: the cotangent convolved with the spatially flipped kernel, in/out channels swapped.
  flipped = lax.optimization_barrier(jnp.transpose(jnp.flip(kernel, (0, 1)), (0, 1, 3, 2)))
  grad_x = _conv(cotangent, flipped)
  # ∂kernel[h, w, i, o] = Σ_{b,y,x} x_pad[b, y+h, x+w, i]·ct[b, y, x, o]: a convolution of
  # x as (I, H, W, B) with ct as an (H, W, B, O) kernel, giving (I, 3, 3, O).
  inputs = lax.optimization_barrier(jnp.transpose(x, (3, 1, 2, 0)))
  cotangents = lax.optimization_barrier(jnp.transpose(cotangent, (1, 2, 0, 3)))
  grad_kernel = jnp.transpose(_conv(inputs, cotangents), (1, 2, 0, 3))
  return grad_x, grad_kernel


same_conv3x3.defvjp(_same_conv3x3_forward, _same_conv3x3_backward)


def generator_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                                   rhs_dilation=None, dimension_numbers=None, **kwargs):
  """`same_conv3x3` for what Flax's `nn.Conv` passes for a stride-1 3x3 conv with padding
  1 (signature of `lax.conv_general_dilated`); anything else goes to
  jaxat/models/conv_op.py."""
  if (tuple(rhs.shape[:2]) == (3, 3) and tuple(window_strides) == (1, 1)
      and not isinstance(padding, str) and tuple(map(tuple, padding)) == _SAME_3X3
      and conv_op.trivial_dilation(lhs_dilation) and conv_op.trivial_dilation(rhs_dilation)
      and conv_op._is_nhwc_hwio(dimension_numbers, lhs.ndim)
      and kwargs.get("feature_group_count", 1) == 1 and kwargs.get("batch_group_count", 1) == 1
      and kwargs.get("preferred_element_type") is None):
    return same_conv3x3(lhs, rhs)
  return conv_op.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                      rhs_dilation, dimension_numbers, **kwargs)


def conv3x3(features: int, name: str, *, use_bias: bool, kernel_init, bias_init=None) -> nn.Conv:
  """A stride-1 3x3 conv with PyTorch padding (1, 1) on NHWC inputs, via `same_conv3x3`."""
  extra = {} if bias_init is None else {"bias_init": bias_init}
  return nn.Conv(features, (3, 3), strides=(1, 1), padding=_SAME_3X3, use_bias=use_bias,
                 kernel_init=kernel_init, name=name,
                 conv_general_dilated=generator_conv_general_dilated, **extra)


# nn.init.xavier_uniform_(w, gain=√2): variance gain² · 2 / (fan_in + fan_out).
xavier_uniform_gain_sqrt2 = nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")
STEM_BN_EPSILON = 1e-3   # BasicConv2d's BatchNorm2d(eps=0.001)
PRELU_INIT = 0.25        # torch.nn.PReLU() default


def _batch_norm(train: bool, name: str, *, affine: bool, epsilon: float = BN_EPSILON):
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=epsilon,
                      use_scale=affine, use_bias=affine, name=name)


class InitGenerator(nn.Module):
  """FGSM-SDI's `One_Layer_Attacker` (L∞ mode); see the module docstring for the layers.

  Attributes:
    eps: ε, the bound of the output, in [0, 1] pixel units (8/255 officially).
    width: channels of the hidden layers (64 officially; tests use a few).
  """
  eps: float
  width: int = 64

  @nn.compact
  def __call__(self, x: jnp.ndarray, grad_sign: jnp.ndarray, train: bool) -> jnp.ndarray:
    """The initial perturbation η.

    Args:
      x: (B, H, W, C) clean images, float32 pixels in [0, 1].
      grad_sign: (B, H, W, C) sign of the classifier's input gradient at x (values in
        {−1, 0, 1}).
      train: BatchNorm with batch statistics, updating 'batch_stats' (mutable); else the
        running averages.

    Returns:
      η: (B, H, W, C) float32 in (−eps, eps), pixel units.
    """
    channels = x.shape[-1]
    width = self.width
    h = jnp.concatenate([x, grad_sign.astype(x.dtype)], axis=-1)
    h = conv3x3(width, "stem_conv", use_bias=False, kernel_init=pytorch_default_kernel_init)(h)
    h = nn.relu(_batch_norm(train, "stem_bn", affine=True, epsilon=STEM_BN_EPSILON)(h))

    block_bias = pytorch_default_bias_init(9 * width)
    r = _batch_norm(train, "block_bn1", affine=False)(h)
    r = nn.PReLU(negative_slope_init=PRELU_INIT, name="block_prelu1")(r)
    r = conv3x3(width, "block_conv1", use_bias=True, kernel_init=xavier_uniform_gain_sqrt2,
                bias_init=block_bias)(r)
    r = _batch_norm(train, "block_bn2", affine=False)(r)
    r = nn.PReLU(negative_slope_init=PRELU_INIT, name="block_prelu2")(r)
    r = conv3x3(width, "block_conv2", use_bias=True, kernel_init=xavier_uniform_gain_sqrt2,
                bias_init=block_bias)(r)
    h = h + r

    h = _batch_norm(train, "head_bn", affine=False)(h)
    h = conv3x3(channels, "head_conv", use_bias=True, kernel_init=pytorch_default_kernel_init,
                bias_init=pytorch_default_bias_init(9 * width))(h)
    return self.eps * jnp.tanh(h)

