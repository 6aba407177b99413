"""Command-line conveniences shared by the jaxat entry points."""

from __future__ import annotations

import difflib
import os
import re
import sys
import traceback
from fractions import Fraction
from typing import Any, Callable, NoReturn

from absl import app, flags

from jaxat import host_memory
from jaxat.errors import RUN_STATE_EXIT_CODE, USAGE_EXIT_CODE, RunStateError, UsageError

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
        raise UsageError(f"{arg}: the denominator is 0; write a fraction such as 8/255")
      value = Fraction(int(numerator), int(denominator))
      # An integral fraction (128/2) stays an int, so integer fields accept it too.
      arg = f"{name}={value.numerator if value.denominator == 1 else repr(float(value))}"
    out.append(arg)
  return out


def parse_fraction(text: str) -> float:
  """'8/255' -> 0.0313..., '0.5' -> 0.5; a clear error otherwise."""
  try:
    return float(Fraction(text.strip()))
  except (ValueError, ZeroDivisionError) as error:
    raise ValueError(f"expected a number such as 8/255 or 0.5, got {text!r}") from error


TRACEBACK_ENV = "JAXAT_TRACEBACK"


def _exit_with(message: str, status: int, error: BaseException) -> None:
  """Prints `error: <message>` as one line and exits; re-raises instead when the user asked
  for tracebacks (JAXAT_TRACEBACK=1), so a developer still sees where it came from."""
  if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
    raise error
  print(f"error: {one_line(message)}", file=sys.stderr)
  sys.exit(status)


def exit_at_once(error: BaseException, process_index: int, process_count: int,
                 before_exit: Callable[[], object] | None = None) -> NoReturn:
  """Ends one of several JAX processes after `error`, which may be its own alone: prints what
  `run_entry_point` prints (`error: <one line>` for a UsageError or RunStateError, the
  traceback for anything else or with JAXAT_TRACEBACK=1), prefixed with the process, and
  exits with the same status through `os._exit`. Why not `sys.exit`: the interpreter's exit
  handlers include `jax.distributed.shutdown`, which waits at a barrier for processes that
  are themselves waiting for this one inside a collective, and all would hang. Skipping it
  stops this process's heartbeat, and JAX's coordination service then ends the others
  (within --heartbeat_timeout_seconds, docs/scaling.md#multi-host-training).
  `before_exit` runs after the message is out and before `os._exit` (`jaxat.main` passes
  `multihost.leave_together` for user errors, which every process meets alike)."""
  status = RUN_STATE_EXIT_CODE if isinstance(error, RunStateError) else (
      USAGE_EXIT_CODE if isinstance(error, UsageError) else 1)
  who = f"process {process_index} of {process_count}"
  if isinstance(error, (UsageError, RunStateError)) and os.environ.get(TRACEBACK_ENV, "") in ("", "0"):
    print(f"error: {who}: {one_line(str(error))}", file=sys.stderr)
  else:
    print(f"error: {who} failed:", file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)
  for stream in (sys.stdout, sys.stderr):
    stream.flush()
  if before_exit is not None:
    before_exit()
  os._exit(status)


def one_line(message: str) -> str:
  """Collapses a multi-line message (library errors quote files and tracebacks) to one line."""
  return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def _config_path_problem(argv: list[str]) -> str | None:
  """What is wrong with the --config=<file>[:args] path, if anything (ml_collections reports a
  missing file only when the config is first read, as a multi-line traceback)."""
  value = config_argument(argv)
  if value is None:
    return None
  path = value.split(":", 1)[0]
  if os.path.isfile(path):
    return None
  folder = os.path.dirname(path) or "."
  choices = sorted(f for f in os.listdir(folder) if f.endswith(".py")) if os.path.isdir(folder) else []
  listed = f"; config files in {folder}/: {', '.join(choices)}" if choices else ""
  return f"--config={value}: no such config file {path!r}{listed}"


def _config_file_error(text: str) -> str | None:
  """The user-facing part of an error raised by a config file's get_config (ml_collections
  wraps it in the text of a traceback): its last line, without the exception class."""
  if "Error whilst parsing config file" not in text:
    return None
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  last = lines[-1]
  match = re.match(r"^\w+(Error|Exception): (.*)$", last)
  flag = text.split(": Error whilst parsing", 1)[0].replace("flag ", "", 1)
  return f"{flag}: {match.group(2) if match else last}"


def _unknown_field_message(flag_name: str, argv: list[str]) -> str:
  """`--config.a.b=...` names no field: the fields that `config.a` does have."""
  path = flag_name.split(".")[1:]
  message = f"--{flag_name}: no such config field"
  config = _load_config(argv)
  if config is None:
    return message
  node, parents = config, ["config"]
  for part in path[:-1]:
    if part not in node:
      break
    node, parents = node[part], parents + [part]
  if hasattr(node, "keys"):
    fields = sorted(node.keys())
    close = difflib.get_close_matches(path[len(parents) - 1], fields, n=1)
    hint = f" (did you mean {'.'.join(parents + close)}?)" if close else ""
    message += f"{hint}; the fields of {'.'.join(parents)} are: {', '.join(fields)}"
  return message


def config_argument(argv: list[str]) -> str | None:
  """The raw value of --config (path[:args]) as typed, or None."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _load_config(argv: list[str]):
  """The config that --config names, before overrides (None if it does not load): when an
  override fails, absl has not stored the flag's value yet, so it is loaded again here."""
  value = config_argument(argv)
  if value is None or "config" not in flags.FLAGS:
    return None
  try:
    return flags.FLAGS["config"].parser.parse(value)
  except Exception:   # the config itself fails to load: that error is reported instead
    return None


def _first_unknown_override(argv: list[str]) -> str | None:
  """The first `config.a.b` of a `--config.a.b=...` override that names no field."""
  config = _load_config(argv)
  if config is None:
    return None
  for arg in argv:
    match = re.match(r"^--(config\.[\w.]+)(=|$)", arg)
    if not match:
      continue
    node = config
    for part in match.group(1).split(".")[1:]:
      if not hasattr(node, "keys") or part not in node:
        return match.group(1)
      node = node[part]
  return None


def flag_error_message(error: flags.Error) -> str:
  """One line that names the flag and the value (an error raised by the config file's own
  get_config: its message, without ml_collections' quoted traceback)."""
  return _config_file_error(str(error)) or one_line(str(error))


def started_as_jaxat_command() -> bool:
  """Whether the interpreter was started as `python [options] -m jaxat.<module>` and runs
  that module as `__main__`: not a user's script, a notebook, `python -c`, or a module run
  by `runpy` inside another program (tests/cli_driver.py), which restarting would rerun."""
  name = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", "")
  if not name.startswith("jaxat."):
    return False
  argv = getattr(sys, "orig_argv", [])
  skip_value = False
  for index, arg in enumerate(argv[1:], start=1):
    if skip_value:
      skip_value = False
    elif arg == "-m":
      return argv[index + 1:index + 2] == [name]
    elif arg.startswith("-m") and not arg.startswith("--"):
      return arg[2:] == name
    elif arg in ("-X", "-W"):   # options whose value is the next argument
      skip_value = True
    elif arg == "-c" or not arg.startswith("-"):
      return False   # python -c, or a script
  return False


def run_entry_point(main: Callable[[list[str]], Any],
                    rewrite_argv: Callable[[list[str]], list[str]] | None = None,
                    positional: bool = False) -> None:
  """`app.run(main)` for a jaxat command: a bad flag, a `UsageError` (bad input) or a
  `RunStateError` (unusable run files) ends the process with `error: <one line>` on stderr
  and exit status 2 (usage) or 1 (run state), without a traceback (jaxat/errors.py).
  `rewrite_argv` (e.g. rewrite_fraction_overrides) is applied to sys.argv first; positional
  arguments are refused unless `positional` (main then checks them itself). A process
  started as the command (`python -m jaxat.<command>`) first restarts itself with huge pages
  for malloc where they help (jaxat/host_memory.py); one that calls this from its own code
  does not."""
  if started_as_jaxat_command():
    host_memory.restart_with_huge_pages()
  argv = list(sys.argv)
  if rewrite_argv is not None:
    try:
      argv = rewrite_argv(argv)
    except UsageError as error:
      _exit_with(str(error), USAGE_EXIT_CODE, error)

  def parse_flags(argv: list[str]) -> list[str]:
    problem = _config_path_problem(argv) if "config" in flags.FLAGS else None
    if problem:
      _exit_with(problem, USAGE_EXIT_CODE, UsageError(problem))
    try:
      return flags.FLAGS(argv)
    # ml_collections reports an override that names no field as a flag error or as an
    # AttributeError/KeyError, depending on where it notices; both are described here.
    except (flags.Error, AttributeError, KeyError) as error:
      unknown = _first_unknown_override(argv)
      if unknown is not None:
        _exit_with(_unknown_field_message(unknown, argv), USAGE_EXIT_CODE, error)
      if not isinstance(error, flags.Error):
        raise
      _exit_with(flag_error_message(error), USAGE_EXIT_CODE, error)

  def guarded_main(argv: list[str]) -> Any:
    try:
      if len(argv) > 1 and not positional:
        raise UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag=value")
      return main(argv)
    except UsageError as error:
      _exit_with(str(error), USAGE_EXIT_CODE, error)
    except RunStateError as error:
      _exit_with(str(error), RUN_STATE_EXIT_CODE, error)

  app.run(guarded_main, argv=argv, flags_parser=parse_flags)


class QuietCheckpointInfo:
  """absl log filter dropping orbax's INFO records (checkpoint internals); warnings and
  errors still pass: `logging.get_absl_handler().addFilter(QuietCheckpointInfo())`."""

  def filter(self, record) -> bool:
    return record.levelno >= 30 or "orbax" not in record.pathname
