"""jaxat's convolution op: the same values and gradients as lax.conv_general_dilated
(first and second order), and other layouts passed through unchanged."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxat.models import conv_op
from jaxat.models.conv_op import (conv_general_dilated, explicit_padding, matmul_input_gradient,
                                  matmul_pays, subpixel_input_gradient, subpixel_pays)

DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("channels", [4, 16])   # 4: the matrix-product ∂x; 16: transposed
@pytest.mark.parametrize("stride, padding, kernel", [
    (1, ((1, 1), (1, 1)), 3), (2, ((1, 1), (1, 1)), 3), (2, "VALID", 1), (1, "SAME", 3)])
def test_values_and_gradients_match_lax(stride, padding, kernel, channels):
  kx, kk, kc = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (3, 8, 8, channels))
  w = jax.random.normal(kk, (kernel, kernel, channels, 5))
  cot = jax.random.normal(kc, (3, 8 // stride, 8 // stride, 5))

  def run(conv):
    def f(x, w):
      dims = lax.conv_dimension_numbers(x.shape, w.shape, DN)  # what Flax passes
      return conv(x, w, (stride, stride), padding, dimension_numbers=dims)
    out, vjp = jax.vjp(f, x, w)
    # Second order: the gradient of an input-gradient norm (GradAlign's shape).
    second = jax.grad(lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, w) * cot))(x) ** 2))(w)
    return out, *vjp(cot), second

  ours, reference = run(conv_general_dilated), run(lax.conv_general_dilated)
  for a, b in zip(ours, reference):
    # float32 sums in another order: round-off scales with the largest entry (the second
    # order's reach 1e3, and a small entry of the same sum can be off by 5e-5).
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-7 * max(1.0, float(jnp.max(jnp.abs(b)))))


def test_the_custom_input_gradient_is_used_for_nhwc_hwio():
  x, w = jnp.ones((1, 4, 4, 16)), jnp.ones((3, 3, 16, 2))  # stride 1, 16 channels: transposed
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda x: conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=DN).sum()))(x))
  assert "optimization_barrier" in jaxpr  # the physical HWOI copy of the kernel


def test_other_layouts_pass_through():
  x, w = jnp.ones((1, 2, 4, 4)), jnp.ones((2, 2, 3, 3))
  dn = ("NCHW", "OIHW", "NCHW")
  assert "optimization_barrier" not in str(jax.make_jaxpr(jax.grad(lambda x: conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=dn).sum()))(x))
  np.testing.assert_array_equal(
      conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn),
      lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn))


def test_subpixel_input_gradient_by_hand():
  # One row of width 4, a 1x3 kernel w = (1, 10, 100), stride 2, padding 1:
  # y0 = x0*10 + x1*100, y1 = x1*1 + x2*10 + x3*100. With cotangent g = (1, 2):
  # dx = (10, 100 + 2, 20, 200).
  kernel = jnp.array([1.0, 10.0, 100.0]).reshape(1, 3, 1, 1)
  cotangent = jnp.array([1.0, 2.0]).reshape(1, 1, 2, 1)
  grad = subpixel_input_gradient(cotangent, kernel, (1, 1, 4, 1), (1, 2), ((0, 0), (1, 1)))
  np.testing.assert_array_equal(np.asarray(grad).ravel(), [10.0, 102.0, 20.0, 200.0])


@pytest.mark.parametrize("size, window, stride, padding, channels", [
    ((8, 8), (3, 3), (2, 2), ((1, 1), (1, 1)), 3),
    ((7, 9), (3, 3), (2, 2), "SAME", 4),
    ((7, 9), (2, 3), (3, 2), "VALID", 2),
    ((8, 8), (1, 1), (2, 2), "VALID", 4),       # a ResNet shortcut: phases without taps
    ((9, 9), (5, 5), (2, 1), ((0, 2), (2, 0)), 3),
    ((6, 6), (3, 3), (1, 1), ((1, 1), (1, 1)), 5)])
def test_subpixel_input_gradient_matches_the_transposed_convolution(
    size, window, stride, padding, channels):
  kx, kk, kc = jax.random.split(jax.random.key(1), 3)
  x = jax.random.normal(kx, (2, *size, channels))
  w = jax.random.normal(kk, (*window, channels, 5))
  out, vjp = jax.vjp(lambda z: lax.conv_general_dilated(z, w, stride, padding,
                                                        dimension_numbers=DN), x)
  cot = jax.random.normal(kc, out.shape)
  ours = subpixel_input_gradient(cot, w, x.shape, stride, padding)
  np.testing.assert_allclose(ours, vjp(cot)[0], rtol=1e-5, atol=1e-5)


def test_subpixel_route_is_taken_where_it_pays():
  assert subpixel_pays((128, 32, 32, 16), (3, 3, 16, 32), (2, 2))
  assert not subpixel_pays((64, 32, 32, 16), (3, 3, 16, 32), (2, 2))    # batch below 128
  assert not subpixel_pays((250, 16, 16, 64), (3, 3, 64, 128), (2, 2))  # input below 32x32
  assert not subpixel_pays((250, 32, 32, 16), (3, 3, 16, 32), (1, 1))   # not strided
  assert not subpixel_pays((250, 32, 32, 16), (1, 1, 16, 32), (2, 2))   # 1x1 shortcut


def test_the_subpixel_route_matches_lax_through_the_op(monkeypatch):
  # A shape on the sub-pixel route (batch 128, 32x32, stride 2, the matrix product's
  # intermediate over its cap): values, both gradients and the second-order gradient
  # GradAlign takes agree with lax.conv_general_dilated.
  monkeypatch.setattr(conv_op, "MATMUL_MAX_BYTES", 0)
  kx, kk, kc = jax.random.split(jax.random.key(2), 3)
  x = jax.random.normal(kx, (128, 32, 32, 1))
  w = jax.random.normal(kk, (3, 3, 1, 2))
  cot = jax.random.normal(kc, (128, 16, 16, 2))

  def run(conv):
    def f(x, w):
      return conv(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DN)
    out, vjp = jax.vjp(f, x, w)
    second = jax.grad(lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, w) * cot))(x) ** 2))(w)
    return out, *vjp(cot), second

  jaxpr = str(jax.make_jaxpr(jax.grad(lambda x: jnp.sum(conv_general_dilated(
      x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DN) * cot)))(x))
  assert "lhs_dilation=(2, 2)" not in jaxpr  # no transposed (dilated) convolution
  for a, b in zip(run(conv_general_dilated), run(lax.conv_general_dilated)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_matmul_input_gradient_by_hand():
  # The row of test_subpixel_input_gradient_by_hand: w = (1, 10, 100), stride 2, padding 1,
  # g = (1, 2): dx = (10, 100 + 2, 20, 200).
  kernel = jnp.array([1.0, 10.0, 100.0]).reshape(1, 3, 1, 1)
  cotangent = jnp.array([1.0, 2.0]).reshape(1, 1, 2, 1)
  grad = matmul_input_gradient(cotangent, kernel, (1, 1, 4, 1), (1, 2), ((0, 0), (1, 1)))
  np.testing.assert_array_equal(np.asarray(grad).ravel(), [10.0, 102.0, 20.0, 200.0])
  # Two input channels, one output channel, 1x1 window, stride 1: dx[c] = g * w[c].
  kernel = jnp.array([3.0, -2.0]).reshape(1, 1, 2, 1)
  cotangent = jnp.array([1.0, 5.0]).reshape(1, 1, 2, 1)
  grad = matmul_input_gradient(cotangent, kernel, (1, 1, 2, 2), (1, 1), ((0, 0), (0, 0)))
  np.testing.assert_array_equal(np.asarray(grad), [[[[3.0, -2.0], [15.0, -10.0]]]])


@pytest.mark.parametrize("size, window, stride, padding, channels", [
    ((8, 8), (3, 3), (1, 1), ((1, 1), (1, 1)), 3),   # an image model's first layer
    ((8, 8), (3, 3), (2, 2), ((1, 1), (1, 1)), 3),
    ((7, 9), (3, 3), (2, 2), "SAME", 4),
    ((7, 9), (2, 3), (3, 2), "VALID", 2),
    ((8, 8), (1, 1), (2, 2), "VALID", 4),       # a ResNet shortcut: rows without taps
    ((9, 9), (5, 5), (2, 1), ((0, 2), (2, 0)), 3),
    ((10, 10), (3, 3), (2, 2), ((0, 0), (0, 0)), 3)])  # last input row never read
def test_matmul_input_gradient_matches_the_transposed_convolution(
    size, window, stride, padding, channels):
  kx, kk, kc = jax.random.split(jax.random.key(3), 3)
  x = jax.random.normal(kx, (2, *size, channels))
  w = jax.random.normal(kk, (*window, channels, 5))
  out, vjp = jax.vjp(lambda z: lax.conv_general_dilated(z, w, stride, padding,
                                                        dimension_numbers=DN), x)
  cot = jax.random.normal(kc, out.shape)
  pads = explicit_padding(padding, x.shape, w.shape, stride)
  ours = matmul_input_gradient(cot, w, x.shape, stride, pads)
  np.testing.assert_allclose(ours, vjp(cot)[0], rtol=1e-5, atol=1e-5)


def test_matmul_route_is_taken_where_it_pays():
  same = ((1, 1), (1, 1))
  assert matmul_pays((64, 32, 32, 3), (3, 3, 3, 32), (1, 1), same, jnp.float32)  # first layer
  assert matmul_pays((64, 32, 32, 32), (3, 3, 32, 64), (2, 2), same, jnp.float32)  # strided
  assert matmul_pays((32, 32, 32, 64), (1, 1, 64, 128), (2, 2), ((0, 0), (0, 0)), jnp.float32)
  assert not matmul_pays((64, 32, 32, 16), (3, 3, 16, 32), (1, 1), same, jnp.float32)
  assert not matmul_pays((64, 32, 32, 3), (3, 3, 3, 32), (1, 1), ((-1, 1), (1, 1)), jnp.float32)
  # The (N, OH, OW, KH*KW*C_in) intermediate is capped at 256 MiB: batch 250, 16x16
  # outputs, 9*160 columns of float32 is 368 MiB; in bfloat16 184 MiB.
  wide = ((250, 32, 32, 160), (3, 3, 160, 320), (2, 2), same)
  assert not matmul_pays(*wide, jnp.float32)
  assert matmul_pays(*wide, jnp.bfloat16)


@pytest.mark.parametrize("channels, stride", [(3, 1), (6, 2)])
def test_the_matmul_route_matches_lax_through_the_op(channels, stride):
  kx, kk, kc = jax.random.split(jax.random.key(4), 3)
  x = jax.random.normal(kx, (4, 12, 12, channels))
  w = jax.random.normal(kk, (3, 3, channels, 7))
  cot = jax.random.normal(kc, (4, 12 // stride, 12 // stride, 7))

  def run(conv):
    def f(x, w):
      return conv(x, w, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=DN)
    out, vjp = jax.vjp(f, x, w)
    second = jax.grad(lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, w) * cot))(x) ** 2))(w)
    return out, *vjp(cot), second

  jaxpr = str(jax.make_jaxpr(jax.grad(lambda x: jnp.sum(conv_general_dilated(
      x, w, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=DN) * cot)))(x))
  assert "optimization_barrier" not in jaxpr and "lhs_dilation=(2, 2)" not in jaxpr
  assert "dot_general" in jaxpr
  for a, b in zip(run(conv_general_dilated), run(lax.conv_general_dilated)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _kernel_gradient_by_hand(x, g, window, stride, pads):
  """dW[a, b, i, o] = Σ_{n, h, w} x_pad[n, s·h + a, s·w + b, i] · g[n, h, w, o], in float64."""
  x = np.pad(np.asarray(x, np.float64), ((0, 0), pads[0], pads[1], (0, 0)))
  g = np.asarray(g, np.float64)
  out = np.zeros((window, window, x.shape[3], g.shape[3]))
  for a in range(window):
    for b in range(window):
      for h in range(g.shape[1]):
        for w in range(g.shape[2]):
          out[a, b] += x[:, stride * h + a, stride * w + b, :].T @ g[:, h, w, :]
  return out


@pytest.mark.parametrize("stride", [1, 2])
def test_blocked_kernel_gradient_by_hand(stride):
  """11 examples in chunks of 4 (4 + 4 + 3): every chunk is counted once."""
  kx, kg = jax.random.split(jax.random.key(5))
  x = jax.random.normal(kx, (11, 7, 7, 3))
  pads = ((1, 1), (1, 1))
  out = (7 + 2 - 3) // stride + 1
  g = jax.random.normal(kg, (11, out, out, 5))

  def conv_hwio(inputs, weights):
    return lax.conv_general_dilated(inputs, weights, (stride, stride), pads, dimension_numbers=DN)

  ours = conv_op.blocked_kernel_gradient(conv_hwio, x, g, jnp.zeros((3, 3, 3, 5)), 4)
  np.testing.assert_allclose(ours, _kernel_gradient_by_hand(x, g, 3, stride, pads),
                             rtol=1e-5, atol=1e-4)


def test_kernel_gradient_block_where_it_pays(monkeypatch):
  monkeypatch.setattr(jax, "device_count", lambda: 1)
  assert conv_op.kernel_gradient_block((64, 32, 32, 32)) == 8   # small CNN's second layer
  assert conv_op.kernel_gradient_block((32, 16, 16, 128)) == 8  # PreAct ResNet-18, layer 3
  assert conv_op.kernel_gradient_block((32, 8, 8, 256)) is None  # maps under 16x16
  assert conv_op.kernel_gradient_block((8, 32, 32, 3)) is None   # one chunk anyway
  monkeypatch.setattr(jax, "device_count", lambda: 2)  # each device holds half the batch
  assert conv_op.kernel_gradient_block((64, 32, 32, 32)) is None
  monkeypatch.setattr(jax, "device_count", lambda: 1)
  monkeypatch.setattr(conv_op, "KERNEL_GRADIENT_BLOCK", 0)
  assert conv_op.kernel_gradient_block((64, 32, 32, 32)) is None


def test_the_blocked_kernel_gradient_matches_lax_through_the_op(monkeypatch):
  monkeypatch.setattr(jax, "device_count", lambda: 1)
  monkeypatch.setattr(conv_op, "KERNEL_GRADIENT_BLOCK", 4)
  monkeypatch.setattr(conv_op, "KERNEL_GRADIENT_MIN_AREA", 1)
  kx, kk, kc = jax.random.split(jax.random.key(6), 3)
  x = jax.random.normal(kx, (10, 9, 9, 6))
  w = jax.random.normal(kk, (3, 3, 6, 4))
  cot = jax.random.normal(kc, (10, 5, 5, 4))

  def loss(conv, w):
    return jnp.sum(conv(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DN) * cot)

  jaxpr = str(jax.make_jaxpr(jax.grad(lambda w: loss(conv_general_dilated, w)))(w))
  # One kernel-gradient convolution (output: the kernel's shape) per chunk of 4, 4 and 2.
  assert len(re.findall(r"f32\[3,3,6,4\] = conv_general_dilated", jaxpr)) == 3
  assert all(f"f32[{n},9,9,6] = slice" in jaxpr for n in (4, 2))
  np.testing.assert_allclose(jax.grad(lambda w: loss(conv_general_dilated, w))(w),
                             jax.grad(lambda w: loss(lax.conv_general_dilated, w))(w),
                             rtol=1e-4, atol=1e-4)

  # Second order through the chunks: with a loss quadratic in the output, the kernel
  # gradient's cotangent depends on w, so differentiating the kernel gradient again runs
  # through the chunked convolutions.
  def second(conv):
    def quadratic(v):
      return jnp.sum(conv(x, v, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DN) ** 2 * cot)
    return jax.grad(lambda w: jnp.sum(jax.grad(quadratic)(w) ** 2))(w)
  assert np.abs(np.asarray(second(lax.conv_general_dilated))).max() > 1.0  # not vacuous
  np.testing.assert_allclose(second(conv_general_dilated), second(lax.conv_general_dilated),
                             rtol=1e-4, atol=1e-3)


# ∂x routes: matrix product (3 channels; strided), transposed convolution (16, stride 1)
@pytest.mark.parametrize("in_channels, stride", [(3, 1), (6, 2), (16, 1)])
def test_gradients_of_gradients_match_lax_through_a_deep_net(in_channels, stride):
  """GradAlign's double back-propagation on two convolutions with tanh between: the
  parameters' gradient of a function of the input gradient, and the input's gradient of a
  function of the kernel gradient, reach every rule of the three bilinear maps (the input
  gradient's cotangent depends on the first kernel through the tanh)."""
  keys = jax.random.split(jax.random.key(7), 5)
  x = jax.random.normal(keys[0], (4, 8, 8, in_channels))
  w1 = jax.random.normal(keys[1], (3, 3, in_channels, 5)) * 0.3
  w2 = jax.random.normal(keys[2], (3, 3, 5, 4)) * 0.3
  weight = jax.random.normal(keys[3], x.shape)   # fixes the direction of the penalty
  out_weight = jax.random.normal(keys[4], (4, 8 // stride // stride, 8 // stride // stride, 4))

  def results(conv):
    def net(x, w1, w2):
      h = jnp.tanh(conv(x, w1, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=DN))
      return jnp.sum(jnp.tanh(conv(h, w2, (stride, stride), ((1, 1), (1, 1)),
                                   dimension_numbers=DN)) * out_weight)

    def input_penalty(w1, w2):           # R(∇_x net): GradAlign's regulariser's shape
      return jnp.sum(jnp.sin(jax.grad(net)(x, w1, w2)) * weight)

    def kernel_penalty(x):               # R(∇_w net): through the kernel gradient's rule
      return jnp.sum(jax.grad(net, argnums=1)(x, w1, w2) ** 2)

    return (*jax.grad(input_penalty, argnums=(0, 1))(w1, w2), jax.grad(kernel_penalty)(x))

  ours, reference = results(conv_general_dilated), results(lax.conv_general_dilated)
  for a, b in zip(ours, reference):
    assert float(jnp.max(jnp.abs(b))) > 1e-2   # not vacuous
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_second_order_runs_on_the_custom_rules():
  """The gradient of an input gradient differentiates none of the routes' arithmetic: the
  matrix product's einsum runs once (the first-order ∂x; differentiating it would add two
  transposed products) and the double backward is made of convolutions: the forward again
  (∂ of the cotangent) and a kernel gradient (∂ of the kernel), beside the forward and the
  tanh's backward that feed the first-order ∂x. Before the rules: 3 products, 2 convs."""
  x, w = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 4))   # 3 channels: the matmul ∂x

  def penalty(w):
    grad_x = jax.grad(lambda x: jnp.sum(jnp.tanh(conv_general_dilated(
        x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN))))(x)
    return jnp.sum(grad_x ** 2)

  lowered = jax.jit(jax.grad(penalty)).lower(w).as_text()
  assert lowered.count("dot_general") == 1
  # the forward, the cotangent rule (a forward) and two kernel gradients (the kernel rule,
  # and the forward's own, reached through the tanh)
  assert lowered.count("stablehlo.convolution") == 4
