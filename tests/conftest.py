"""Test-wide settings: CPU only, fast compilation, quiet libraries."""

import atexit
import logging as std_logging
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tiny models dominate compile time, not run time: skip most XLA optimisation passes. Set
# in the environment (read when jax is imported) so that every `python -m jaxat...`
# subprocess a test starts inherits it too.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# Many tests train the same tiny configuration in several processes (an interrupted run,
# its rerun, the uninterrupted reference): a compilation cache shared by this session's
# xdist workers and their subprocesses compiles each program once (about a quarter of the
# suite's time). It lives in a fresh directory per session, made by the process that
# imports this first (the controller; workers and subprocesses inherit the variable), so
# no run ever reads another session's executables.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="jaxat-tests-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# No huge-page restart for the suite's CLI subprocesses (jaxat/host_memory.py): on tiny
# models it gains nothing and costs up to half a second of system time per run (a second
# interpreter start, 2 MiB pages zeroed for small heaps; docs/performance.md#huge-pages).
# tests/test_host_memory.py exercises the restart itself.
_tunables = os.environ.get("GLIBC_TUNABLES", "")
if "glibc.malloc.hugetlb" not in _tunables:
  os.environ["GLIBC_TUNABLES"] = ":".join(filter(None, [_tunables, "glibc.malloc.hugetlb=0"]))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

std_logging.getLogger("absl").setLevel(std_logging.WARNING)
