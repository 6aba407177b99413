"""Test-wide settings: CPU only, fast compilation, quiet libraries."""

import logging as std_logging
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Tiny models dominate compile time, not run time: skip most XLA optimisation passes.
jax.config.update("jax_disable_most_optimizations", True)
std_logging.getLogger("absl").setLevel(std_logging.WARNING)
