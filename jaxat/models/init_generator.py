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
import jax.numpy as jnp

from jaxat.models.initializers import pytorch_default_bias_init, pytorch_default_kernel_init
from jaxat.models.layers import BN_MOMENTUM, BN_EPSILON, conv3x3

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
    h = conv3x3(width, 1, "stem_conv")(h)
    h = nn.relu(_batch_norm(train, "stem_bn", affine=True, epsilon=STEM_BN_EPSILON)(h))

    block_bias = pytorch_default_bias_init(9 * width)
    r = _batch_norm(train, "block_bn1", affine=False)(h)
    r = nn.PReLU(negative_slope_init=PRELU_INIT, name="block_prelu1")(r)
    r = conv3x3(width, 1, "block_conv1", use_bias=True, kernel_init=xavier_uniform_gain_sqrt2,
                bias_init=block_bias)(r)
    r = _batch_norm(train, "block_bn2", affine=False)(r)
    r = nn.PReLU(negative_slope_init=PRELU_INIT, name="block_prelu2")(r)
    r = conv3x3(width, 1, "block_conv2", use_bias=True, kernel_init=xavier_uniform_gain_sqrt2,
                bias_init=block_bias)(r)
    h = h + r

    h = _batch_norm(train, "head_bn", affine=False)(h)
    h = conv3x3(channels, 1, "head_conv", use_bias=True, kernel_init=pytorch_default_kernel_init,
                bias_init=pytorch_default_bias_init(9 * width))(h)
    return self.eps * jnp.tanh(h)

