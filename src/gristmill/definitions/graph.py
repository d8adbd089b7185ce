"""The project graph: definitions by name, their edges, order and selections."""

from __future__ import annotations

import difflib
import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from gristmill.definitions.objects import Definition, Table
from gristmill.definitions.sources import Source
from gristmill.errors import (
    DefinitionError,
    GraphError,
    Location,
    SelectionError,
    UnknownTableError,
)


@dataclass(frozen=True)
class Graph:
    """Every source and table of a project, checked for unknown names and cycles."""

    nodes: Mapping[str, Definition]

    def __post_init__(self) -> None:
        for node in self.nodes.values():
            for dep in node.dependencies:
                if dep not in self.nodes:
                    raise GraphError(
                        f"{node.name!r} reads {dep!r}, which no source or table defines",
                        location=node.location,
                        hint=_did_you_mean(dep, self.nodes),
                    )
        for node in self.nodes.values():
            node.validate(self.nodes)
        try:
            _ = self.order
        except graphlib.CycleError as exc:
            cycle = exc.args[1]
            first = self.nodes[cycle[0]]
            raise GraphError(
                f"cycle: {' -> '.join(cycle)}",
                location=first.location,
                hint="a table cannot (indirectly) read itself; break the cycle",
            ) from None

    @cached_property
    def order(self) -> tuple[str, ...]:
        sorter = graphlib.TopologicalSorter(
            {name: node.dependencies for name, node in sorted(self.nodes.items())}
        )
        return tuple(sorter.static_order())

    @cached_property
    def downstream(self) -> Mapping[str, tuple[str, ...]]:
        children: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for dep in node.dependencies:
                children[dep].append(node.name)
        return {k: tuple(sorted(v)) for k, v in children.items()}

    def get(self, name: str) -> Definition:
        try:
            return self.nodes[name]
        except KeyError:
            raise UnknownTableError(
                f"no table named {name!r} in this project",
                hint=_did_you_mean(name, self.nodes) or "`gristmill tables` lists them",
            ) from None

    def tables(self) -> list[Table]:
        return [n for n in self.nodes.values() if isinstance(n, Table)]

    def sources(self) -> list[Source]:
        return [n for n in self.nodes.values() if isinstance(n, Source)]

    def upstream_of(self, name: str) -> set[str]:
        return _closure(name, lambda n: self.nodes[n].dependencies)

    def downstream_of(self, name: str) -> set[str]:
        return _closure(name, lambda n: self.downstream[n])

    def select(self, selectors: Iterable[str]) -> tuple[str, ...]:
        """Names picked by ``name``, ``+name`` (with upstream), ``name+`` (with downstream)."""
        chosen: set[str] = set()
        any_selector = False
        for raw in selectors:
            for selector in raw.replace(",", " ").split():
                any_selector = True
                chosen |= self._select_one(selector)
        if not any_selector:
            return self.order
        return tuple(n for n in self.order if n in chosen)

    def _select_one(self, selector: str) -> set[str]:
        name = selector.strip("+")
        if not name:
            raise SelectionError(f"empty selection {selector!r}", hint="use name, +name or name+")
        if name not in self.nodes:
            raise SelectionError(
                f"selection {selector!r} names nothing in the project",
                hint=_did_you_mean(name, self.nodes) or "`gristmill tables` lists the names",
            )
        picked = {name}
        if selector.startswith("+"):
            picked |= self.upstream_of(name)
        if selector.endswith("+"):
            picked |= self.downstream_of(name)
        return picked


def selectors(select: str | Iterable[str], location: Location | None = None) -> tuple[str, ...]:
    """``"+a, b"`` or ``["+a", "b"]`` as ``("+a", "b")``."""
    raws = (select,) if isinstance(select, str) else select
    if not isinstance(raws, list | tuple) or not all(isinstance(r, str) for r in raws):
        raise DefinitionError(
            f"select is names as text, not {select!r}",
            location=location,
            hint='e.g. select="+churn" or select=["transactions+", "user_profile"]',
        )
    return tuple(s for raw in raws for s in raw.replace(",", " ").split())


def check_selection(
    owner: str, select: Iterable[str], nodes: Mapping[str, Definition], location: Location
) -> None:
    """A selection of a schedule or a sensor names something: else a load-time error at
    ``location``, named after its ``owner`` (``schedule 'nightly'``)."""
    try:
        Graph(nodes=dict(nodes)).select(select)
    except SelectionError as exc:
        raise GraphError(f"{owner}: {exc.message}", location=location, hint=exc.hint) from None


def _closure(start: str, step: object) -> set[str]:
    seen: set[str] = set()
    stack = list(step(start))  # type: ignore[operator]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(step(name))  # type: ignore[operator]
    return seen


def _did_you_mean(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=3)
    return f"did you mean {', '.join(repr(c) for c in close)}?" if close else ""
