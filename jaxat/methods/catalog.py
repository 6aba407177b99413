"""The training methods that stand on their own (every method but the wrappers).

Wrappers such as AWP (jaxat/methods/awp.py) take any method of this catalogue as their
base; the full registry (jaxat/methods/registry.py) is this catalogue plus the wrappers.
A new method is added here (a single-step one in single_step_catalog.py) and gets a
config file; nothing in the engine changes.
"""

from __future__ import annotations

from jaxat.methods.ancra import ANCRA
from jaxat.methods.base import Method
from jaxat.methods.hat import HAT
from jaxat.methods.mart import MART
from jaxat.methods.pgd_at import PGDAT
from jaxat.methods.single_step_catalog import SINGLE_STEP_METHODS
from jaxat.methods.standard import Standard
from jaxat.methods.trades import TRADES
from jaxat.methods.uiat import IAT, UIAT, UIATOneOff

BASE_METHODS: dict[str, type[Method]] = {
    **{cls.name: cls for cls in (Standard, PGDAT, UIAT, UIATOneOff, IAT, TRADES, MART, HAT,
                                  ANCRA)},
    **SINGLE_STEP_METHODS}


def base_method_names() -> tuple[str, ...]:
  return tuple(sorted(BASE_METHODS))
