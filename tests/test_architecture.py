"""The package layout the design fixes: no import cycles, and imports only flow downward.

Imports are read from the source (``ast``), including those inside functions, so a cycle
cannot hide behind a lazy import.
"""
from __future__ import annotations

import ast

import pytest

from tests.paths import REPO

PACKAGES = ("interp", "probes", "experiments")
TOP_LEVEL = {"__init__", "__main__", "cli", "pipeline", "config", "errors"}


def modules() -> dict[str, object]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = modules()


def imports_of(path) -> set[str]:
    """Project modules imported anywhere in the file (``from a.b import c`` counts a.b and a.b.c)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES}


GRAPH = {m: imports_of(p) - {m} for m, p in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_of(module: str) -> str:
    return ".".join(module.split(".")[:2]) if module.startswith("experiments.") else module.split(".")[0]


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_between_modules(package):
    graph = {m: {d for d in deps if d.split(".")[0] == package} for m, deps in GRAPH.items()
             if m.split(".")[0] == package}
    assert cycles(graph) == []


def test_no_import_cycle_between_experiments_subpackages():
    graph: dict[str, set[str]] = {}
    for module, deps in GRAPH.items():
        if module.startswith("experiments."):
            graph.setdefault(_package_of(module), set()).update(
                _package_of(d) for d in deps if d.startswith("experiments.") and _package_of(d) != _package_of(module))
    assert cycles(graph) == []


def test_probes_imports_neither_interp_nor_experiments():
    bad = {m: sorted(d for d in deps if d.split(".")[0] in ("interp", "experiments"))
           for m, deps in GRAPH.items() if m.split(".")[0] == "probes"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_interp_does_not_import_experiments():
    bad = {m: sorted(d for d in deps if d.startswith("experiments"))
           for m, deps in GRAPH.items() if m.split(".")[0] == "interp"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_artifacts_is_the_bottom_layer_of_experiments():
    allowed = {"experiments", "experiments.errors", "experiments.config"}
    bad = {m: sorted(d for d in deps if d.startswith("experiments") and not d.startswith("experiments.artifacts")
                     and d not in allowed)
           for m, deps in GRAPH.items() if m.startswith("experiments.artifacts")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_only_the_entry_points_are_modules_at_the_top_of_experiments():
    top = {p.stem for p in (REPO / "experiments").glob("*.py")}
    assert top == TOP_LEVEL
    data = {"__pycache__", "pretrained"}  # pretrained/: shipped base models (package data, no code)
    assert all((d / "__init__.py").is_file() for d in (REPO / "experiments").iterdir()
               if d.is_dir() and d.name not in data)
    assert not list((REPO / "experiments" / "pretrained").rglob("*.py"))
