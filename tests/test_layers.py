"""The architecture as tests: no import circles, and each layer imports only the layers below it.

Imports are read from the source (every `import` / `from ... import`, at module level or inside a
function), so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "zoos")

# layer -> what it may import (besides itself); the first matching prefix decides a module's layer
ALLOWED = {
    "zoos": (),
    "methods": ("zoos",),
    "bench.evaluation": ("zoos",),
    "bench.store": ("zoos",),
    "bench.protocols": ("bench.evaluation", "methods", "zoos"),
    "bench.report": ("bench.store", "bench.protocols", "zoos"),
    "bench.execution": ("bench.protocols", "bench.evaluation", "bench.store", "methods", "zoos"),
    "bench.perf": ("bench.execution", "bench.evaluation", "bench.store", "methods", "zoos"),
    "bench.autoencoder": ("bench.execution", "methods", "zoos"),
    "bench.ae_study": ("bench.execution", "bench.evaluation", "bench.store", "bench.report", "methods", "zoos"),
    "bench.api": ("bench.execution", "bench.evaluation", "methods", "zoos"),
    "bench.reproduce": ("bench.execution", "bench.evaluation", "bench.perf", "bench.protocols", "bench.report",
                        "bench.store", "methods", "zoos"),
    "bench.cli": ("bench", "methods", "zoos"),
    "bench.commands": ("bench", "methods", "zoos"),
}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an import names (a name imported from a module counts as that module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    # importing a submodule runs its package's __init__ too, but the package is not "imported from"
    return {m for m in found if not module.startswith(m + ".")}


GRAPH = {m: imports(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_parser_sees_lazy_and_relative_imports():
    assert "bench.store.results" in GRAPH["bench.execution.plan"]
    assert "bench.execution.batch" in GRAPH["bench.execution.sweep.objective"]  # imported inside a method
    assert "methods.c2m3" in GRAPH["methods.mergemany"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert _cycles(GRAPH) == []


def _layer(module: str) -> str:
    return max((layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")), key=len)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in ("bench",)))
def test_imports_point_down_the_layers(module):
    layer = _layer(module)
    allowed = (layer,) + ALLOWED[layer]
    wrong = sorted(m for m in GRAPH[module] if not any(m == a or m.startswith(a + ".") for a in allowed))
    assert wrong == [], f"{module} ({layer}) imports {wrong}"


def test_nothing_imports_the_cli():
    assert [m for m, deps in GRAPH.items() if "bench.cli" in deps] == []


def test_test_harnesses_are_not_installed():
    assert not (ROOT / "bench" / "hostile.py").exists() and not (ROOT / "bench" / "reliability.py").exists()
    assert all(not m.startswith("tests") for m in MODULES)
