"""Test-wide settings: CPU only, fast compilation, quiet libraries."""

import logging as std_logging
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tiny models dominate compile time, not run time: skip most XLA optimisation passes. Set
# in the environment (read when jax is imported) so that every `python -m jaxat...`
# subprocess a test starts inherits it too.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

std_logging.getLogger("absl").setLevel(std_logging.WARNING)
