"""Checks of the arguments every batch attack takes (x, y, eps, norm), shared by the entry
points of FAB and Square so that both refuse bad input with the same clear message."""

from __future__ import annotations

from typing import Sequence


def validate_batch(x, y, *, eps, norm: str, norms: Sequence[str]) -> None:
  """x (B,H,W,C), y (B,), eps >= 0 in [0,1] pixel units (when a Python number), norm in
  `norms`; ValueError naming the bad value and the valid choices otherwise."""
  if norm not in norms:
    raise ValueError(f"norm={norm!r} is invalid; valid choices: {tuple(norms)}")
  if x.ndim != 4:
    raise ValueError(f"x must be an NHWC batch (B,H,W,C), got shape {x.shape}")
  if y.shape != (x.shape[0],):
    raise ValueError(f"y must have shape ({x.shape[0]},), got {y.shape}")
  if isinstance(eps, (int, float)) and not eps >= 0:
    raise ValueError(f"eps={eps} is invalid; valid choices: >= 0 in [0,1] pixel units")
