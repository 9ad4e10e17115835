"""The house (docs/architecture.md): who may import whom, no cycles, no first-party imports hidden in functions,
and the vocabulary of billable units spelled once, in ``common.contracts``.

Imports are read from the source with ``ast`` (imports inside functions included, ``if TYPE_CHECKING:`` blocks
excluded), so a lazy import cannot hide an edge.
"""

from __future__ import annotations

import ast
import dataclasses
from collections import defaultdict
from pathlib import Path

import pytest

from common import contracts
from dashboards import focus, quicksight
from ingest.providers.base import Usage
from pricing_catalog import model as catalog_model
from transforms import prices, report

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "pricing_catalog", "sql", "ingest", "transforms", "finance", "dashboards", "modelmeter",
            "infra")

#: What each package may import (besides itself): the ground floor for everyone, the domain packages in one
#: direction, the roof (``modelmeter``) anything, infra only the ground floor.
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "pricing_catalog": {"common"},
    "sql": {"common"},
    "ingest": {"common", "pricing_catalog"},
    # transforms.lambda_handler refreshes reference/teams from the gateway's DynamoDB registry;
    # transforms.spend_correction sets the gateway's spend counters from the curated tables after a run
    "transforms": {"common", "pricing_catalog", "sql", "ingest"},
    "finance": {"common", "pricing_catalog", "sql"},
    "dashboards": {"common", "sql", "transforms", "pricing_catalog", "finance"},
    "modelmeter": {"common", "pricing_catalog", "sql", "ingest", "transforms", "finance", "dashboards"},
    "infra": {"common"},
}

#: First-party imports allowed inside a function: (module, imported module) → why. Keep it short (at most 5).
ALLOWED_INNER: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """``(imported first-party module, inside a function)`` of every import statement of ``module``."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in
                   ast.unparse(node.test) for n in ast.walk(node)}
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for target in {t for t in map(_resolve, names) if t and t != module}:
            out.append((target, id(node) in in_function))
    return out


GRAPH: dict[str, set[str]] = defaultdict(set)
INNER: list[tuple[str, str]] = []
for _module, _path in MODULES.items():
    for _target, _inner in _imports(_module, _path):
        GRAPH[_module].add(_target)
        if _inner:
            INNER.append((_module, _target))


def _cycles(graph: dict[str, set[str]], nodes: list[str]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_every_import_follows_the_layers():
    wrong = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
                   if t.split(".")[0] != m.split(".")[0] and t.split(".")[0] not in ALLOWED[m.split(".")[0]])
    assert wrong == [], "imports against the layers (docs/architecture.md):\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules_or_packages():
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        packages[module.split(".")[0]] |= {t.split(".")[0] for t in targets} - {module.split(".")[0]}
    assert _cycles(packages, list(PACKAGES)) == []
    assert _cycles(GRAPH, sorted(MODULES)) == []


def test_no_first_party_import_hides_in_a_function():
    hidden = sorted(set(INNER) - set(ALLOWED_INNER))
    assert hidden == [], "move these imports to the top of their module:\n" + "\n".join(f"{m}: {t}" for m, t in hidden)
    assert len(ALLOWED_INNER) <= 5


def test_the_checks_see_an_import_inside_a_function(tmp_path):
    # GIVEN a module whose only import of another package hides in a function (the way the old cycles did)
    path = tmp_path / "sample.py"
    path.write_text("def f():\n    from modelmeter.cli import main\n    return main\n")
    # THEN the reader finds it, and knows it is inside a function
    assert ("modelmeter.cli", True) in _imports("sql.sample", path)


# --- the vocabulary: every list of billable units derives from common.contracts.UNITS -------------------------

def test_the_billable_units_are_the_event_count_fields_in_order():
    counts = [f.name for f in contracts.FIELDS if f.name in contracts.UNIT_OF_COUNT]
    assert tuple(counts) == contracts.COUNT_FIELDS == tuple(u.count_field for u in contracts.UNITS)
    assert len({u.dimension for u in contracts.UNITS}) == len({u.cost_column for u in contracts.UNITS}) == \
        len(contracts.UNITS)


@pytest.mark.parametrize(("what", "derived"), [
    ("providers.base.Usage", tuple(f.name for f in dataclasses.fields(Usage) if f.name in contracts.UNIT_OF_COUNT)),
    ("transforms.prices.PRICE_SCHEMA", tuple(n.removeprefix("unit_") for n in prices.PRICE_SCHEMA.names
                                             if n.startswith("unit_"))),
    ("dashboards.focus.DIMENSIONS", tuple(focus.DIMENSIONS)),
    ("transforms.report.COLUMNS", tuple(c for c in report.COLUMNS if c in contracts.UNIT_OF_COUNT)),
    ("dashboards.quicksight usage_local", tuple(c for c, _ in quicksight.VIEW_COLUMNS["usage_local"]
                                                if c in contracts.UNIT_OF_COUNT)),
])
def test_every_list_of_count_fields_is_the_contracts(what, derived):
    # providers.base.Usage stays a plain dataclass (typed, on the hot path): this pins its fields to the units
    assert sorted(derived) == sorted(contracts.COUNT_FIELDS), what


def test_cost_columns_and_dimensions_are_the_contracts():
    assert tuple(c for c in report.COLUMNS if c.endswith("_cost")) == tuple(
        sorted(contracts.COST_COLUMNS, key=report.COLUMNS.index))
    assert {c for c, _ in quicksight.VIEW_COLUMNS["usage_local"] if c.endswith("_cost")} == set(contracts.COST_COLUMNS)
    assert set(catalog_model.MAX_UNIT_PRICE_USD) == set(contracts.DIMENSIONS)
    assert [c.name for c in contracts.USAGE_COST if c.kind == "money"] == list(contracts.COST_COLUMNS)
