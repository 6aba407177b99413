"""The package's import graph: no cycles, and the layers point one way (methods/ never
imports train/). Read from the source with `ast`, so a lazy import inside a function
counts as much as one at the top of a module."""

import ast
import os

import pytest

PACKAGE_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxat")


def module_name(path: str) -> str:
  relative = os.path.relpath(path, os.path.dirname(PACKAGE_ROOT))[:-len(".py")]
  parts = relative.split(os.sep)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, str]:
  modules = {}
  for folder, _, files in os.walk(PACKAGE_ROOT):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        modules[module_name(path)] = path
  return modules


def imports_of(path: str, modules: dict[str, str]) -> set[str]:
  """The jaxat modules `path` imports anywhere in its body (`from a import b` counts as a.b
  when a.b is a module, else as a)."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names if alias.name in modules)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        candidate = f"{node.module}.{alias.name}"
        if candidate in modules:
          found.add(candidate)
        elif node.module in modules:
          found.add(node.module)
  return found


def import_graph() -> dict[str, set[str]]:
  modules = package_modules()
  return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle as a list of modules (first == last), or None."""
  state: dict[str, int] = {}  # 1 = on the stack, 2 = done
  stack: list[str] = []

  def visit(node):
    state[node] = 1
    stack.append(node)
    for target in sorted(graph.get(node, ())):
      if state.get(target) == 1:
        return stack[stack.index(target):] + [target]
      if target not in state:
        cycle = visit(target)
        if cycle:
          return cycle
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_the_cycle_finder_finds_a_planted_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_scanner_sees_imports_inside_functions(tmp_path):
  source = tmp_path / "lazy.py"
  source.write_text("def f():\n  from jaxat.train.restore import load_trained_model\n")
  modules = {"jaxat.train.restore": "", "jaxat.train": ""}
  assert imports_of(str(source), modules) == {"jaxat.train.restore"}


def test_the_package_has_no_import_cycle():
  graph = import_graph()
  assert len(graph) > 50
  assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


@pytest.mark.parametrize("layer, forbidden", [
    ("jaxat.methods", "jaxat.train"),
    ("jaxat.attacks", "jaxat.methods"),
    ("jaxat.attacks", "jaxat.train"),
    ("jaxat.models", "jaxat.methods"),
])
def test_lower_layers_do_not_import_higher_ones(layer, forbidden):
  offending = {module: sorted(t for t in targets if t.startswith(forbidden))
               for module, targets in import_graph().items() if module.startswith(layer)}
  assert not {m: t for m, t in offending.items() if t}
