"""The software and hardware a run trained on, recorded in `workdir/environment.json`.

Why: a run is bit-reproducible only on the same installation and CPU/accelerator (XLA
picks kernels by CPU features; the same seed gave slightly different numbers on CPUs with
and without AVX-512). When two runs disagree, this file says which of those differed.

Layout of environment.json (docs/reproducibility.md#environmentjson):

  {"sessions": [<environment>, ...]}

`sessions[0]` is the environment the run started in. Each resume compares its own
environment with the last session; an identical one adds nothing, a different one (other
versions, devices, CPU, XLA/JAX variables) is appended, so a run that moved between
machines lists every environment it trained in, in order. An <environment> is
`describe_environment()` plus `recorded_at` (UTC, ignored when comparing).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import sys
from typing import Any

from jaxat.train import reporting

FILENAME = "environment.json"

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")

# CPU features XLA:CPU may pick different kernels (and reduction orders) for. x86 names
# come from the `flags` line of /proc/cpuinfo, Arm names from its `Features` line.
NUMERIC_CPU_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
    "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
    "amx_int8", "asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm")

# Environment variables that change compiled numerics (flags, optimisation passes,
# precision); JAX_* and XLA_* are recorded whole.
_ENV_PREFIXES = ("JAX_", "XLA_")

# Fields that are bookkeeping, not environment: ignored when comparing sessions.
_NOT_COMPARED = ("recorded_at",)


def _package_versions() -> dict[str, str]:
  versions = {"python": sys.version.split()[0]}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = "not installed"
  return versions


def _cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str | None, list[str] | None]:
  """(CPU model, the NUMERIC_CPU_FLAGS it has) from the first processor of /proc/cpuinfo;
  (None, None) where there is no such file (not Linux)."""
  model, flags = None, None
  try:
    with open(path) as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model name") and model is None:
          model = value.strip()
        elif key in ("flags", "Features") and flags is None:
          present = set(value.split())
          flags = [flag for flag in NUMERIC_CPU_FLAGS if flag in present]
        if model is not None and flags is not None:
          break
  except OSError:
    return None, None
  return model, flags


def describe_environment() -> dict[str, Any]:
  """Versions, devices, CPU and numerics-relevant variables of this process (JSON-ready)."""
  import jax  # Here: reading and comparing sessions (python -m jaxat.audit) needs no JAX.
  cpu_model, cpu_flags = _cpuinfo()
  devices = jax.devices()
  return {
      "packages": _package_versions(),
      "backend": jax.default_backend(),
      "device_kind": devices[0].device_kind if devices else None,
      "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
      "cpu_model": cpu_model or platform.processor() or None,
      "cpu_flags": cpu_flags,
      "machine": platform.machine(),
      "platform": platform.platform(),
      "variables": {k: v for k, v in sorted(os.environ.items()) if k.startswith(_ENV_PREFIXES)},
  }


def comparable(environment: dict[str, Any]) -> dict[str, Any]:
  """`environment` without its bookkeeping fields (what two sessions are compared on)."""
  return {k: v for k, v in environment.items() if k not in _NOT_COMPARED}


def read_sessions(workdir: str) -> list[dict[str, Any]] | None:
  """The recorded sessions of the run in `workdir`, oldest first; None for a run that
  predates environment.json."""
  path = os.path.join(workdir, FILENAME)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)["sessions"]


def write_environment(workdir: str) -> None:
  """Records this process's environment in `workdir/environment.json` (process 0 only):
  creates the file on a fresh run; on a resume appends a session only when the
  environment differs from the last one recorded."""
  import jax
  if jax.process_index() != 0:
    return
  current = describe_environment()
  sessions = read_sessions(workdir) or []
  if sessions and comparable(sessions[-1]) == current:
    return
  now = datetime.datetime.now(datetime.timezone.utc)
  sessions.append({**current, "recorded_at": now.isoformat(timespec="seconds")})
  reporting.write_json(os.path.join(workdir, FILENAME), {"sessions": sessions})
