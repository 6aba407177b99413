"""Name -> training method class. Every registered name is a working, tested method: the
catalogue of stand-alone methods (catalog.py) and the wrappers over them (AWP, LAS-AT)."""

from __future__ import annotations

from jaxat.methods.awp import AWP
from jaxat.methods.base import Method
from jaxat.methods.catalog import BASE_METHODS
from jaxat.methods.las_at import LASAT

_METHODS: dict[str, type[Method]] = {**BASE_METHODS, AWP.name: AWP, LASAT.name: LASAT}


def method_names() -> tuple[str, ...]:
  return tuple(sorted(_METHODS))


def get_method_class(name: str) -> type[Method]:
  if name not in _METHODS:
    raise ValueError(f"unknown method {name!r}; valid choices: {', '.join(method_names())}")
  return _METHODS[name]


def create_method(cfg) -> Method:
  return get_method_class(cfg.name)(cfg)
