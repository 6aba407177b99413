"""`lax.conv_general_dilated` with an input gradient that stays fast inside XLA loops.

Why: every attack differentiates the model with respect to its input many times inside a
`while` loop (PGD's `fori_loop`, APGD, FAB). On XLA:CPU (jax 0.10) the input gradient of
a convolution inside a loop body is lowered with the kernel in a transposed (`01oi`)
layout that misses the fast convolution path: 100 PGD steps of a small CNN on 250 CIFAR-
sized images take 13.8 s in a `fori_loop` against 8.7 s as 100 jitted calls from Python
(`python benchmarks/conv_input_grad.py`; a conv-only loop was 7x slower). Outside loops
XLA materialises the transposed kernel with a copy and uses the fast path.

The fix is to make that copy ourselves: the custom VJP below transposes the kernel to
HWOI once (behind an optimisation barrier, so XLA cannot fold the transpose back into the
convolution) and differentiates the convolution written in HWOI dimension numbers, whose
transposed convolution then reads the kernel in the fast layout. The values are those of
`lax.conv_general_dilated`'s own VJP (same arithmetic, up to float summation order); the
kernel gradient is unchanged. With it the loop above takes 6.9 s (2.0x faster).

A strided convolution's transposed convolution also dilates the cotangent by the stride,
so three of every four of its multiplications (stride 2) are by zero. Where that is the
slower route on XLA:CPU (`subpixel_pays`: stride > 1, inputs of at least 32×32 pixels,
batches of at least 128), ∂x is computed instead as one stride-1 convolution over the
stride's phases (`subpixel_input_gradient`, docs/performance.md#strided-input-gradients):
the loop above then takes 4.6 s instead of 6.4 s (measured the same day).

Reverse-over-reverse (gradient of an input gradient, as GradAlign needs) works;
forward-mode (`jax.jvp`) of a custom VJP does not, so code that needs forward mode must use
`lax.conv_general_dilated` directly.

Only the plain NHWC/HWIO convolution without feature or batch groups is specialised, and
only on the CPU backend (the layout problem is XLA:CPU's); any other call, and every call on
GPU or TPU, is passed to `lax.conv_general_dilated` unchanged, so accelerators keep XLA's
native convolution and its own gradient.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

_NHWC_HWIO = ("NHWC", "HWIO", "NHWC")
_NHWC_HWOI = ("NHWC", "HWOI", "NHWC")


def _hashable(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return tuple(_hashable(v) for v in value)
  return value


@functools.lru_cache(maxsize=None)
def _fast_conv(window_strides, padding, lhs_dilation, rhs_dilation, precision):
  """A custom-VJP NHWC/HWIO convolution for one static configuration."""
  settings = dict(window_strides=window_strides, padding=padding, lhs_dilation=lhs_dilation,
                  rhs_dilation=rhs_dilation, precision=precision)

  def conv_hwio(x, kernel):
    return lax.conv_general_dilated(x, kernel, dimension_numbers=_NHWC_HWIO, **settings)

  @jax.custom_vjp
  def conv(x, kernel):
    return conv_hwio(x, kernel)

  def forward(x, kernel):
    return conv_hwio(x, kernel), (x, kernel)

  def backward(residuals, cotangent):
    x, kernel = residuals
    if (trivial_dilation(lhs_dilation) and trivial_dilation(rhs_dilation)
        and subpixel_pays(x.shape, kernel.shape, window_strides)):
      grad_x = subpixel_input_gradient(cotangent, kernel, x.shape, window_strides, padding,
                                       precision)
    else:
      grad_x = transposed_input_gradient(cotangent, kernel, x, **settings)
    _, kernel_vjp = jax.vjp(lambda weights: conv_hwio(x, weights), kernel)
    return grad_x, kernel_vjp(cotangent)[0]

  conv.defvjp(forward, backward)
  return conv


def transposed_input_gradient(cotangent, kernel, inputs, **settings):
  """∂x of an NHWC/HWIO convolution as `lax.conv_general_dilated`'s own VJP computes it (a
  transposed convolution), but reading a physical HWOI copy of the kernel (a few KB): the
  optimisation barrier keeps XLA from folding the transpose back into the convolution's
  dimension numbers (the slow layout inside loops). `inputs`: the forward's input (only its
  shape and dtype matter, the map is linear); `settings`: the forward's keyword arguments
  (window_strides, padding, lhs_dilation, rhs_dilation, precision)."""
  kernel_oi = lax.optimization_barrier(jnp.transpose(kernel, (0, 1, 3, 2)))
  _, input_vjp = jax.vjp(lambda z: lax.conv_general_dilated(
      z, kernel_oi, dimension_numbers=_NHWC_HWOI, **settings), inputs)
  return input_vjp(cotangent)[0]


def trivial_dilation(value) -> bool:
  """Whether a dilation argument (None or per-dimension factors) dilates nothing."""
  return value is None or all(v == 1 for v in value)


class _PhaseTaps(NamedTuple):
  """One spatial dimension of a strided convolution's input gradient, split by phase.

  Input row y = s*q + r (phase r < s) receives g[q + d] * w[k] for every tap k with
  s*d = r + pad_low - k. offset = the smallest d over all phases; taps[r, j] = the tap k
  that multiplies g[q + offset + j] in phase r, or -1 where none does.
  """

  offset: int
  taps: np.ndarray  # (s, L) int


@functools.lru_cache(maxsize=None)
def _phase_taps(window: int, stride: int, pad_low: int) -> _PhaseTaps:
  shifts = [(r + pad_low - k) // stride for r in range(stride) for k in range(window)
            if (r + pad_low - k) % stride == 0]
  offset, length = min(shifts), max(shifts) - min(shifts) + 1
  taps = np.full((stride, length), -1, np.int32)
  for r in range(stride):
    for j in range(length):
      k = r + pad_low - stride * (offset + j)
      if 0 <= k < window:
        taps[r, j] = k
  return _PhaseTaps(offset, taps)


SUBPIXEL_MIN_BATCH = 128
SUBPIXEL_MIN_AREA = 32 * 32


def subpixel_pays(input_shape, kernel_shape, window_strides) -> bool:
  """Whether `subpixel_input_gradient` is the faster ∂x on XLA:CPU for this convolution:
  strided, a window wider than the stride, an input of at least 32×32 pixels and a batch of
  at least 128. Measured with jax 0.10.2 on a 2-core x86 VM
  (`python benchmarks/conv_input_grad.py --shapes`; the table is in
  docs/performance.md#when-it-is-used): in a loop at batch 250 it took 3.8 ms against
  26.3 ms for a 16→32 stride-2 layer on 32×32 inputs and 16.7 against 56.7 ms for 32→64,
  but was slower on 8×8 inputs (68 against 48 ms for 256→512) and at batch 64 for 32→64
  (8.4 against 6.6 ms). For stride 1 the transposed convolution of the HWOI kernel was as
  fast or faster."""
  batch, height, width = input_shape[:3]
  strided = any(s > 1 for s in window_strides)
  wide = any(k > s for k, s in zip(kernel_shape[:2], window_strides))
  return (strided and wide and height * width >= SUBPIXEL_MIN_AREA
          and batch >= SUBPIXEL_MIN_BATCH)


def subpixel_input_gradient(cotangent, kernel, input_shape, window_strides, padding,
                            precision=None):
  """∂x of an NHWC/HWIO convolution without dilation, as one stride-1 convolution.

  The transposed convolution that `lax.conv_general_dilated`'s VJP uses for ∂x dilates the
  cotangent by the stride (s_h*s_w - 1 of every s_h*s_w multiplications are by zero), a
  slow convolution on XLA:CPU for many shapes. Instead, every phase (r_h, r_w)
  of the input rows and columns (y = s*q + r) is a small stride-1 correlation of the
  cotangent with the taps of that phase (the sub-pixel decomposition); all phases are one
  VALID convolution with s_h*s_w*C_in output channels, interleaved back by a depth-to-space
  reshape. For stride 1 this is the cotangent convolved with the flipped kernel.

  Shapes: cotangent (N, OH, OW, C_out), kernel (KH, KW, C_in, C_out), input_shape
  (N, H, W, C_in); returns (N, H, W, C_in). Equal to the transposed convolution up to
  float32 summation order. `precision`: the forward convolution's, passed on.
  """
  batch, height, width, in_channels = input_shape
  window = kernel.shape[:2]
  strides = tuple(window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads((height, width), window, strides, padding)
  phases = [_phase_taps(k, s, int(p[0])) for k, s, p in zip(window, strides, padding)]
  rows = [-(-size // s) for size, s in zip((height, width), strides)]  # ceil(H / s)
  pads = [(-ph.offset, ph.offset + q + ph.taps.shape[1] - 1 - size_out)
          for ph, q, size_out in zip(phases, rows, cotangent.shape[1:3])]
  padded = lax.pad(cotangent, jnp.zeros((), cotangent.dtype),
                   ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
  taps_h, taps_w = phases[0].taps, phases[1].taps
  gathered = jnp.transpose(kernel, (0, 1, 3, 2))[
      np.maximum(taps_h, 0)[:, :, None, None], np.maximum(taps_w, 0)[None, None, :, :]]
  valid = ((taps_h >= 0)[:, :, None, None] & (taps_w >= 0)[None, None, :, :])
  gathered = jnp.where(valid[..., None, None], gathered, 0)  # (s_h, L_h, s_w, L_w, C_out, C_in)
  phase_kernel = jnp.transpose(gathered, (1, 3, 4, 0, 2, 5)).reshape(
      taps_h.shape[1], taps_w.shape[1], kernel.shape[3], -1)
  phase_kernel = lax.optimization_barrier(phase_kernel)
  out = lax.conv_general_dilated(padded, phase_kernel, (1, 1), "VALID",
                                 dimension_numbers=_NHWC_HWIO, precision=precision)
  out = out.reshape(batch, rows[0], rows[1], strides[0], strides[1], in_channels)
  out = jnp.transpose(out, (0, 1, 3, 2, 4, 5)).reshape(
      batch, rows[0] * strides[0], rows[1] * strides[1], in_channels)
  return out[:, :height, :width]


def _is_nhwc_hwio(dimension_numbers, ndim: int) -> bool:
  """Whether `dimension_numbers` (strings or the ConvDimensionNumbers Flax passes) mean
  NHWC inputs and outputs with an HWIO kernel."""
  if dimension_numbers is None or ndim != 4:
    return False
  shape = (1,) * ndim
  wanted = lax.conv_dimension_numbers(shape, shape, _NHWC_HWIO)
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return dimension_numbers == wanted
  return lax.conv_dimension_numbers(shape, shape, tuple(dimension_numbers)) == wanted


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """Drop-in for `lax.conv_general_dilated` (the signature Flax's `nn.Conv` calls);
  see the module docstring."""
  plain = (_is_nhwc_hwio(dimension_numbers, lhs.ndim) and feature_group_count == 1
           and batch_group_count == 1 and preferred_element_type is None
           and jax.default_backend() == "cpu")
  if not plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  conv = _fast_conv(_hashable(window_strides), _hashable(padding), _hashable(lhs_dilation),
                    _hashable(rhs_dilation), _hashable(precision))
  return conv(lhs, rhs)
