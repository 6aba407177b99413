"""A description of the machine and software a benchmark ran on (stored with every result)."""

from __future__ import annotations

import os
import platform
import sys


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _memory_gib() -> float | None:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemTotal"):
          return round(int(line.split()[1]) / 2**20, 1)
  except OSError:
    pass
  return None


def describe_machine() -> dict:
  """CPU, cores, memory, accelerators and versions of the libraries that matter."""
  info = {
      "hostname": platform.node(),
      "cpu": _cpu_model(),
      "cpu_cores": os.cpu_count(),
      "memory_gib": _memory_gib(),
      "python": sys.version.split()[0],
      "platform": platform.platform(),
  }
  if os.environ.get("XLA_FLAGS"):
    info["xla_flags"] = os.environ["XLA_FLAGS"]  # e.g. which library runs CPU convolutions
  try:
    import jax
    import flax
    import optax
    info.update(jax=jax.__version__, flax=flax.__version__, optax=optax.__version__,
                jax_backend=jax.default_backend(),
                devices=[f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in jax.devices()])
  except ImportError:
    pass
  try:
    from jaxat import xla_cpu
    import jax
    # The compiler options every jaxat function is compiled with (None: XLA's defaults).
    info["jaxat_compiler_options"] = xla_cpu.compiler_options(jax.default_backend())
    from jaxat import host_memory
    # glibc's M_TOP_PAD of this process: the user's MALLOC_TOP_PAD_, or what `import jaxat`
    # set (jaxat/host_memory.py), or the C library's default.
    info["malloc_top_pad"] = (os.environ.get(host_memory.ENVIRONMENT_VARIABLE)
                              or host_memory.retain_freed_memory() or host_memory.UNSET)
    # Huge pages for malloc (glibc.malloc.hugetlb=1 where a benchmark restarted itself with
    # it, host_memory.restart_with_huge_pages) and the kernel's mode they depend on.
    info["glibc_tunables"] = os.environ.get(host_memory.TUNABLES_VARIABLE, host_memory.UNSET)
    info["transparent_huge_pages"] = host_memory.transparent_huge_page_mode()
  except ImportError:
    pass
  try:
    import torch
    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
  except ImportError:
    pass
  return info
