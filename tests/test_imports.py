"""The project's import graph: no cycle in `tfp_realnvp/`, `training/` or
`bench/` (imports inside functions included), and `validation` imports
nothing from the package."""

import ast
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tfp_realnvp", "training", "bench")


def _modules():
  """`{dotted module name: path}` of every module of `PACKAGES`."""
  found = {}
  for package in PACKAGES:
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if not name.endswith(".py"):
          continue
        path = os.path.join(folder, name)
        parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        found[".".join(parts)] = path
  return found


def _resolve(module, level, name, current, is_package, modules):
  """The project module an import statement names, or None."""
  if level:
    base = current.split(".")
    base = base[:len(base) - level + (1 if is_package else 0)]
    module = ".".join(base + ([module] if module else []))
  if name is not None and f"{module}.{name}" in modules:
    return f"{module}.{name}"
  return module if module in modules else None


def import_graph():
  """`{module: set of project modules it imports}`, from the source."""
  modules = _modules()
  graph = {}
  for current, path in modules.items():
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
    is_package = path.endswith("__init__.py")
    edges = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        targets = [_resolve(a.name, 0, None, current, is_package, modules)
                   for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        targets = [_resolve(node.module, node.level, a.name, current,
                            is_package, modules) for a in node.names]
      else:
        continue
      edges |= {t for t in targets if t and t != current}
    graph[current] = edges
  return graph


def find_cycle(graph):
  """One import cycle as a list `[a, b, ..., a]`, or None."""
  state = {}  # 1: on the current path, 2: done
  path = []

  def visit(node):
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        return path[path.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt)
        if cycle:
          return cycle
    state[node] = 2
    path.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_no_import_cycle():
  graph = import_graph()
  assert "tfp_realnvp.model" in graph and "bench" in graph
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_validation_imports_nothing_from_the_package():
  assert import_graph()["tfp_realnvp.validation"] == set()


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": set(), "c": {"c2"}, "c2": {"c"}}, ["c", "c2", "c"]),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
])
def test_the_cycle_finder_names_the_cycle(graph, cycle):
  assert find_cycle(graph) == cycle


def test_the_graph_sees_imports_inside_functions(tmp_path, monkeypatch):
  package = tmp_path / "tfp_realnvp"
  package.mkdir()
  (package / "__init__.py").write_text("")
  (package / "a.py").write_text("def f():\n  from tfp_realnvp import b\n")
  (package / "b.py").write_text("from . import a\n")
  monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
  graph = import_graph()
  assert graph["tfp_realnvp.a"] == {"tfp_realnvp.b"}
  assert graph["tfp_realnvp.b"] == {"tfp_realnvp.a"}
  assert find_cycle(graph) == ["tfp_realnvp.a", "tfp_realnvp.b",
                               "tfp_realnvp.a"]


def test_public_modules_are_attributes_of_the_package():
  """`import tfp_realnvp` is enough for `tfp_realnvp.export.export_for_serving`
  and the other public modules (a fresh interpreter: nothing imported them
  before)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  code = ("import tfp_realnvp as t; "
          "print(all(callable(f) for f in (t.export.export_for_serving, "
          "t.serving.rest_request, t.deployment.check_deployment, "
          "t.optimizers.Adam, t.schedules.Warmup, t.scores.Score, "
          "t.bijectors.AffineCoupling, t.networks.CouplingResNet)))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-1] == "True"
