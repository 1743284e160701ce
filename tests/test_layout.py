"""The package's shape: one home per concept, imports one way, small modules.

Read from the source with ``ast`` (nothing is imported), so the checks are fast and cover
imports inside functions too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpcml"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every hpcml import in the file, relative ones resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] != "hpcml":
                continue
            names = [a.name for a in node.names]
            # `from hpcml.x import y` where y is a module imports that module
            for n in names:
                if f"{base}.{n}" in MODULES:
                    found.append((f"{base}.{n}", []))
            found.append((base, names))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "hpcml"]
    return [(m, n) for m, n in found if m in MODULES]


GRAPH = {m: sorted({target for target, _ in _imports(p)} - {m}) for m, p in MODULES.items()}


def test_no_import_cycles():
    edges = GRAPH
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in edges[m]:
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("lower, upper", [
    ("hpcml.backends", "hpcml.drivers"),  # backends never call up into a driver
    ("hpcml.models", "hpcml.backends"),  # models are plain numerical code
    ("hpcml.models", "hpcml.drivers"),
    ("hpcml.plans", "hpcml.backends"),
    ("hpcml.plans", "hpcml.drivers"),
    ("hpcml.tasks.worker", "hpcml.drivers"),
])
def test_imports_only_go_down(lower, upper):
    wrong = [(m, t) for m, ts in GRAPH.items() for t in ts
             if (m == lower or m.startswith(lower + ".")) and (t == upper or t.startswith(upper + "."))]
    assert not wrong, f"{lower} must not import {upper}: {wrong}"


def test_no_private_name_crosses_a_module():
    leaks = [(m, target, n) for m, p in MODULES.items() for target, names in _imports(p)
             for n in names if n.startswith("_") and target != m]
    assert not leaks, f"private names imported across modules: {leaks}"


def test_modules_stay_small():
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_every_plan_and_backend_has_one_home():
    from hpcml.backends import backend_names
    from hpcml.plans import PLANS

    for name, plan in PLANS.items():
        assert type(plan).__module__ == f"hpcml.plans.{name}"
    assert set(backend_names()) >= {"local", "dask", "mpi", "spark"}
