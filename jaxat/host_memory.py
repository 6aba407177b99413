"""Host memory on the CPU backend: freed heap memory is kept for the next step (glibc).

Why: every call of a compiled XLA:CPU function allocates its temporary and output buffers
and frees them when it returns. With glibc's default settings the heap gives freed memory
back to the kernel (and large blocks are mmap-ed afresh), so the next call writes to new
pages and takes a page fault per 4 KiB page first touched (a training step of the small
CNN (32, 64) at batch 64 writes several 8 MiB activation buffers: thousands of pages).
With 256 MiB of "top pad" (glibc's `M_TOP_PAD`: memory a heap requests beyond each
allocation and keeps when it trims), steps reuse pages already mapped: a standard training
step of that CNN took 0.032 s instead of 0.044 s, and a PGD-AT step 0.203 s instead of 0.241 s
(`benchmarks/throughput.py`, docs/performance.md#host-memory). Results are unchanged: this
is where buffers live, not what is computed.

`retain_freed_memory()` sets it once per process, through `mallopt`, when `jaxat` is
imported. It has to come before jax creates its CPU client: glibc sizes the heap of each
of XLA's worker threads when that thread first allocates, and a setting made after that
(e.g. at the first compilation) left the step as slow as without it. The cost: freed memory, up to
`TOP_PAD_BYTES` per heap, stays with the process instead of going back to the system.

Left alone: a process whose environment sets `MALLOC_TOP_PAD_` (glibc reads it at start-up;
the user's value stands, e.g. `MALLOC_TOP_PAD_=131072` is glibc's default), one whose
`JAX_PLATFORMS` names no `cpu` (GPU and TPU runs keep device buffers in their own
allocators), and a C library without `mallopt` (musl, macOS, Windows).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

M_TOP_PAD = -2  # glibc's <malloc.h> parameter number
TOP_PAD_BYTES = 256 * 2**20
ENVIRONMENT_VARIABLE = "MALLOC_TOP_PAD_"
UNSET = "C library default"  # how benchmark records name a process where neither sets it


def _glibc():
  """The process's C library when it is glibc (has `mallopt` and `gnu_get_libc_version`),
  else None."""
  if not sys.platform.startswith("linux"):
    return None
  # The symbols already loaded into the process (its C library among them): no search for
  # the library file, which would start a subprocess at every `import jaxat`.
  libc = ctypes.CDLL(None)
  if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
    return None
  libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  libc.mallopt.restype = ctypes.c_int
  return libc


@functools.lru_cache(maxsize=None)
def retain_freed_memory() -> int | None:
  """Sets glibc's `M_TOP_PAD` to `TOP_PAD_BYTES`, once per process. Returns the bytes set,
  or None where left alone (the user's `MALLOC_TOP_PAD_`, no glibc, or `mallopt` refused)."""
  if ENVIRONMENT_VARIABLE in os.environ:
    return None
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms and "cpu" not in platforms.split(","):
    return None
  libc = _glibc()
  if libc is None:
    return None
  return TOP_PAD_BYTES if libc.mallopt(M_TOP_PAD, TOP_PAD_BYTES) == 1 else None
