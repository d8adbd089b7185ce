"""One exception tree for the whole package.

Domain code raises a specific subclass and hands it the data it needs to explain itself:
what went wrong, where (file and line when known) and what to do. The CLI and the HTTP
app each translate these in exactly one place; anything that is not a ``GristmillError``
is a bug and is shown with its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Location:
    """A place in a project file that an error points at."""

    path: Path
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else str(self.path)


class GristmillError(Exception):
    """Root of every error a user can cause and fix."""

    exit_code = 1
    category = "failed"
    """What kind of problem: ``invalid`` (fix the input), ``not_found``, ``conflict`` (the
    state forbids it now), ``forbidden``, ``unavailable`` (a server or lock; may pass) or
    ``failed`` (the work itself failed). The HTTP API maps it to a status code."""
    transient = False
    """Whether trying again later may succeed (an unreachable server, a lock): a scheduled
    run that failed only of transient errors is retried by its schedule's policy."""

    def __init__(self, message: str, *, location: Location | None = None, hint: str = "") -> None:
        self.message = message
        self.location = location
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        hint = f"\n  hint: {self.hint}" if self.hint else ""
        return f"{where}{self.message}{hint}"

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "location": str(self.location) if self.location else None,
            "hint": self.hint or None,
            "category": self.category,
            "transient": self.transient,
        }


class TransientError(GristmillError):
    """Raise it from a Python step when trying again later may succeed (``gm.TransientError``):
    a scheduled run that fails of it is retried by its schedule's ``retries``."""

    category = "unavailable"
    transient = True


def is_transient(exc: BaseException) -> bool:
    """Whether an exception a step raised may pass if tried again: Python's own connection
    and timeout errors, and a library's by its name (``requests``' ``ConnectionError``,
    ``httpx.ReadTimeout``, ...) or a ``gm.TransientError``."""
    if isinstance(exc, GristmillError):
        return exc.transient
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    names = [cls.__name__ for cls in type(exc).__mro__]
    return any("Timeout" in name or name.endswith("ConnectionError") for name in names)


class ProjectNotFoundError(GristmillError):
    """No gristmill.toml in the folder or its parents."""

    category = "not_found"
    exit_code = 2


class FolderNotEmptyError(GristmillError):
    """``init`` was asked to create a project where a file or a non-empty folder is."""

    category = "conflict"
    exit_code = 2


class ConfigError(GristmillError):
    """gristmill.toml is malformed or holds an unknown or invalid key."""

    category = "invalid"
    exit_code = 2


class DefinitionError(GristmillError):
    """A project module or SQL file defines something invalid."""

    category = "invalid"
    exit_code = 2


class GraphError(DefinitionError):
    """Cycles, unknown references or duplicate names in the project graph."""


class SelectionError(GristmillError):
    """A selection such as ``+name`` names nothing in the graph."""

    category = "invalid"
    exit_code = 2


class InvalidInputError(GristmillError):
    """A value given to a command or endpoint that it cannot use (a date, a key, a range)."""

    category = "invalid"
    exit_code = 2


class UnknownTableError(GristmillError):
    """A command names a table that the project does not define."""

    category = "not_found"
    exit_code = 2


class VersionNotFoundError(GristmillError):
    """A table version that was never committed."""

    category = "not_found"
    exit_code = 2


class UnknownRunError(GristmillError):
    """A command names a run id (or prefix) that matches no single run."""

    category = "not_found"
    exit_code = 2


class NotFoundError(GristmillError):
    """Something asked for does not exist (a run's log, ...)."""

    category = "not_found"
    exit_code = 2


class RunInProgressError(GristmillError):
    """Another run of this project is running (its owner's lease is live)."""

    category = "conflict"
    transient = True


class RunStateError(GristmillError):
    """A run cannot do what was asked in its state (cancel a run that already ended)."""

    category = "conflict"
    exit_code = 2


class NotMaterializedError(GristmillError):
    """A table exists in the project but has never been built."""

    category = "not_found"
    exit_code = 2


class SourceReadError(GristmillError):
    """A source file cannot be found or parsed, or a database refuses a source's query."""


class SourceUnavailableError(GristmillError):
    """A source's server cannot be reached now (refused, timed out): trying later may work."""

    category = "unavailable"
    transient = True


class EngineUnavailableError(GristmillError):
    """An engine cannot start (Spark without Java, a cluster that cannot be reached)."""

    category = "unavailable"


class SchemaChangeError(GristmillError):
    """A source's columns changed in a way a table cannot follow by itself."""

    category = "invalid"


class ContractViolation(GristmillError):
    """Too many rows broke a contract, or a table-level check failed."""

    category = "invalid"


class StepFailed(GristmillError):
    """The engine failed while running a step (SQL or Python error)."""


class StepCancelled(GristmillError):
    """A step stopped partway at a cancel request (a backfill between its batches)."""


class CatalogError(GristmillError):
    """The catalog cannot be opened or is newer than this release."""

    category = "unavailable"
    exit_code = 2


class LakeError(GristmillError):
    """A Delta table is missing, unreadable or was changed outside Gristmill."""


class MissingDataError(LakeError):
    """A committed table version whose data files were deleted or moved outside Gristmill."""

    category = "not_found"
    exit_code = 2


class UnsupportedPathError(GristmillError):
    """A folder whose path has characters the Delta Lake library cannot open."""

    category = "invalid"
    exit_code = 2


class OutputError(GristmillError):
    """A file a command was asked to write (``--out``) cannot be written."""

    category = "invalid"
    exit_code = 2


class UnknownNameError(GristmillError):
    """A registry lookup (engine, format, example) for a name that does not exist."""

    category = "not_found"
    exit_code = 2

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        super().__init__(
            f"unknown {kind} {name!r}",
            hint=f"valid {kind}s: {', '.join(sorted(valid))}",
        )


class MissingExtraError(GristmillError):
    """An optional library is needed but not installed."""

    category = "invalid"
    exit_code = 2

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"this needs the optional package {module!r}, which is not installed",
            hint=f"pip install 'gristmill[{extra}]'",
        )


class RunFailed(GristmillError):
    """A run finished with failed or blocked steps (details were reported per step)."""


class UnknownModelError(GristmillError):
    """A model name, version or alias that the project or registry does not have."""

    category = "not_found"
    exit_code = 2


class GateRefused(GristmillError):
    """A promotion was refused because one or more of the model's gates failed."""

    category = "conflict"
    exit_code = 1


class ArtifactError(GristmillError):
    """A stored artifact is missing, or its bytes do not match its SHA-256 digest."""


class TrainingFailed(GristmillError):
    """Training could not run on the data it was given (empty split, one class, ...)."""


class ScoringError(GristmillError):
    """A table cannot be scored by a model version (it lacks the model's features)."""

    category = "invalid"
    exit_code = 2


class OnlineStoreError(GristmillError):
    """The online store cannot be reached or written."""

    category = "unavailable"
    transient = True


class ServiceConfigError(GristmillError):
    """A service cannot be started: its model needs features nothing provides."""

    category = "invalid"
    exit_code = 2


class ServingInputError(GristmillError):
    """A prediction request is missing a field or has one of the wrong type (HTTP 422)."""

    category = "invalid"
    exit_code = 2


class EntityNotFound(GristmillError):
    """No online features for the requested entity, and the service has no defaults (404)."""

    category = "not_found"
    exit_code = 2


class UnknownServiceError(GristmillError):
    """A service name the project does not define (HTTP 404)."""

    category = "not_found"
    exit_code = 2


class BadRequest(GristmillError):
    """A request body that is not JSON, or not the shape an endpoint takes (HTTP 400)."""

    category = "invalid"
    exit_code = 2


class Unauthorized(GristmillError):
    """No API key, or an unknown or revoked one (HTTP 401)."""

    category = "forbidden"
    exit_code = 2

    def __init__(self, message: str, *, token_given: bool = False, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.token_given = token_given


class Forbidden(GristmillError):
    """A valid API key whose role may not do this (HTTP 403)."""

    category = "forbidden"
    exit_code = 2


class PayloadTooLarge(GristmillError):
    """A request body over the server's limit (HTTP 413)."""

    category = "invalid"
    exit_code = 2


class UnsupportedMediaType(GristmillError):
    """A request body in a content type an endpoint does not read (HTTP 415)."""

    category = "invalid"
    exit_code = 2


class PredictionLogError(GristmillError):
    """The prediction log cannot be written, so the prediction is not answered (HTTP 503)."""

    category = "unavailable"
    transient = True


class TooManyRequests(GristmillError):
    """A buffer is full for now (HTTP 429, with ``Retry-After``)."""

    category = "unavailable"
    transient = True

    def __init__(self, message: str, *, retry_after_s: int, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class IdempotencyConflict(GristmillError):
    """An Idempotency-Key sent again with a different body (HTTP 409)."""

    category = "conflict"
    exit_code = 2


class NoSuchRoute(GristmillError):
    """An HTTP path that the server does not answer (HTTP 404)."""

    category = "not_found"
    exit_code = 2


class MethodNotAllowed(GristmillError):
    """An HTTP method that a route does not take (HTTP 405, with ``Allow``)."""

    category = "invalid"
    exit_code = 2

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(
            f"{method} is not allowed here", hint=f"this route takes {', '.join(allowed)}"
        )
        self.allowed = allowed


class QueryError(GristmillError):
    """A query of the SQL page that is not one read-only SELECT over the project's tables,
    does not parse, fails, or runs past its time limit."""

    category = "invalid"
    exit_code = 2


class QueryBusyError(GristmillError):
    """The SQL page runs as many queries as it may at once; try again shortly."""

    category = "unavailable"
    transient = True
    exit_code = 2


class SavedQueryTaken(GristmillError):
    """A saved query's name belongs to someone else's query (only they or an admin may
    replace or delete it)."""

    category = "conflict"
    exit_code = 2
