"""What every kind of source shares: a raw table of its own name, a contract, state.

A source is the only step that reads outside the lake. Each kind says what it reads and
keeps a state of how far it got (the files it ingested, a watermark); the state rides in
the Delta commit of the rows it describes (the materialization record), so a crash between
the commit and the catalog never reads anything twice. ``discover`` (in
``planning.discovery``) looks at the outside world before planning, so the planner itself
stays pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from gristmill.definitions.contracts import Contract
from gristmill.definitions.objects import Definition, StepKind


@dataclass(frozen=True)
class Source(Definition):
    """External data ingested into a raw table of the same name, through its contract."""

    contract: Contract

    @property
    def kind(self) -> StepKind:
        return StepKind.INGEST

    @property
    def source_kind(self) -> str:
        """``files``, ``database``, …: shown by ``gristmill sources``."""
        raise NotImplementedError
