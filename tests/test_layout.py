"""The package's shape: one home per concept, imports one way, small modules.

Read from the source with ``ast`` (nothing is imported), so the checks are fast and cover
imports inside functions too.
"""
from __future__ import annotations

import ast
import re
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
    ("hpcml.models", "hpcml.plans"),  # a kind knows nothing of plans: plans call the kind
    ("hpcml.models", "hpcml.data"),  # a plan gives the kind the data it loaded
    ("hpcml.plans", "hpcml.backends"),
    ("hpcml.plans", "hpcml.drivers"),
    ("hpcml.tasks.worker", "hpcml.drivers"),
])
def test_imports_only_go_down(lower, upper):
    wrong = [(m, t) for m, ts in GRAPH.items() for t in ts
             if (m == lower or m.startswith(lower + ".")) and (t == upper or t.startswith(upper + "."))]
    assert not wrong, f"{lower} must not import {upper}: {wrong}"


def _area(module: str) -> str:
    """A module's folder under hpcml (``hpcml.rundir.store`` -> ``rundir``), or the module
    itself for one at the top (``hpcml.cli`` -> ``cli``)."""
    return module.split(".")[1] if module.count(".") else module


def test_no_two_folders_import_each_other():
    edges: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for m, targets in GRAPH.items():
        for t in targets:
            if _area(m) != _area(t) and "hpcml" not in (_area(m), _area(t)):
                edges.setdefault((_area(m), _area(t)), []).append((m, t))
    both = {(a, b): (edges[a, b], edges[b, a]) for a, b in edges if a < b and (b, a) in edges}
    assert not both, f"folders that import each other: {both}"


TOP_LEVEL_LIMIT = 16  # front ends users type (hpcml.pack, hpcml.ddp, ...) and a few shared modules


def test_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_LEVEL_LIMIT, f"{len(top)} modules at the top of hpcml/: {top}"


def test_an_import_inside_a_function_says_why():
    """hpcml's own imports sit at the top of a module; one inside a function carries a
    comment saying why (start-up time, an optional extra such as matplotlib or MLflow)."""
    silent = []
    for m, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(node):
                own = (isinstance(n, ast.ImportFrom) and (n.module or "").startswith("hpcml") and not n.level) or \
                    (isinstance(n, ast.Import) and any(a.name.startswith("hpcml") for a in n.names))
                if own and "#" not in lines[n.lineno - 1] and "#" not in lines[n.lineno - 2]:
                    silent.append(f"{m}:{n.lineno}")
    assert not sorted(set(silent)), f"imports inside functions without a reason: {sorted(set(silent))}"


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


# Outside hpcml/plans nothing decides by a plan's name: a plan owns what depends on it (its
# record columns, how it reads the data, which report it asks the kind for) and says so
# through its class's hooks.
PLAN_HOME = PACKAGE / "plans"
# Columns a plan reserves that something else also writes, and why.
OWN_COLUMN_USES = {("drivers/spark_engine.py", "rows"): "the spark engine's one fit record counts its rows, "
                                                         "as a shard's record does"}


def _plan_names() -> tuple[set[str], set[str]]:
    """The registered plans' names, and the columns and task parameters they own that are not
    plan names themselves (cv's ``fold``, shards' ``n_shards``)."""
    from hpcml.plans import PLANS

    own = {c for plan in PLANS.values() for c in (*plan.records, *plan.parameters)}
    return set(PLANS), own - set(PLANS)


def _is_plan(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "plan") or (isinstance(node, ast.Attribute) and node.attr == "plan")


def _plan_name_of(node: ast.AST) -> bool:
    """``job.plan_kind``, ``spec.plan.kind``, ``plan.kind``: a plan's name."""
    return isinstance(node, ast.Attribute) and (node.attr == "plan_kind" or (node.attr == "kind" and _is_plan(node.value)))


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def plan_name_decisions(package: Path, names: set[str]) -> list[str]:
    """Every place outside ``plans/`` that decides by a plan's name: a comparison (or match) of
    a plan's name or with a plan's name, a dispatch table keyed by plan names, an attribute
    named after a plan (``spec.plan.sweep``), a task id or task folder of a plan (``fit/``)."""
    task_id = re.compile(rf"(^|/)({'|'.join(map(re.escape, sorted(names)))})(/|-\d{{6}})")
    found = []
    for path in sorted(package.rglob("*.py")):
        if (package / "plans") in path.parents:
            continue
        where = path.relative_to(package)
        for node in ast.walk(ast.parse(path.read_text())):
            hit = False
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                hit = any(_plan_name_of(o) for o in operands) or bool(set().union(*map(_strings, operands)) & names)
            elif isinstance(node, ast.Match):
                hit = _plan_name_of(node.subject) or any(_strings(c.pattern) & names for c in node.cases)
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict):
                hit = _plan_name_of(node.slice)
            elif isinstance(node, ast.Attribute):
                hit = node.attr in names and _is_plan(node.value)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                hit = bool(task_id.search(node.value))
            if hit:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def plan_column_uses(package: Path, own: set[str]) -> list[str]:
    """Every string outside ``plans/`` naming a column or task parameter a plan owns (a list
    of them kept beside the plan's own, ``params.get("fold")``)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if (package / "plans") in path.parents:
            continue
        where = path.relative_to(package)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in own and (str(where), node.value) not in OWN_COLUMN_USES:
                found.append(f"{where}:{node.lineno}: {node.value!r}")
    return found


def test_no_module_outside_plans_decides_by_plan_name():
    names, _ = _plan_names()
    found = plan_name_decisions(PACKAGE, names)
    assert not found, "decided by a plan's name outside hpcml/plans (ask the plan instead):\n" + "\n".join(found)


def test_no_module_outside_plans_lists_a_plans_columns():
    _, own = _plan_names()
    found = plan_column_uses(PACKAGE, own)
    assert not found, "a plan's own columns named outside hpcml/plans (Plan.records, Plan.parameters):\n" + \
        "\n".join(found)
