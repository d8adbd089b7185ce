"""The service layer shared by the CLI, the HTTP API and the UI."""

from gristmill.service.workspace import RunOutcome, Workspace

__all__ = ["RunOutcome", "Workspace"]
