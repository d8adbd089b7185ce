"""The service layer shared by the CLI, the HTTP API and the UI.

``Workspace`` is imported on first use: the CLI's ``--help`` and the light modules of this
package (``shapes``, ``cards``) do not pay for the engines and the catalog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gristmill.workspace.core import RunOutcome, Workspace

__all__ = ["RunOutcome", "Workspace"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gristmill.workspace import core

        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
