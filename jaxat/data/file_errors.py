"""Reading a data file with an error that names it.

numpy, pickle and scipy report a truncated or foreign file as `BadZipFile`, `EOFError`,
`UnpicklingError`, "could not read bytes", ... without the path; a user with several data
folders cannot tell which file is broken. `read_data_file` re-raises every such failure as
a `UsageError` (jaxat/errors.py) that names the file, what it was expected to be, and the
library's own words.
"""

from __future__ import annotations

import pathlib
import pickle
import zipfile
from typing import Callable, TypeVar

from jaxat.errors import UsageError

T = TypeVar("T")

# What a corrupt, truncated or foreign file raises in the readers jaxat uses.
_READ_FAILURES = (OSError, EOFError, ValueError, KeyError, TypeError, IndexError,
                  pickle.UnpicklingError, zipfile.BadZipFile, NotImplementedError)


def read_data_file(path: pathlib.Path | str, reader: Callable[[], T], expected: str) -> T:
  """reader() — the code that opens and parses `path` — with its failures re-raised as a
  UsageError naming `path` and `expected` (e.g. "a CIFAR-10 pickle batch")."""
  try:
    return reader()
  except UsageError:
    raise
  except _READ_FAILURES as error:
    raise UsageError(f"{path}: cannot be read as {expected} ({type(error).__name__}: {error}); "
                     "the file is truncated or of another kind: download or write it again") from error
