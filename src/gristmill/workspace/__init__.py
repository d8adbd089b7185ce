"""The service layer shared by the CLI, the HTTP API and the UI."""

from gristmill.workspace.core import RunOutcome, Workspace

__all__ = ["RunOutcome", "Workspace"]
