"""`jax.jit` with the compiler settings jaxat uses on XLA:CPU: convolutions run by Eigen.

Why: jax 0.10's XLA:CPU hands convolutions to YNNPACK by default, which on the 2-core x86
development machine computed convolution weight gradients 3-4x slower than XLA's other
convolution library (Eigen; a 64->64 3x3 layer at batch 32 on 32x32 inputs: 69 against
17 ms) and ran inference-mode forward passes on one core. With convolutions routed to
Eigen and YNNPACK kept for matrix products and reductions (the option below), a standard
training step of the small CNN at batch 64 went from 0.065 to 0.041 s and a PGD-AT step
from 0.350 to 0.275 s (`benchmarks/throughput.py`;
docs/performance.md#which-library-runs-cpu-convolutions has every measurement). Switching
YNNPACK off altogether was slower for PGD-AT (0.478 s): its reductions are the fast ones.

`jit` is `jax.jit` plus, on the CPU backend only, the compiler option
`xla_cpu_experimental_ynn_fusion_type = LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,
LIBRARY_FUSION_TYPE_REDUCE`: jax 0.10.2's default list (`INDIVIDUAL_DOT`,
`INDIVIDUAL_CONVOLUTION`, `REDUCE`) without `INDIVIDUAL_CONVOLUTION`, the same setting as
`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`. Every compiled function of the package (training
step, evaluators, attack stages) goes through it. Results are the same computation in a
different summation order (float32 round-off).

Left alone: GPU and TPU (the option is XLA:CPU's); a process whose `XLA_FLAGS` already sets
`--xla_cpu_experimental_ynn_fusion_type` (the user's choice stands: e.g.
`--xla_cpu_experimental_ynn_fusion_type=+individual_convolution` restores XLA's default);
and a jax or jaxlib that does not accept the option (checked once by compiling a one-line
function), which then compiles with its own defaults.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax
import numpy as np

YNN_FUSION_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"


def user_sets_fusion_flag(xla_flags: str) -> bool:
  """Whether an `XLA_FLAGS` string already chooses the YNNPACK fusion types."""
  return any(flag.lstrip("-").split("=", 1)[0] == YNN_FUSION_OPTION
             for flag in xla_flags.split())


@functools.lru_cache(maxsize=None)
def compiler_options(backend: str) -> dict[str, str] | None:
  """The compiler options `jit` adds on `backend` (None: XLA's defaults). Decided once per
  backend and process: reads `XLA_FLAGS` and compiles a one-line probe."""
  if backend != "cpu" or user_sets_fusion_flag(os.environ.get("XLA_FLAGS", "")):
    return None
  options = {YNN_FUSION_OPTION: YNN_WITHOUT_CONVOLUTIONS}
  try:
    jax.jit(lambda x: x + 1, compiler_options=options).lower(
        np.zeros((1,), np.float32)).compile()
  except (TypeError, ValueError, RuntimeError):
    # An older jax without jit(compiler_options=...) raises TypeError; a jaxlib whose
    # XLA lacks the option or the enum value raises JaxRuntimeError (a RuntimeError).
    return None
  return options


NESTED_JIT_MESSAGE = "can only be passed to top-level `jax.jit`"


class CpuJitted:
  """A function compiled by `jit`: the compiler options apply where it is compiled as a
  program of its own, and are left out where it is traced inside another compiled
  function (JAX accepts `compiler_options` on top-level jits only; the enclosing program,
  compiled by its own `jit`, carries them). Attributes such as `lower` are those of the
  top-level `jax.jit` object."""

  def __init__(self, fun: Callable, options: dict[str, str], jit_kwargs: dict[str, Any]):
    own_options = jit_kwargs.pop("compiler_options", None) or {}
    self._top_level = jax.jit(fun, **jit_kwargs, compiler_options={**options, **own_options})
    self._nested = jax.jit(fun, **jit_kwargs)
    functools.update_wrapper(self, fun)

  def __call__(self, *args, **kwargs):
    try:
      return self._top_level(*args, **kwargs)
    except ValueError as error:
      # Raised while staging into an outer trace, before anything is compiled or run.
      if NESTED_JIT_MESSAGE not in str(error):
        raise
      return self._nested(*args, **kwargs)

  def __getattr__(self, name: str):
    return getattr(self._top_level, name)


def jit(fun: Callable, **jit_kwargs: Any):
  """`jax.jit(fun, **jit_kwargs)` with `compiler_options(jax.default_backend())` merged into
  its compiler options (the caller's own entries win). Nesting is allowed: see `CpuJitted`."""
  options = compiler_options(jax.default_backend())
  if not options:
    return jax.jit(fun, **jit_kwargs)
  return CpuJitted(fun, options, dict(jit_kwargs))
