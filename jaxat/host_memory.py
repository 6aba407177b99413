"""Host memory on the CPU backend: freed heap memory is kept for the next step, and malloc
asks for huge pages (glibc).

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

**Huge pages.** The top pad keeps a heap's pages, but a block larger than what a worker
thread's heap can hold (64 MiB) is mmap-ed afresh at every call whatever the settings: the
temporary buffer of a step with two forward passes alive (FGSM-MEP: 89 MiB; GradAlign:
143 MiB on the small CNN at batch 64) took one page fault per 4 KiB page at every step,
about 22 800 and 36 500 of them (a lone first touch of a page: about 2.7 µs on the
development VM). With glibc's
`glibc.malloc.hugetlb=1` tunable (glibc >= 2.35) malloc asks the kernel for transparent huge
pages (`madvise(MADV_HUGEPAGE)`), so a step faults once per 2 MiB and its buffers need 512×
fewer TLB entries. Tunables are read only when a process starts, so `restart_with_huge_pages()`
replaces the process by itself (same interpreter, same arguments, `os.execve`) with
`GLIBC_TUNABLES` extended by `glibc.malloc.hugetlb=1`. jaxat's commands (`python -m
jaxat.<command>`, via `cli_args.run_entry_point`) and the timing scripts of `benchmarks/`
call it before anything is computed; a library user sets the variable before starting Python.
It applies only where it can help: the kernel's transparent-huge-page mode is `madvise` (with
`always` every process already gets them; with `never` none can), glibc >= 2.35, and a CPU
run. Left alone: a `GLIBC_TUNABLES` that already names `glibc.malloc.hugetlb` (the user's
choice stands: `=0` turns it off). Measurements: docs/performance.md#huge-pages.
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


def may_run_on_cpu(environ) -> bool:
  """Whether a process with environment `environ` can use jax's CPU backend: `JAX_PLATFORMS`
  unset or naming `cpu` (GPU and TPU runs keep device buffers in their own allocators)."""
  platforms = environ.get("JAX_PLATFORMS", "")
  return not platforms or "cpu" in platforms.split(",")


@functools.lru_cache(maxsize=None)
def retain_freed_memory() -> int | None:
  """Sets glibc's `M_TOP_PAD` to `TOP_PAD_BYTES`, once per process. Returns the bytes set,
  or None where left alone (the user's `MALLOC_TOP_PAD_`, no glibc, or `mallopt` refused)."""
  if ENVIRONMENT_VARIABLE in os.environ or not may_run_on_cpu(os.environ):
    return None
  libc = _glibc()
  if libc is None:
    return None
  return TOP_PAD_BYTES if libc.mallopt(M_TOP_PAD, TOP_PAD_BYTES) == 1 else None


TUNABLES_VARIABLE = "GLIBC_TUNABLES"
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb"
HUGE_PAGES_MIN_GLIBC = (2, 35)   # the first glibc with glibc.malloc.hugetlb
THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"
# Set by the restart: the GLIBC_TUNABLES value the process started with ('' = none).
BEFORE_RESTART_VARIABLE = "JAXAT_GLIBC_TUNABLES_BEFORE_RESTART"


def glibc_version() -> tuple[int, int] | None:
  """(major, minor) of the process's glibc, or None where it is not glibc."""
  libc = _glibc()
  if libc is None:
    return None
  libc.gnu_get_libc_version.restype = ctypes.c_char_p
  try:
    major, minor = libc.gnu_get_libc_version().decode().split(".")[:2]
    return int(major), int(minor)
  except ValueError:
    return None


def transparent_huge_page_mode(path: str = THP_MODE_FILE) -> str | None:
  """The kernel's transparent-huge-page mode, the bracketed word of `path` ('always',
  'madvise' or 'never'), or None where it cannot be read (not Linux, no THP support)."""
  try:
    with open(path) as f:
      words = f.read().split()
  except OSError:
    return None
  chosen = [w[1:-1] for w in words if w.startswith("[") and w.endswith("]")]
  return chosen[0] if chosen else None


def huge_page_tunables(environ, libc_version: tuple[int, int] | None,
                       thp_mode: str | None) -> str | None:
  """The `GLIBC_TUNABLES` value a process with environment `environ` should be restarted
  with to give malloc transparent huge pages, or None to leave it as it is (see the module
  docstring for when)."""
  if thp_mode != "madvise" or libc_version is None or libc_version < HUGE_PAGES_MIN_GLIBC:
    return None
  if BEFORE_RESTART_VARIABLE in environ:
    return None   # restarted once already: never again, whatever the C library kept
  if not may_run_on_cpu(environ):
    return None
  current = environ.get(TUNABLES_VARIABLE, "")
  if any(item.split("=", 1)[0] == HUGE_PAGES_TUNABLE for item in current.split(":")):
    return None
  return f"{current}:{HUGE_PAGES_TUNABLE}=1" if current else f"{HUGE_PAGES_TUNABLE}=1"


def restart_with_huge_pages() -> None:
  """Replaces this process by itself with the tunables of `huge_page_tunables`, where it
  gives any; does not return then (same pid, same open files, same arguments). Call it
  first thing in a program's entry point: anything done before is done twice."""
  tunables = huge_page_tunables(os.environ, glibc_version(), transparent_huge_page_mode())
  if tunables is None or not sys.executable or not sys.orig_argv:
    return   # nothing to gain, or an embedded interpreter that cannot be started again
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]],
            dict(os.environ, **{TUNABLES_VARIABLE: tunables,
                                BEFORE_RESTART_VARIABLE: os.environ.get(TUNABLES_VARIABLE, "")}))


def environment_before_restart(environ) -> dict:
  """`environ` as it was before `restart_with_huge_pages` changed it (the same where it did
  not): for a program this process starts that should run as it would by default, e.g. the
  PyTorch reference of a benchmark."""
  env = dict(environ)
  if BEFORE_RESTART_VARIABLE in env:
    before = env.pop(BEFORE_RESTART_VARIABLE)
    if before:
      env[TUNABLES_VARIABLE] = before
    else:
      env.pop(TUNABLES_VARIABLE, None)
  return env
