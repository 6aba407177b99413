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
`lax.conv_general_dilated`'s own VJP (same arithmetic, up to float summation order). With
it the loop above takes 6.9 s (2.0x faster).

Two other routes avoid the transposed convolution where it is the slower one on XLA:CPU
(with convolutions run by Eigen, as `jaxat.xla_cpu` compiles them):
- `matmul_input_gradient` (`matmul_pays`: strided, or at most 4 input channels, with an
  intermediate of at most 256 MiB): one matrix product of the cotangent with the kernel and
  a col2im sum of shifted copies (docs/performance.md#input-gradients-as-a-matrix-product).
  With it a PGD-AT step of the small CNN at batch 64 took 0.20 s instead of 0.24 s (first
  layer) and a 32->64 stride-2 layer's ∂x 3.0 instead of 6.5 ms.
- `subpixel_input_gradient` (`subpixel_pays`: strided, inputs of at least 32×32 pixels,
  batches of at least 128), where the matrix product's intermediate would exceed its cap:
  one stride-1 convolution over the stride's phases, without the dilated cotangent's zeros
  (docs/performance.md#strided-input-gradients).

The kernel gradient is XLA's own, computed per chunk of 8 examples and summed where
`kernel_gradient_block` says so (one device, batches over 8, inputs of at least 16x16
pixels): XLA first copies the layer's input with the batch innermost, fused with the ops
that make that input, and that copy misses the cache over a whole batch of large maps
(`blocked_kernel_gradient`; docs/performance.md#kernel-gradients-in-blocks-of-the-batch: a
standard training step of the small CNN at batch 64 took 0.025 instead of 0.028 s).

Reverse-over-reverse (the gradient of an input gradient, as GradAlign needs) runs on the
same routes: the convolution, its input gradient and its kernel gradient are three bilinear
maps whose custom VJPs are written in terms of one another (`_fast_conv`), so a double
backward is made of these maps again instead of differentiating the routes' arithmetic
(docs/performance.md#gradients-of-gradients: a GradAlign step of the small CNN at batch 64
took 0.146 instead of 0.261 s). Forward mode (`jax.jvp`) of a custom VJP does not work, so
code that needs forward mode must use `lax.conv_general_dilated` directly.

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
  """A custom-VJP NHWC/HWIO convolution for one static configuration.

  Three bilinear maps, each with a custom VJP written in terms of the others, so that every
  order of reverse-mode differentiation runs on the fast routes
  (docs/performance.md#gradients-of-gradients):

    conv(x, w)         = x ⋆ w            VJP(ȳ) = (input_grad(ȳ, w), kernel_grad(x, ȳ))
    input_grad(g, w)   = ∂⟨g, x ⋆ w⟩/∂x    VJP(ū) = (ū ⋆ w, kernel_grad(ū, g))
    kernel_grad(x, g)  = ∂⟨g, x ⋆ w⟩/∂w    VJP(v̄) = (input_grad(g, v̄), x ⋆ v̄)

  (all from ⟨g, x ⋆ w⟩ being linear in each of g, x and w). Without them (`BILINEAR_RULES =
  False`) the gradient of an input gradient (GradAlign's double back-propagation)
  differentiates the routes' arithmetic itself: the matrix product's im2col copies and
  XLA's own transposed convolution of the forward.
  """
  settings = dict(window_strides=window_strides, padding=padding, lhs_dilation=lhs_dilation,
                  rhs_dilation=rhs_dilation, precision=precision)

  def conv_hwio(x, kernel):
    return lax.conv_general_dilated(x, kernel, dimension_numbers=_NHWC_HWIO, **settings)

  def input_gradient_value(cotangent, kernel, inputs: jax.ShapeDtypeStruct):
    shape = inputs.shape
    route = input_gradient_route(shape, kernel.shape, inputs.dtype, **settings)
    if route == "matmul":
      return matmul_input_gradient(
          cotangent, kernel, shape, window_strides,
          explicit_padding(padding, shape, kernel.shape, window_strides), precision)
    if route == "subpixel":
      return subpixel_input_gradient(cotangent, kernel, shape, window_strides, padding, precision)
    return transposed_input_gradient(cotangent, kernel, inputs, **settings)

  def kernel_gradient_value(x, cotangent, kernel: jax.ShapeDtypeStruct):
    block = kernel_gradient_block(x.shape) or x.shape[0]  # one chunk: XLA's own VJP
    return blocked_kernel_gradient(conv_hwio, x, cotangent, kernel, block)

  @jax.custom_vjp
  def conv(x, kernel):
    return conv_hwio(x, kernel)

  def conv_forward(x, kernel):
    # `conv`, not `conv_hwio`: under an outer differentiation (GradAlign's g2 pass) JAX
    # differentiates this function, and must meet the custom rules here too.
    return (conv if BILINEAR_RULES else conv_hwio)(x, kernel), (x, kernel)

  def conv_backward(residuals, cotangent):
    x, kernel = residuals
    if not BILINEAR_RULES:   # the routes' own arithmetic, differentiated by JAX
      return (input_gradient_value(cotangent, kernel, _spec(x)),
              kernel_gradient_value(x, cotangent, _spec(kernel)))
    return (input_grad(cotangent, kernel, _spec(x)), kernel_grad(x, cotangent, _spec(kernel)))

  conv.defvjp(conv_forward, conv_backward)

  # The outer cotangent's VJPs: ⟨ū, input_grad(g, w)⟩ = ⟨g, ū ⋆ w⟩ and
  # ⟨v̄, kernel_grad(x, g)⟩ = ⟨g, x ⋆ v̄⟩, each differentiated in its two arguments.
  input_grad = _bilinear_map(input_gradient_value, lambda cotangent, kernel, outer: (
      conv(outer, kernel), kernel_grad(outer, cotangent, _spec(kernel))))
  kernel_grad = _bilinear_map(kernel_gradient_value, lambda x, cotangent, outer: (
      input_grad(cotangent, outer, _spec(x)), conv(x, outer)))
  return conv


def _bilinear_map(value, outer_vjp):
  """`value(a, b, spec)` (bilinear in a and b; `spec` the static `jax.ShapeDtypeStruct` of
  the result) as a custom-VJP function whose
  VJP for an outer cotangent c̄ is `outer_vjp(a, b, c̄)` -> (ā, b̄)."""

  @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
  def apply(a, b, spec):
    return value(a, b, spec)

  def forward(a, b, spec):
    return apply(a, b, spec), (a, b)

  def backward(spec, residuals, outer):
    del spec
    return outer_vjp(*residuals, outer)

  apply.defvjp(forward, backward)
  return apply


# False: the double backward differentiates the routes' own arithmetic (as before the rules;
# benchmarks/conv_route_ab.py's `differentiated_routes` variant). Read when a step is traced.
BILINEAR_RULES = True


def _spec(array) -> jax.ShapeDtypeStruct:
  """Shape and dtype of an array (hashable): the static argument of the bilinear maps."""
  return jax.ShapeDtypeStruct(array.shape, array.dtype)


def input_gradient_route(input_shape, kernel_shape, dtype, window_strides, padding,
                         lhs_dilation=None, rhs_dilation=None, precision=None) -> str:
  """How the custom VJP computes ∂x of this NHWC/HWIO convolution on XLA:CPU: "matmul"
  (`matmul_pays`), else "subpixel" (`subpixel_pays`), else "transposed"; dilated
  convolutions always take "transposed". Arguments: the forward's shapes, dtype and
  keyword arguments."""
  del precision
  if not (trivial_dilation(lhs_dilation) and trivial_dilation(rhs_dilation)):
    return "transposed"
  pads = explicit_padding(padding, input_shape, kernel_shape, window_strides)
  if matmul_pays(input_shape, kernel_shape, window_strides, pads, dtype):
    return "matmul"
  if subpixel_pays(input_shape, kernel_shape, window_strides):
    return "subpixel"
  return "transposed"


def transposed_input_gradient(cotangent, kernel, inputs, **settings):
  """∂x of an NHWC/HWIO convolution as `lax.conv_general_dilated`'s own VJP computes it (a
  transposed convolution), but reading a physical HWOI copy of the kernel (a few KB): the
  optimisation barrier keeps XLA from folding the transpose back into the convolution's
  dimension numbers (the slow layout inside loops). `inputs`: the forward's input, or a
  `jax.ShapeDtypeStruct` of it (only its shape and dtype matter, the map is linear);
  `settings`: the forward's keyword arguments (window_strides, padding, lhs_dilation,
  rhs_dilation, precision)."""
  kernel_oi = lax.optimization_barrier(jnp.transpose(kernel, (0, 1, 3, 2)))
  transpose = jax.linear_transpose(lambda z: lax.conv_general_dilated(
      z, kernel_oi, dimension_numbers=_NHWC_HWOI, **settings), _spec(inputs))
  return transpose(cotangent)[0]


def explicit_padding(padding, input_shape, kernel_shape, window_strides):
  """The forward's padding as ((low, high), (low, high)) rows and columns ('SAME'/'VALID'
  strings resolved as `lax.conv_general_dilated` resolves them)."""
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(tuple(input_shape[1:3]), tuple(kernel_shape[:2]),
                                     tuple(window_strides), padding))
  return tuple(tuple(int(v) for v in pair) for pair in padding)


MATMUL_MAX_STRIDE_1_CHANNELS = 4
MATMUL_MAX_BYTES = 256 * 2**20


def matmul_pays(input_shape, kernel_shape, window_strides, pads, dtype) -> bool:
  """Whether `matmul_input_gradient` is the faster ∂x on XLA:CPU (convolutions run by
  Eigen, jaxat.xla_cpu) for this convolution: strided, or at most 4 input channels (an
  image model's first layer); non-negative padding; and its (N, OH, OW, KH·KW·C_in)
  intermediate at most 256 MiB. Measured with jax 0.10.2 on a 2-core x86 VM
  (docs/performance.md#input-gradients-as-a-matrix-product): in a PGD-AT training step of
  the small CNN at batch 64, the first layer's (3 channels, stride 1) matrix product made
  the step 0.20 s against 0.24 s with its transposed convolution; per strided layer, 10
  gradients in a `fori_loop`, 3.0 against 6.5 ms (32->64 at batch 64 on 32x32 inputs) and
  32 against 70 ms (64->128 at batch 128). At stride 1 with 16 or more input channels the
  transposed convolution was about twice as fast (2.8 against 6.4 ms for 16->32)."""
  batch, height, width, in_channels = input_shape
  strided = any(s > 1 for s in window_strides)
  if not (strided or in_channels <= MATMUL_MAX_STRIDE_1_CHANNELS):
    return False
  if any(v < 0 for pair in pads for v in pair):
    return False
  rows = batch * -(-height // window_strides[0]) * -(-width // window_strides[1])
  size = rows * kernel_shape[0] * kernel_shape[1] * in_channels * np.dtype(dtype).itemsize
  return size <= MATMUL_MAX_BYTES


def matmul_input_gradient(cotangent, kernel, input_shape, window_strides, pads,
                          precision=None):
  """∂x of an NHWC/HWIO convolution without dilation, as one matrix product and a col2im.

  Every output pixel (n, o_h, o_w) sends g[n, o_h, o_w, :] · w[a, b, :, :]ᵀ to padded input
  pixel (s_h·o_h + a, s_w·o_w + b), so ∂x_pad = Σ_{a,b} place_{a,b}(P[..., a, b, :]) with
  P = g · W_matᵀ, P of shape (N, OH, OW, KH, KW, C_in): a matrix product over C_out, then
  KH·KW shifted (for stride > 1: interior-padded) copies of P's slices summed, and the
  padding cropped off. No zeros of a dilated cotangent are multiplied and the product's
  output is wide even where C_in is 3, the two things XLA:CPU's transposed convolution
  does slowly.

  Shapes: cotangent (N, OH, OW, C_out), kernel (KH, KW, C_in, C_out), input_shape
  (N, H, W, C_in), pads ((low, high), (low, high)) non-negative (`explicit_padding`);
  returns (N, H, W, C_in). Equal to the transposed convolution up to float32 summation
  order. `precision`: the forward convolution's, passed on.
  """
  batch, height, width, in_channels = input_shape
  window_h, window_w = kernel.shape[:2]
  stride_h, stride_w = window_strides
  (low_h, high_h), (low_w, high_w) = pads
  padded_h, padded_w = height + low_h + high_h, width + low_w + high_w
  out_h, out_w = cotangent.shape[1:3]
  products = jnp.einsum("nhwo,abio->nhwabi", cotangent, kernel, precision=precision)
  zero = jnp.zeros((), products.dtype)
  total = None
  for a in range(window_h):
    for b in range(window_w):
      placed = lax.pad(products[:, :, :, a, b, :], zero, (
          (0, 0, 0),
          (a, padded_h - (a + stride_h * (out_h - 1) + 1), stride_h - 1),
          (b, padded_w - (b + stride_w * (out_w - 1) + 1), stride_w - 1),
          (0, 0, 0)))
      total = placed if total is None else total + placed
  return total[:, low_h:low_h + height, low_w:low_w + width].astype(cotangent.dtype)


KERNEL_GRADIENT_BLOCK = 8
KERNEL_GRADIENT_MIN_AREA = 16 * 16


def kernel_gradient_block(input_shape) -> int | None:
  """Examples per kernel-gradient convolution on XLA:CPU (`blocked_kernel_gradient`), or None
  for XLA's single convolution over the batch: `KERNEL_GRADIENT_BLOCK` (8) for batches larger
  than that on inputs of at least 16×16 pixels, in a process with one device. With several
  (simulated CPU devices, or CPU hosts), each device holds a share of the batch and its
  copy is smaller already; chunks there cost more than they saved (a standard step of the
  small CNN on 2 devices: 0.0375 s with chunks of 8, 0.0292 s without; chunks that gave
  every device an equal share of each, 0.0335 against 0.0314 s). Measured with jax 0.10.2
  on a 2-core x86 VM (docs/performance.md#kernel-gradients-in-blocks-of-the-batch)."""
  batch, height, width = input_shape[:3]
  if not KERNEL_GRADIENT_BLOCK or batch <= KERNEL_GRADIENT_BLOCK or jax.device_count() > 1:
    return None
  return KERNEL_GRADIENT_BLOCK if height * width >= KERNEL_GRADIENT_MIN_AREA else None


def blocked_kernel_gradient(conv_hwio, inputs, cotangent, kernel, block: int):
  """∂w of `conv_hwio(inputs, w)` at `kernel` for the cotangent, as the sum over chunks of
  `block` examples of each chunk's own kernel gradient: Σ_n is split into Σ_chunks Σ_{n in
  chunk}, the same products summed in another order (float32 round-off).

  Why: XLA computes a kernel gradient as one convolution whose contraction runs over the
  batch, so it first copies the layer's input (N, H, W, C) into (C, H, W, N), with the
  batch innermost, usually fused with the elementwise ops that produce that input
  (BatchNorm, ReLU). XLA:CPU writes that copy element by element, and for each channel it
  reads N·H·W values that are H·W·C apart: with a whole batch of 32×32 maps that is more
  than the cache holds, so nearly every read misses. A chunk of 8 examples keeps that
  working set in cache. A 32→64 stride-2 layer at batch 64 on 32×32 inputs (input made by a
  fused scale, shift and ReLU) took 5.0 ms instead of 8.7 ms.

  Shapes: inputs (N, H, W, C_in), cotangent (N, OH, OW, C_out), kernel (KH, KW, C_in,
  C_out), an array or a `jax.ShapeDtypeStruct` (only its shape and dtype matter); returns
  (KH, KW, C_in, C_out). The last chunk may be smaller than `block`.
  """
  kernel = _spec(kernel)
  total = None
  for start in range(0, inputs.shape[0], block):
    chunk = inputs[start:start + block]
    transpose = jax.linear_transpose(lambda weights, chunk=chunk: conv_hwio(chunk, weights),
                                     kernel)
    part = transpose(cotangent[start:start + block])[0]
    total = part if total is None else total + part
  return total


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
  at least 128. It is asked only where `matmul_pays` says no (the matrix product's
  intermediate over its cap). Measured with jax 0.10.2 on a 2-core x86 VM, with YNNPACK
  running the convolutions (before `jaxat.xla_cpu`)
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
