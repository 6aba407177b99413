"""Name -> training method class. Every registered name is a working, tested method."""

from __future__ import annotations

from jaxat.methods.awp import AWP
from jaxat.methods.base import Method
from jaxat.methods.hat import HAT
from jaxat.methods.mart import MART
from jaxat.methods.pgd_at import PGDAT
from jaxat.methods.standard import Standard
from jaxat.methods.trades import TRADES
from jaxat.methods.uiat import IAT, UIAT, UIATOneOff

_METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (Standard, PGDAT, UIAT, UIATOneOff, IAT, TRADES, MART, AWP, HAT)}


def method_names() -> tuple[str, ...]:
  return tuple(sorted(_METHODS))


def get_method_class(name: str) -> type[Method]:
  if name not in _METHODS:
    raise ValueError(f"unknown method {name!r}; valid choices: {', '.join(method_names())}")
  return _METHODS[name]


def create_method(cfg) -> Method:
  return get_method_class(cfg.name)(cfg)
