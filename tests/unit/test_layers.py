"""The core's import graph: no cycle, and no layer importing one above it.

The graph is read from the source with `ast`: module-level ``import`` and ``from ...
import`` statements, including those under ``try`` and plain ``if``, but not those inside
functions (imported when called, on purpose) or under ``if TYPE_CHECKING:`` (never run).
Importing ``imgdex.a.b`` also runs the package ``imgdex.a`` first, so that counts as an
edge too (except from inside ``imgdex.a``, and except the root ``imgdex`` package, which
every module is in). The layers are those of docs/architecture.md, lowest first.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import imgdex

ROOT = Path(imgdex.__file__).parent
PACKAGE = ROOT.name

# Lowest first; a module belongs to the longest name here that is it or holds it (the
# root package `imgdex` only by its exact name). Every module must belong to one, so a
# new module is placed on purpose. Keep in step with docs/architecture.md's Layers.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "shared ground",
        [
            "imgdex.pools",
            "imgdex.ids",
            "imgdex.files",
            "imgdex.config",
            "imgdex.errors",
            "imgdex.schemas",
            "imgdex.filters",
            "imgdex.geo",
            "imgdex.tags",
            "imgdex.devices",
            "imgdex.memory",
            "imgdex.budget",
            "imgdex.datalock",
            "imgdex.hub",
            "imgdex.staging",
            "imgdex.imaging",
            "imgdex.metadata",
            "imgdex.providers",
            "imgdex.hookspecs",
            "imgdex.server",
        ],
    ),
    (
        "where data lives",
        ["imgdex.catalog", "imgdex.blobs", "imgdex.index", "imgdex.photos", "imgdex.backfill"],
    ),
    ("models, services, plugins", ["imgdex", "imgdex.models", "imgdex.services", "imgdex.plugins"]),
    ("which models serve", ["imgdex.registry", "imgdex.upgrades"]),
    ("reports", ["imgdex.reports", "imgdex.status", "imgdex.serverquery"]),
    (
        "operations",
        [
            "imgdex.ops",
            "imgdex.filter_sets",
            "imgdex.search_filters",
            "imgdex.keyword_index",
            "imgdex.organise",
            "imgdex.albums",
        ],
    ),
    ("background", ["imgdex.jobs"]),
    ("composition root", ["imgdex.runtime"]),
    ("who may", ["imgdex.auth"]),
    (
        "who asks",
        [
            "imgdex.api",
            "imgdex.web",
            "imgdex.cli",
            "imgdex.cli_models",
            "imgdex.importer",
            "imgdex.testing",
            # The model-service app (`imgdex serve-model`) is an app like api/, built on
            # its error handlers and request class; the client side of services/ is not.
            "imgdex.services.server",
            "imgdex.services.served",
        ],
    ),
]


def module_files(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is a package)}`` for every module under `root`."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(name: str, is_package: bool, body: Iterable[ast.stmt], known: set[str]) -> set[str]:
    """The core modules a module's top-level statements import."""
    out: set[str] = set()
    for stmt in body:
        if isinstance(stmt, ast.Import):
            out.update(a.name for a in stmt.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (stmt.level - 1)]
                source = ".".join([*base, *([stmt.module] if stmt.module else [])])
            else:
                source = stmt.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in stmt.names:
                sub = f"{source}.{alias.name}"  # `from pkg import module`
                out.add(sub if sub in known else source)
        elif isinstance(stmt, ast.If):
            if not _is_type_checking(stmt.test):
                out |= _imported(name, is_package, stmt.body, known)
            out |= _imported(name, is_package, stmt.orelse, known)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody):
                out |= _imported(name, is_package, block, known)
            for handler in stmt.handlers:
                out |= _imported(name, is_package, handler.body, known)
        elif isinstance(stmt, ast.With):
            out |= _imported(name, is_package, stmt.body, known)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: modules it imports at import time}`` for the package at `root`."""
    files = module_files(root)
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = {t for t in _imported(name, is_package, tree.body, known) if t in known}
        for target in list(targets):
            parts = target.split(".")
            for i in range(2, len(parts)):  # the packages that run first (not the root)
                package = ".".join(parts[:i])
                if package in known and not (name == package or name.startswith(package + ".")):
                    targets.add(package)
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
                on_path.add(child)
    return None


def layer_of(module: str) -> int | None:
    """The index in `LAYERS` of `module`'s layer, or None if it has none."""
    best: tuple[int, int] | None = None  # (length of the name matched, layer)
    for rank, (_, names) in enumerate(LAYERS):
        for name in names:
            holds = module == name or (name != PACKAGE and module.startswith(name + "."))
            if holds and (best is None or len(name) > best[0]):
                best = (len(name), rank)
    return None if best is None else best[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_is_read(graph: dict[str, set[str]]) -> None:
    # Guards the reader itself: a parser that found nothing would pass every check below.
    assert "imgdex.ops.search" in graph["imgdex.runtime"]
    assert "imgdex.ops.fusion" in graph["imgdex.ops.search"]  # `from imgdex.ops.fusion import`
    assert "imgdex.api" in graph["imgdex.services.server"]  # the package runs first
    assert "imgdex.index" not in graph["imgdex.catalog"]


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_reports_the_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    missing = sorted(m for m in graph if layer_of(m) is None)
    assert not missing, (
        f"place these modules in a layer (here and in docs/architecture.md): {missing}"
    )


def test_no_layer_imports_one_above_it(graph: dict[str, set[str]]) -> None:
    breaches = []
    for module, targets in sorted(graph.items()):
        low = layer_of(module)
        for target in sorted(targets):
            high = layer_of(target)
            if low is not None and high is not None and high > low:
                breaches.append(f"{module} ({LAYERS[low][0]}) imports {target} ({LAYERS[high][0]})")
    assert not breaches, "\n".join(breaches)


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("imgdex.catalog", "imgdex.api"),
        ("imgdex.blobs", "imgdex.ops"),
        ("imgdex.index", "imgdex.jobs"),
        ("imgdex.catalog", "imgdex.runtime"),
        ("imgdex.ops", "imgdex.api"),
        ("imgdex.ops", "imgdex.web"),
        ("imgdex.ops", "imgdex.jobs"),
        ("imgdex.registry", "imgdex.ops"),
        ("imgdex.services.client", "imgdex.api"),
    ],
)
def test_named_layers_are_ordered(lower: str, upper: str) -> None:
    # The rules docs/architecture.md spells out, checked against the table above.
    low, high = layer_of(lower), layer_of(upper)
    assert low is not None and high is not None and low < high
