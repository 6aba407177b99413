"""Config files that build on other config files (configs/awp.py and configs/ecas.py wrap a
base method's own configs/<name>.py). The files in configs/ are not a package, so a sibling
is loaded by path."""

from __future__ import annotations

import importlib.util
import os


def sibling_config_module(config_file: str, name: str):
  """The module configs/<name>.py next to `config_file` (a config file's `__file__`)."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"jaxat_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
