"""Tiny end-to-end runs for tests: configs that train in seconds on two CPU cores."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import ml_collections

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str = "") -> ml_collections.ConfigDict:
  """configs/<name>.py:get_config(arg), as the command line would load it (locked)."""
  path = os.path.join(REPO_ROOT, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def tiny_config(name: str = "pgd_at", dataset: str = "synthetic", **overrides) -> ml_collections.ConfigDict:
  """A locked config that trains in a few seconds; `overrides` use dotted names
  ('method.attack.num_steps': 2)."""
  config = load_config(name, f"{dataset},smoke")
  config.update_from_flattened_dict({"log.progress": "none", "num_epochs": 2, "batch_size": 32,
                                     "eval.pgd_steps": 2, "dataset.max_train": 128,
                                     "dataset.num_train": 128, "dataset.max_test": 64,
                                     "dataset.num_test": 64, **overrides})
  return config


def run_cli(args: list[str], env_extra: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
  """Runs `python -m jaxat.main ...` (or another module given as args[0] == '-m')."""
  env = dict(os.environ)
  env.setdefault("JAX_PLATFORMS", "cpu")
  env.update(env_extra or {})
  return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)
