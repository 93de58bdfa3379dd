"""The layout holds: imports run one way (docs/architecture.md, section 1), no module imports
itself back through others, and every sub-package says what it owns and what it may import.

Every import counts, including those under ``TYPE_CHECKING`` and inside functions."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ("shared", "plugins", "functions")
LEAVES = frozenset(
    {
        "config",
        "errors",
        "redact",
        "logs",
        "ids",
        "domains",
        "clock",
        "metrics",
        "telemetry",
        "storage",
        "pool",
        "retry",
        "durable",
        "bodies",
    }
)
WIRING = frozenset({"runtime", "health", "invariants", "ops"})
DOMAINS = frozenset({"xact", "claimx"})
# What each part of shared/ may import from shared/, besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    "leaf": LEAVES,
    "state": LEAVES,
    "lake": LEAVES | {"state"},
    "transfer": LEAVES,
    "plugins": LEAVES,
    "domain": LEAVES | {"state", "lake", "transfer", "plugins"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def app_modules() -> dict[str, Path]:
    found = {module_name(p): p for pkg in APP_PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    found["function_app"] = ROOT / "function_app.py"
    return found


def imports_of(path: Path, name: str) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


MODULES = app_modules()
GRAPH: dict[str, set[str]] = {
    name: {target for target in imports_of(path, name) if target in MODULES and target != name}
    for name, path in MODULES.items()
}


def part_of(name: str) -> tuple[str, str]:
    """(kind, sub-package) of a module under shared/: a leaf, wiring, a domain or a sub-package."""
    first = name.split(".")[1] if name.count(".") else ""
    if first in LEAVES:
        return "leaf", first
    if first in WIRING:
        return "wiring", first
    if first in DOMAINS:
        return "domain", first
    return first, first


def test_nothing_in_shared_imports_the_outer_parts() -> None:
    outer = ("plugins", "functions", "local_host", "claimsflow", "function_app")
    offenders = [
        (name, target)
        for name, path in MODULES.items()
        if name.startswith("shared")
        for target in imports_of(path, name)
        if target.split(".")[0] in outer
    ]
    assert offenders == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("shared.")))
def test_shared_imports_run_one_way(name: str) -> None:
    kind, own = part_of(name)
    if kind == "wiring":
        return
    allowed = ALLOWED[kind] | {own}
    wrong = sorted(
        target for target in GRAPH[name] if target.startswith("shared.") and part_of(target)[1] not in allowed
    )
    assert wrong == [], f"{name} ({kind}) may import only {sorted(allowed)} of shared"


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert cycles == []


def test_the_checks_see_real_edges() -> None:
    """Guards the checks themselves: they would be vacuous if the graph were empty."""
    assert "shared.lake.staging" in GRAPH["shared.lake.lakehouse"]
    assert "shared.state.sharding" in GRAPH["shared.lake.staging"]
    assert "shared.xact.tables" in GRAPH["shared.runtime"]
    assert part_of("shared.xact.ingest") == ("domain", "xact")


@pytest.mark.parametrize(
    "package", sorted(p.parent for p in (ROOT / "shared").rglob("__init__.py") if p.parent != ROOT / "shared")
)
def test_every_sub_package_says_what_it_owns_and_may_import(package: Path) -> None:
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
    assert docstring, f"{package.name} has no docstring"
    assert "May import" in docstring, f"{package.name} does not say what it may import"


POLARS_DELTA_READERS = re.compile(r"\b(?:pl|polars)\.(?:read_delta|scan_delta)\(")


def test_delta_tables_are_read_through_the_one_reader() -> None:
    """polars' own Delta reader leaves a thread calling getenv that a later setenv can crash
    (shared/lake/reader.py says how); everything reads through ``shared.lake.reader`` instead."""
    sources = [
        path
        for folder in ("shared", "plugins", "functions", "local_host", "claimsflow", "tests", "bench")
        for path in (ROOT / folder).rglob("*.py")
    ]
    assert len(sources) > 100  # the walk found the tree
    offenders = [str(p.relative_to(ROOT)) for p in sources if POLARS_DELTA_READERS.search(p.read_text())]
    assert offenders == [], offenders
