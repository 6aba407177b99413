"""jaxat.host_memory: glibc's M_TOP_PAD set once at import, unless the user chose it."""

import subprocess
import sys

import pytest

from jaxat import host_memory


class FakeLibc:
  def __init__(self, answer=1):
    self.calls, self.answer = [], answer

  def mallopt(self, parameter, value):
    self.calls.append((parameter, value))
    return self.answer


@pytest.fixture(autouse=True)
def fresh_decision(monkeypatch):
  monkeypatch.delenv("MALLOC_TOP_PAD_", raising=False)
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  host_memory.retain_freed_memory.cache_clear()
  yield
  host_memory.retain_freed_memory.cache_clear()


def test_sets_256_mib_of_top_pad_once(monkeypatch):
  libc = FakeLibc()
  monkeypatch.setattr(host_memory, "_glibc", lambda: libc)
  assert host_memory.retain_freed_memory() == 256 * 2**20
  assert host_memory.retain_freed_memory() == 256 * 2**20
  assert libc.calls == [(-2, 268435456)]  # M_TOP_PAD is -2 in glibc's <malloc.h>


@pytest.mark.parametrize("environment", [{"MALLOC_TOP_PAD_": "131072"},
                                         {"JAX_PLATFORMS": "tpu"},
                                         {"JAX_PLATFORMS": "cuda,rocm"}])
def test_left_alone_where_the_user_chose_or_no_cpu_runs(monkeypatch, environment):
  libc = FakeLibc()
  monkeypatch.setattr(host_memory, "_glibc", lambda: libc)
  for name, value in environment.items():
    monkeypatch.setenv(name, value)
  assert host_memory.retain_freed_memory() is None
  assert libc.calls == []


def test_cpu_among_several_platforms_still_sets_it(monkeypatch):
  libc = FakeLibc()
  monkeypatch.setattr(host_memory, "_glibc", lambda: libc)
  monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
  assert host_memory.retain_freed_memory() == host_memory.TOP_PAD_BYTES


def test_no_glibc_or_a_refusal_sets_nothing(monkeypatch):
  monkeypatch.setattr(host_memory, "_glibc", lambda: None)
  assert host_memory.retain_freed_memory() is None
  host_memory.retain_freed_memory.cache_clear()
  monkeypatch.setattr(host_memory, "_glibc", lambda: FakeLibc(answer=0))
  assert host_memory.retain_freed_memory() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_importing_jaxat_sets_it_before_jax_starts():
  code = ("import sys, jaxat, jaxat.host_memory as h; "
          "print(h.retain_freed_memory.cache_info().currsize, 'jax' in sys.modules)")
  env = {k: v for k, v in __import__("os").environ.items()
         if k not in ("MALLOC_TOP_PAD_", "JAX_PLATFORMS")}
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, env=env).stdout.split()
  # Decided at import (cached once), and `import jaxat` alone does not start jax.
  assert out == ["1", "False"]
