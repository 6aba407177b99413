"""Test-wide settings: CPU only, fast compilation, quiet libraries."""

import logging as std_logging
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The same for every `python -m jaxat...` subprocess a test starts (they inherit the
# environment): their compile time, not their few tiny steps, is what the slow tests wait on.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402

# Tiny models dominate compile time, not run time: skip most XLA optimisation passes.
jax.config.update("jax_disable_most_optimizations", True)
std_logging.getLogger("absl").setLevel(std_logging.WARNING)
