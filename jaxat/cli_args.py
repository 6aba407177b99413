"""Command-line conveniences shared by the jaxat entry points."""

from __future__ import annotations

import re
from fractions import Fraction

_FRACTION = re.compile(r"^(--config\.[\w.]+)=(-?\d+)/(\d+)$")


def rewrite_fraction_overrides(argv: list[str]) -> list[str]:
  """Turns `--config.field=8/255` into `--config.field=0.03137254901960784`.

  Radii and step sizes are config floats in [0,1] pixel units; researchers think of them
  as k/255, so the override accepts that spelling.
  """
  out = []
  for arg in argv:
    match = _FRACTION.match(arg)
    if match:
      name, numerator, denominator = match.groups()
      if int(denominator) == 0:
        raise ValueError(f"{arg}: division by zero")
      arg = f"{name}={float(Fraction(int(numerator), int(denominator)))!r}"
    out.append(arg)
  return out


def parse_fraction(text: str) -> float:
  """'8/255' -> 0.0313..., '0.5' -> 0.5; a clear error otherwise."""
  try:
    return float(Fraction(text.strip()))
  except (ValueError, ZeroDivisionError) as error:
    raise ValueError(f"expected a number such as 8/255 or 0.5, got {text!r}") from error


def exit_on_user_error(validate, *args, **kwargs):
  """Returns validate(*args, **kwargs); a ValueError it raises (a phrased user error: bad
  flag value, missing run, ...) becomes one line on stderr and exit status 2, without a
  Python traceback. Only validation goes through here: errors of the work itself keep
  their traceback."""
  import sys
  try:
    return validate(*args, **kwargs)
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


class QuietCheckpointInfo:
  """absl log filter dropping orbax's INFO records (checkpoint internals); warnings and
  errors still pass: `logging.get_absl_handler().addFilter(QuietCheckpointInfo())`."""

  def filter(self, record) -> bool:
    return record.levelno >= 30 or "orbax" not in record.pathname
