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


# Huge pages for malloc (glibc.malloc.hugetlb=1), by restarting the process.

MADVISE, NEW_GLIBC = "madvise", (2, 36)


@pytest.mark.parametrize("environment, expected", [
    ({}, "glibc.malloc.hugetlb=1"),
    ({"JAX_PLATFORMS": "cuda,cpu"}, "glibc.malloc.hugetlb=1"),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
     "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, None),           # the user's choice stands
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2"}, None),
    ({"JAX_PLATFORMS": "tpu"}, None),                                # no CPU run
    ({"JAXAT_GLIBC_TUNABLES_BEFORE_RESTART": ""}, None),             # restarted once already
])
def test_tunables_follow_the_environment(environment, expected):
  assert host_memory.huge_page_tunables(environment, NEW_GLIBC, MADVISE) == expected


@pytest.mark.parametrize("libc_version, thp_mode", [
    ((2, 34), MADVISE),   # glibc.malloc.hugetlb came with glibc 2.35
    (None, MADVISE),      # not glibc
    (NEW_GLIBC, "always"),  # the kernel gives every process huge pages already
    (NEW_GLIBC, "never"),
    (NEW_GLIBC, None),    # no transparent huge pages at all
])
def test_no_restart_where_it_cannot_help(libc_version, thp_mode):
  assert host_memory.huge_page_tunables({}, libc_version, thp_mode) is None


def test_the_kernel_mode_is_the_bracketed_word(tmp_path):
  path = tmp_path / "enabled"
  path.write_text("always [madvise] never\n")
  assert host_memory.transparent_huge_page_mode(str(path)) == "madvise"
  path.write_text("[always] madvise never\n")
  assert host_memory.transparent_huge_page_mode(str(path)) == "always"
  assert host_memory.transparent_huge_page_mode(str(tmp_path / "missing")) is None


_RESTARTING = """
import os, sys
from jaxat import host_memory as h
h.glibc_version = lambda: (2, 36)
h.transparent_huge_page_mode = lambda path=None: "madvise"
print("start", os.getpid(), os.environ.get("GLIBC_TUNABLES"), sys.argv[1:], flush=True)
h.restart_with_huge_pages()
print("after", os.getpid(), os.environ.get("GLIBC_TUNABLES"), flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.execve of a glibc process")
def test_restart_runs_the_same_program_once_more_in_the_same_process():
  env = {k: v for k, v in __import__("os").environ.items() if k not in ("GLIBC_TUNABLES",)}
  env["GLIBC_TUNABLES"] = "glibc.malloc.arena_max=4"
  out = subprocess.run([sys.executable, "-c", _RESTARTING, "a", "b"], capture_output=True,
                       text=True, check=True, env=env).stdout.splitlines()
  assert len(out) == 3, out
  pid = out[0].split()[1]
  assert out[0] == f"start {pid} glibc.malloc.arena_max=4 ['a', 'b']"
  assert out[1] == f"start {pid} glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1 ['a', 'b']"
  assert out[2] == f"after {pid} glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"


def test_the_environment_before_the_restart_is_recovered():
  restarted = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1",
               "JAXAT_GLIBC_TUNABLES_BEFORE_RESTART": "glibc.malloc.arena_max=4", "HOME": "/h"}
  assert host_memory.environment_before_restart(restarted) == {
      "GLIBC_TUNABLES": "glibc.malloc.arena_max=4", "HOME": "/h"}
  restarted = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
               "JAXAT_GLIBC_TUNABLES_BEFORE_RESTART": "", "HOME": "/h"}
  assert host_memory.environment_before_restart(restarted) == {"HOME": "/h"}
  as_started = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", "HOME": "/h"}
  assert host_memory.environment_before_restart(as_started) == as_started


@pytest.mark.parametrize("orig_argv, expected", [
    (["python", "-m", "jaxat.main", "--config=c.py"], True),
    (["python", "-X", "importtime", "-u", "-m", "jaxat.main"], True),
    (["python", "-mjaxat.main"], True),
    (["python", "-m", "jaxat.evaluate"], False),            # another module is __main__
    (["python", "tests/cli_driver.py", "-m", "jaxat.main"], False),  # runpy inside a script
    (["python", "-c", "from jaxat import main; main.run()"], False),
])
def test_only_a_process_started_as_the_jaxat_command_restarts(monkeypatch, orig_argv, expected):
  from jaxat import cli_args
  assert not cli_args.started_as_jaxat_command()   # pytest's own process
  main = type(sys)("__main__")
  main.__spec__ = type("Spec", (), {"name": "jaxat.main"})()
  monkeypatch.setitem(sys.modules, "__main__", main)
  monkeypatch.setattr(sys, "orig_argv", orig_argv)
  assert cli_args.started_as_jaxat_command() is expected


_CONFIG_REPORTING_TUNABLES = """
import os
def get_config(arg=None):
  raise ValueError("tunables=" + os.environ.get("GLIBC_TUNABLES", "unset"))
"""


@pytest.mark.skipif(host_memory.huge_page_tunables({}, host_memory.glibc_version(),
                                                   host_memory.transparent_huge_page_mode()) is None,
                    reason="huge pages cannot help here (THP mode not madvise, or glibc < 2.35)")
def test_a_jaxat_command_runs_with_huge_pages(tmp_path):
  config = tmp_path / "reporting.py"
  config.write_text(_CONFIG_REPORTING_TUNABLES)
  env = {k: v for k, v in __import__("os").environ.items() if k != "GLIBC_TUNABLES"}
  proc = subprocess.run([sys.executable, "-m", "jaxat.main", f"--config={config}",
                         f"--workdir={tmp_path / 'run'}"], capture_output=True, text=True, env=env)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "tunables=glibc.malloc.hugetlb=1" in proc.stderr, proc.stderr[-2000:]
