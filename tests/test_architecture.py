"""The architecture beyond the import-linter contracts (pyproject.toml, run by `make lint`): no import
cycle among single modules anywhere in geo_service, and at most MAX_CHAIN modules on any import chain
from the command line down to the settings.

Every import counts, those inside functions too: grimp sees them, and a lazy import is a dependency
all the same (the CLI imports the web app and the renderers inside its commands so that the other
commands start fast, yet `geo-service serve` needs them). Imports under `if TYPE_CHECKING:` count
as well, as they do for lint-imports. Needs no database.
"""

from __future__ import annotations

import grimp
import pytest

TOP, BOTTOM = "geo_service.cli", "geo_service.settings"
MAX_CHAIN = 8  # modules on the chain, both ends included ("at most 8 layers from cli.py to settings.py")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    built = grimp.build_graph("geo_service", cache_dir=None)
    assert {TOP, BOTTOM} <= built.modules
    return built


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One cycle (first module repeated at the end) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm; the graph has some fifty modules
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or graph.direct_import_exists(importer=module, imported=module):
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    cycles = []
    for group in groups:
        start = group[0]
        step = next(m for m in sorted(graph.find_modules_directly_imported_by(start)) if m in group)
        back = graph.find_shortest_chain(importer=step, imported=start) or (step, start)
        cycles.append([start, *back])
    return cycles


def _longest_chain(graph: grimp.ImportGraph, top: str, bottom: str) -> list[str] | None:
    """The longest import chain from `top` down to `bottom` (an acyclic graph), or None."""
    memo: dict[str, list[str] | None] = {}

    def longest(module: str) -> list[str] | None:
        if module == bottom:
            return [bottom]
        if module not in memo:
            tails = [tail for imported in sorted(graph.find_modules_directly_imported_by(module))
                     if (tail := longest(imported)) is not None]
            memo[module] = [module, *max(tails, key=len)] if tails else None
        return memo[module]

    return longest(top)


def test_no_import_cycle(graph):
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_cli_to_settings_is_at_most_8_modules(graph):
    if _cycles(graph):
        pytest.skip("the graph has cycles (test_no_import_cycle names them): no longest chain")
    chain = _longest_chain(graph, TOP, BOTTOM)
    assert chain is not None, f"{TOP} does not reach {BOTTOM}"
    assert len(chain) <= MAX_CHAIN, (
        f"the longest import chain from {TOP} to {BOTTOM} has {len(chain)} modules "
        f"(at most {MAX_CHAIN}): " + " -> ".join(chain))


def test_the_checks_find_what_they_look_for():
    """The helpers on a small made-up graph: a cycle is named, the longest chain is found."""
    made = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.top", "p.a"),
                               ("p.top", "p.x"), ("p.x", "p.y"), ("p.y", "p.z"), ("p.z", "p.end"),
                               ("p.top", "p.end")]:
        made.add_import(importer=importer, imported=imported)
    assert _cycles(made) == [["p.a", "p.b", "p.c", "p.a"]]
    made.remove_import(importer="p.c", imported="p.a")
    assert _cycles(made) == []
    assert _longest_chain(made, "p.top", "p.end") == ["p.top", "p.x", "p.y", "p.z", "p.end"]
    assert _longest_chain(made, "p.top", "p.nowhere") is None
