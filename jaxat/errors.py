"""The two kinds of failure a user should see as one line rather than a traceback.

- `UsageError`: the input is wrong (a config field, a flag, a data file, a workdir that
  holds another run). Raised before anything is compiled or written. The command-line
  entry points print `error: <message>` and exit with status 2.
- `RunStateError`: the files of a run directory cannot be used as they are (every
  checkpoint corrupt, an unreadable `config.json`, ...). The message names the path and
  what is wrong; the entry points print it as one line and exit with status 1.

Both subclass the built-in exception their callers caught before (ValueError,
RuntimeError), so library users' existing `except` clauses keep working. Set the
environment variable `JAXAT_TRACEBACK=1` to see the full traceback instead
(jaxat/cli_args.py).
"""

from __future__ import annotations

import contextlib

USAGE_EXIT_CODE = 2
RUN_STATE_EXIT_CODE = 1


class UsageError(ValueError):
  """Bad user input; the message names the field or file, the value and the valid choices."""


class RunStateError(RuntimeError):
  """A run directory's files cannot be used; the message names the path and the problem."""


@contextlib.contextmanager
def usage_errors():
  """Inside: a ValueError or FileNotFoundError (the phrased refusals of validation code,
  which library callers catch as such) becomes a `UsageError`."""
  try:
    yield
  except (UsageError, RunStateError):
    raise
  except (ValueError, FileNotFoundError) as error:
    raise UsageError(str(error)) from error
