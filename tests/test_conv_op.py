"""jaxat's convolution op: the same values and gradients as lax.conv_general_dilated
(first and second order), and other layouts passed through unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxat.models.conv_op import conv_general_dilated

DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("stride, padding, kernel", [
    (1, ((1, 1), (1, 1)), 3), (2, ((1, 1), (1, 1)), 3), (2, "VALID", 1), (1, "SAME", 3)])
def test_values_and_gradients_match_lax(stride, padding, kernel):
  kx, kk, kc = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (3, 8, 8, 4))
  w = jax.random.normal(kk, (kernel, kernel, 4, 5))
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
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_the_custom_input_gradient_is_used_for_nhwc_hwio():
  x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
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
