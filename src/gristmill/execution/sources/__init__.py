"""Sources by kind, on the execution side: ``discover`` looks outside before planning (the
files a glob matches, a database's newest cursor value), a kind's ``extract`` reads its
increment into the step's session and commits it with its state."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gristmill.definitions.sources import (
    DatabaseSource,
    FileSource,
    IntakeSource,
    Source,
    StreamSource,
)
from gristmill.errors import GristmillError
from gristmill.planning.planner import SourceOffer

if TYPE_CHECKING:
    from gristmill.definitions.graph import Graph
    from gristmill.storage.catalog import CatalogReader


def discover(
    graph: Graph, names: list[str], root: Path, state: CatalogReader
) -> Mapping[str, SourceOffer]:
    """What each source among ``names`` offers now. A source that cannot be looked at
    (its server is down) offers a run that will say why: the plan never fails for it."""
    offers: dict[str, SourceOffer] = {}
    for name in names:
        node = graph.nodes[name]
        if not isinstance(node, Source):
            continue
        if isinstance(node, FileSource):
            from gristmill.execution.sources.files import list_files

            offers[name] = SourceOffer(files=tuple(list_files(root, node)))
        elif isinstance(node, DatabaseSource):
            from gristmill.execution.sources import database

            try:
                offers[name] = database.discover(node, state.latest(name))
            except GristmillError as exc:
                offers[name] = SourceOffer(news=f"cannot look for new rows: {exc.message}")
        elif isinstance(node, IntakeSource):
            from gristmill.execution.sources import intake

            offers[name] = intake.discover(node, state.latest(name), root / ".gristmill")
        elif isinstance(node, StreamSource):
            from gristmill.execution.sources import stream

            try:
                offers[name] = stream.discover(node, state.latest(name))
            except GristmillError as exc:
                offers[name] = SourceOffer(news=f"cannot look for new messages: {exc.message}")
    return offers
