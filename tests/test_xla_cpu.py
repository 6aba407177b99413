"""jaxat.xla_cpu: which library runs convolutions in jaxat's compiled functions on XLA:CPU."""

import ast
import pathlib
import re

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat import xla_cpu

_NHWC_HWIO = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(autouse=True)
def fresh_decision():
  xla_cpu.compiler_options.cache_clear()
  yield
  xla_cpu.compiler_options.cache_clear()


def _weight_gradient(x, kernel):
  return jax.grad(lambda k: jnp.sum(lax.conv_general_dilated(
      x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_NHWC_HWIO) ** 2))(kernel)


def _inputs():
  rng = np.random.default_rng(0)
  return (jnp.asarray(rng.standard_normal((8, 16, 16, 32)), jnp.float32),
          jnp.asarray(rng.standard_normal((3, 3, 32, 32)), jnp.float32))


def _entry_convolutions(jitted, *args) -> int:
  """Convolution instructions in the optimised HLO's ENTRY computation, i.e. the ones XLA
  runs itself (Eigen) rather than inside a library (YNNPACK) fusion."""
  text = jitted.lower(*args).compile().as_text()
  entry = text[text.index("ENTRY"):]
  entry = entry[:entry.index("\n}")]
  return len(re.findall(r"\bconvolution\(", entry))


@pytest.mark.parametrize("flags, expected", [
    ("", False),
    ("--xla_cpu_experimental_ynn_fusion_type=", True),
    ("--xla_force_host_platform_device_count=2 "
     "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution", True),
    ("xla_cpu_experimental_ynn_fusion_type=+individual_convolution", True),
    ("--xla_cpu_experimental_xnn_fusion_type=", False),
    ("--xla_cpu_experimental_ynn_fusion_type_extra=1", False),
])
def test_user_fusion_flag_is_recognised(flags, expected):
  assert xla_cpu.user_sets_fusion_flag(flags) is expected


def test_options_only_on_cpu_and_only_without_the_users_flag(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  assert xla_cpu.compiler_options("gpu") is None
  assert xla_cpu.compiler_options("tpu") is None
  assert xla_cpu.compiler_options("cpu") == {
      "xla_cpu_experimental_ynn_fusion_type":
          "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
  xla_cpu.compiler_options.cache_clear()
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
  assert xla_cpu.compiler_options("cpu") is None


@pytest.mark.parametrize("error", [TypeError("unexpected keyword 'compiler_options'"),
                                   jax.errors.JaxRuntimeError("not a valid enum value")])
def test_a_jax_that_refuses_the_option_compiles_with_its_defaults(monkeypatch, error):
  def refusing_jit(*args, **kwargs):
    if "compiler_options" in kwargs:
      raise error
    return jax.jit(*args, **kwargs)
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.setattr(xla_cpu, "jax", type("FakeJax", (), {"jit": staticmethod(refusing_jit)}))
  assert xla_cpu.compiler_options("cpu") is None


def test_jit_moves_convolutions_out_of_ynnpack_with_the_same_values(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  if jax.default_backend() != "cpu" or xla_cpu.compiler_options("cpu") is None:
    pytest.skip("needs XLA:CPU with the YNNPACK fusion option")
  args = _inputs()
  default, ours = jax.jit(_weight_gradient), xla_cpu.jit(_weight_gradient)
  if _entry_convolutions(default, *args) != 0:
    pytest.skip("this jaxlib does not hand convolutions to YNNPACK by default")
  # Forward and weight gradient: both convolutions now run outside library fusions.
  assert _entry_convolutions(ours, *args) == 2
  expected = np.asarray(default(*args))  # float32 round-off, relative to the largest entry
  np.testing.assert_allclose(ours(*args), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
  # The caller's own compiler options win over jaxat's.
  theirs = xla_cpu.jit(_weight_gradient, compiler_options={
      "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"})
  assert _entry_convolutions(theirs, *args) == 0


def _calls_jax_jit(node) -> bool:
  """`jax.jit` (called or as a decorator) or a bare `jit` / `pjit` name."""
  if isinstance(node, ast.Attribute):
    return node.attr in ("jit", "pjit") and isinstance(node.value, ast.Name) and (
        node.value.id == "jax")
  return isinstance(node, ast.Name) and node.id in ("jit", "pjit")


def test_every_compiled_function_of_the_package_goes_through_xla_cpu_jit():
  package = pathlib.Path(xla_cpu.__file__).parent
  offenders = []
  for path in package.rglob("*.py"):
    if path.name == "xla_cpu.py":
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      targets = []
      if isinstance(node, ast.Call):
        targets = [node.func] + list(node.args)  # jax.jit(f) and functools.partial(jax.jit, ...)
      elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
        targets = list(getattr(node, "decorator_list", []))
      offenders += [f"{path.relative_to(package)}:{t.lineno}" for t in targets
                    if _calls_jax_jit(t)]
  assert not offenders, offenders
  # The walk finds what it looks for: the helper itself calls jax.jit.
  helper = ast.parse(pathlib.Path(xla_cpu.__file__).read_text())
  assert any(isinstance(n, ast.Call) and _calls_jax_jit(n.func) for n in ast.walk(helper))


def test_a_jaxat_jit_traced_inside_another_jit_drops_the_options_and_keeps_its_value(
    monkeypatch):
  """JAX refuses compiler options on a nested jit; FGSM-SDI's generator init is one (it runs
  inside the jitted state initialiser)."""
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  if jax.default_backend() != "cpu" or xla_cpu.compiler_options("cpu") is None:
    pytest.skip("needs XLA:CPU with the YNNPACK fusion option")
  inner = xla_cpu.jit(lambda x: jnp.sin(x) * 3.0)
  constant_only = xla_cpu.jit(lambda: jnp.arange(3.0) + 1.0)  # no tracer among its arguments
  x = jnp.arange(4.0)
  np.testing.assert_allclose(jax.jit(lambda v: inner(v) + 1.0)(x), np.sin(np.arange(4.0)) * 3 + 1,
                             rtol=1e-6)
  np.testing.assert_allclose(xla_cpu.jit(lambda v: inner(v) * 2.0)(x), np.sin(np.arange(4.0)) * 6,
                             rtol=1e-6)
  np.testing.assert_array_equal(jax.jit(lambda: constant_only() * 2.0)(), [2.0, 4.0, 6.0])
  np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(inner(v)))(x), np.cos(np.arange(4.0)) * 3,
                             rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(inner)(x), np.sin(np.arange(4.0)) * 3, rtol=1e-6)
  # Called on its own it still compiles with the options: convolutions leave YNNPACK.
  conv = xla_cpu.jit(_weight_gradient)
  if _entry_convolutions(jax.jit(_weight_gradient), *_inputs()) == 0:
    assert _entry_convolutions(conv, *_inputs()) == 2
  # Errors other than the nesting refusal are not swallowed.
  with pytest.raises(ValueError, match="boom"):
    xla_cpu.jit(lambda v: (_ for _ in ()).throw(ValueError("boom")))(x)
