"""linksim's modules import on their own, in any order, and their top-level imports form no cycle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "linksim"


def _module_files() -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package (``__init__`` as the package)."""
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _top_level_imports(tree: ast.Module, everywhere: bool = False):
    """Import statements that run when the module is imported (not inside functions or classes).

    ``everywhere``: also those inside functions and classes (imports deferred to call time).
    """
    if everywhere:
        yield from (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
        return
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []) or []:
                    stack.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])


def import_graph(everywhere: bool = False) -> dict[str, set[str]]:
    """Edges module -> linksim module it imports at top level.

    ``import a.b.c`` and ``from a.b import c`` run the packages ``a`` and ``a.b`` too, so
    they add edges to them, except to the importing module's own parent packages (which
    are already being initialised when the module runs).
    """
    modules = _module_files()
    graph = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        edges = set()
        for node in _top_level_imports(ast.parse(path.read_text()), everywhere):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[:len(up) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if not t.startswith("linksim"):
                    continue
                parts = t.split(".")
                for i in range(1, len(parts) + 1):
                    mod = ".".join(parts[:i])
                    if mod in modules and mod != name and mod not in ancestors:
                        edges.add(mod)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n):
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        state[n] = 2
        path.pop()
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_sees_the_runners_imports():
    graph = import_graph()
    assert "linksim.run.setup" in graph["linksim.run.evaluation"]
    assert "linksim.registry" in graph["linksim.scenario"]
    assert "linksim.run.directory" in graph["linksim.plotting"]


def test_no_import_cycle_among_linksim_modules_top_level_imports():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_import_cycle_even_counting_imports_deferred_into_functions():
    # e.g. plotting -> runner -> scenario -> plotting was a cycle of deferred imports
    cycle = find_cycle(import_graph(everywhere=True))
    assert cycle is None, " -> ".join(cycle)


_ISOLATED = r"""
import importlib, sys
import matplotlib
matplotlib.use("Agg")
import keras, sionna.phy, tensorflow  # third-party modules stay loaded; linksim's are dropped each time
failed = []
for name in sys.argv[1:]:
    for k in [k for k in sys.modules if k == "linksim" or k.startswith("linksim.")]:
        del sys.modules[k]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_first_in_a_fresh_interpreter():
    # each linksim module is imported with no other linksim module loaded before it
    names = sorted(_module_files())
    r = subprocess.run([sys.executable, "-c", _ISOLATED, *names], capture_output=True, text=True,
                       cwd=PKG.parent, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_module_files()))
def test_each_module_imports_alone_in_its_own_interpreter(name):
    r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                       cwd=PKG.parent, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_every_module_of_the_component_packages_is_imported_before_a_registry_is_read():
    # a new component is one file in a component package: it registers itself because it is imported
    import importlib
    import pkgutil
    import sys

    from linksim import registry

    registry.SCHEMES.names()      # reading a registry loads the built-in components
    for name in registry._COMPONENT_PACKAGES:
        package = importlib.import_module(name)
        modules = [f"{name}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
        assert modules and all(m in sys.modules for m in modules), (name, [m for m in modules if m not in sys.modules])
    assert all(m in sys.modules for m in registry._COMPONENT_MODULES)
