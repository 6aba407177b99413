"""Runs many jaxat command lines fast: each in a forked child of one warm interpreter.

  python tests/cli_driver.py CASES.json RESULTS.json

CASES.json is a list of {"module": "jaxat.main", "args": [...], "env": {...}} ("env"
optional: variables set in the child only); RESULTS.json gets, per
case, {"returncode": int, "stdout": str, "stderr": str}. A child runs the module exactly as
`python -m <module> <args>` would (`runpy` with run_name='__main__'): an uncaught exception
prints its traceback and exits with status 1, as the interpreter does. What the fork saves
is the import of JAX, flax, optax and orbax (seconds per command on two cores); the parent
imports them but never starts a JAX backend, so every child starts its own.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import tempfile
import traceback


def _run_child(case: dict, out_path: str, err_path: str) -> None:
  out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
  err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
  os.dup2(out, 1)
  os.dup2(err, 2)
  # Read when the child starts its JAX backend (the parent never does), e.g. XLA_FLAGS.
  os.environ.update(case.get("env", {}))
  sys.argv = [case["module"], *case["args"]]
  code = 0
  try:
    runpy.run_module(case["module"], run_name="__main__", alter_sys=True)
  except SystemExit as stop:
    code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    if isinstance(stop.code, str):
      print(stop.code, file=sys.stderr)
  except BaseException:   # what the interpreter does with an uncaught exception
    traceback.print_exc()
    code = 1
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


def main() -> None:
  cases_path, results_path = sys.argv[1:3]
  with open(cases_path) as f:
    cases = json.load(f)
  # Warm imports (no backend is started: jax.devices() is never called here).
  import flax.linen  # noqa: F401
  import optax  # noqa: F401
  import orbax.checkpoint  # noqa: F401
  import jaxat.train.train  # noqa: F401
  import jaxat.eval.robustness  # noqa: F401
  results = []
  with tempfile.TemporaryDirectory() as scratch:
    for index, case in enumerate(cases):
      out_path = os.path.join(scratch, f"{index}.out")
      err_path = os.path.join(scratch, f"{index}.err")
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        _run_child(case, out_path, err_path)
      _, status = os.waitpid(pid, 0)
      with open(out_path) as f_out, open(err_path) as f_err:
        results.append({"returncode": os.waitstatus_to_exitcode(status),
                        "stdout": f_out.read(), "stderr": f_err.read()})
  with open(results_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main()
