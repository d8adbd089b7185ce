"""The typed, closed model of ``gristmill.toml``.

Unknown keys are load-time errors that name the file and line, so a typo such as
``paralelism = 4`` is never silently ignored.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gristmill.errors import ConfigError, Location

CONFIG_FILE = "gristmill.toml"
DEFAULT_MODULE = "pipeline.py"
_MEMORY = re.compile(
    r"^\s*\d+(\.\d+)?\s*(b|bytes?|kb|mb|gb|tb|kib|mib|gib|tib)\s*$|^\s*(\d{1,2}|100)\s*%\s*$",
    re.IGNORECASE,
)
"""Sizes DuckDB's ``memory_limit`` takes: a number and a unit, or a share of the RAM."""
_UNITS = {
    "b": 1, "byte": 1, "bytes": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
MIN_MEMORY, MAX_MEMORY = 64e6, 1e15
"""Below 64 MB DuckDB cannot read a file; far above a petabyte it refuses the setting."""


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSettings(_Closed):
    """Settings of the Spark engine (steps pinned with ``engine="spark"``)."""

    master: str = "local[2]"
    """``local[N]``, ``spark://host:7077``, ``yarn``, ``k8s://…``: any Spark master URL."""
    conf: dict[str, str] = {}
    """More Spark settings (``spark.executor.memory`` and so on)."""


class DuckDBSettings(_Closed):
    """Settings of the embedded DuckDB engine."""

    memory_limit: str = "4GB"
    """DuckDB's ``memory_limit``; larger intermediates spill to ``temp_directory``."""
    threads: Annotated[int, Field(ge=1)] | None = None
    """Worker threads; defaults to the number of cores."""
    temp_directory: str | None = None
    """Where DuckDB spills; defaults to ``.gristmill/tmp`` in the project."""

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, value: str) -> str:
        match = _MEMORY.match(value)
        if not match:
            raise ValueError(
                f"{value!r} is not a size: write a number and a unit (512MB, 8GB, 1.5GiB) "
                "or a share of the machine's memory (80%)"
            )
        if match.group(2):  # a number and a unit: within what DuckDB can work with
            number = re.match(r"\s*(\d+(?:\.\d+)?)", value)
            assert number is not None  # _MEMORY matched
            size = float(number.group(1)) * _UNITS[match.group(2).lower()]
            if not MIN_MEMORY <= size <= MAX_MEMORY:
                raise ValueError(
                    f"{value!r} is outside what DuckDB can run with: give 64MB to 1PB "
                    "(or a share of the machine's memory, e.g. 80%)"
                )
        return value


def size_bytes(value: str) -> float:
    """``20GB``, ``512MB``, ``1.5GiB`` in bytes (ValueError for anything else)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*", value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"{value!r} is not a size: write a number and a unit (500MB, 20GB, 1TiB)")
    return float(match.group(1)) * _UNITS[unit]


class ServeSettings(_Closed):
    """Settings of ``gristmill serve`` (command-line options override the limits)."""

    metrics: Literal["key", "public"] = "key"
    """``/metrics``: ``key`` needs a viewer, analyst, engineer or admin key; ``public``
    answers anyone."""
    openapi: Literal["key", "public"] = "key"
    """``/openapi.json``: ``key`` needs any valid key; ``public`` answers anyone."""
    max_connections: Annotated[int, Field(ge=1, le=100_000)] = 1000
    """Connections a worker holds; one more is answered 503 with Retry-After."""
    request_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """Seconds a request has to arrive whole; a stalled one is answered 408 and closed."""
    reload_every: Annotated[float, Field(ge=0, le=3600)] = 0.5
    """Seconds between checks for a moved alias (0: never)."""
    max_body_mb: Annotated[float, Field(gt=0, le=1024)] = 1.0
    """The largest request body, in MB."""


class RunSettings(_Closed):
    """``[runs]``: how many runs may run at once in the catalog."""

    max_concurrent: Annotated[int, Field(ge=1, le=256)] = 1
    """Runs at once (across every scheduler and worker of the catalog). Runs that may write
    the same tables never run at once, whatever this says."""
    tag_limits: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")],
                     Annotated[int, Field(ge=1, le=256)]] = {}  # fmt: skip
    """Runs at once per tag, e.g. ``{ warehouse = 1 }``: runs tagged ``warehouse``
    (``gm.schedule(..., tags=["warehouse"])``, ``gristmill run --tag warehouse``)."""


class PiiSettings(_Closed):
    """``[pii]``: where the key of personal-data pseudonyms comes from (never the key)."""

    key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "GRISTMILL_PII_KEY"
    """Environment variable holding the key."""
    key_file: str | None = None
    """Or a file holding it (relative to the project), read when the variable is not set."""


ROLE_NAMES = ("viewer", "analyst", "engineer", "admin", "service", "ingest")
Role = Literal["viewer", "analyst", "engineer", "admin", "service", "ingest"]
Mask = Literal["null", "hash", "last4", "clear"]


class AccessSettings(_Closed):
    """``[access]``: who the command line acts as, and how personal-data columns read.

    Without ``users``, every OS user of the project folder acts as ``admin`` (a laptop).
    Naming users restricts the command line: an unnamed user gets ``default_role``."""

    users: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")], Role] = {}
    """OS user name -> role, e.g. ``{ alice = "admin", bob = "analyst" }``."""
    default_role: Role | None = None
    """The role of an OS user not in ``users`` (default: ``viewer`` once ``users`` names
    anyone, else ``admin``)."""
    masks: dict[Role, Mask] = {}
    """How columns tagged as personal data read, per role (merged over the defaults:
    viewer ``null``, analyst ``hash``, engineer and admin ``clear``, service ``clear``,
    ingest ``null``)."""
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12
    """How long a UI login lasts."""
    query_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    """The most rows the SQL page and the API's query return."""
    query_seconds: Annotated[float, Field(gt=0, le=3600)] = 30
    """The longest a query of the SQL page may run before it is interrupted."""
    query_mb: Annotated[int, Field(ge=1, le=65536)] = 100
    """The largest result of the SQL page, in MB (Arrow's size in memory)."""
    query_memory: str = "1GB"
    """DuckDB's memory limit for one query of the SQL page."""
    query_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    """Queries of the SQL page at once per server process (more wait, then get 503): with
    ``query_memory`` each, the page takes at most their product of memory."""


class ProjectConfig(_Closed):
    """The contents of ``gristmill.toml``."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")]
    """Project name, shown in the CLI and UI."""
    lake: str = "lake"
    """Folder (relative to the project) or URI holding the Delta tables."""
    catalog: str = "sqlite:///.gristmill/catalog.db"
    """SQLAlchemy URL of the catalog; relative SQLite paths are inside the project."""
    artifacts: str = ".gristmill/artifacts"
    """Folder (relative to the project) of model files, stored by their SHA-256."""
    online_store: str = "sqlite:///.gristmill/online.db"
    """Where serving reads features: ``sqlite:///path`` or ``redis://host:port/db``."""
    engine: Literal["auto", "duckdb", "spark"] = "auto"
    """Engine that runs SQL steps: ``auto`` picks per step by the size of its inputs (see
    ``auto_threshold``); ``duckdb`` or ``spark`` puts every SQL step there."""
    auto_threshold: str = "20GB"
    """With ``engine = "auto"``: a SQL step whose input versions add up to this much runs
    on Spark (when Spark can run it the same), a smaller one on DuckDB."""
    parallelism: Annotated[int, Field(ge=1, le=64)] = 2
    """How many independent steps may run at once."""
    modules: list[str] | None = None
    """Python files (relative to the project) that define sources, tables, models, services
    and monitors; only these are imported. Absent: ``pipeline.py`` if there is one."""
    sql: str = "sql"
    """Folder whose ``*.sql`` files are SQL steps named by their file name."""
    duckdb: DuckDBSettings = DuckDBSettings()
    spark: SparkSettings = SparkSettings()

    @field_validator("lake", "artifacts")
    @classmethod
    def _storage(cls, value: str, info: Any) -> str:
        from gristmill.definitions.urls import check_storage_url

        problem = check_storage_url(value, info.field_name)
        if problem is not None:
            raise ValueError(f"{problem[0]} ({problem[1]})")
        return value

    @field_validator("auto_threshold")
    @classmethod
    def _threshold(cls, value: str) -> str:
        size_bytes(value)
        return value

    serve: ServeSettings = ServeSettings()
    runs: RunSettings = RunSettings()
    pii: PiiSettings = PiiSettings()
    access: AccessSettings = AccessSettings()


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of the key at ``loc`` (tomllib keeps no positions)."""
    lines = text.splitlines()
    section_start = 0
    if len(loc) > 1 and isinstance(loc[0], str):
        header = re.compile(rf"^\s*\[\s*{re.escape(loc[0])}\s*\]")
        for i, line in enumerate(lines):
            if header.match(line):
                section_start = i
                break
    # the innermost key on a line of its own; a key inside an inline table
    # (``users = { bob = "god" }``) is found by its parent's line
    for key in [str(k) for k in reversed(loc[1:] if len(loc) > 1 else loc)]:
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(section_start, len(lines)):
            if pattern.match(lines[i]):
                return i + 1
    return None


def load_config(project_dir: Path) -> ProjectConfig:
    """Read and validate ``gristmill.toml`` in ``project_dir``."""
    path = project_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read {CONFIG_FILE}: {exc.strerror}", location=Location(path)
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's TOMLDecodeError keeps the position only in its message.
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        raise ConfigError(
            f"malformed TOML: {re.sub(r' [(]at line.*', '', str(exc))}",
            location=Location(path, int(match.group(1)) if match else None),
            hint="fix the syntax at that line (strings need quotes, tables [brackets])",
        ) from None
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        key = ".".join(str(p) for p in loc)
        if first["type"] == "extra_forbidden":
            valid = _valid_keys(loc)
            raise ConfigError(
                f"unknown key {key!r}",
                location=Location(path, _line_of(text, loc)),
                hint=f"valid keys here: {', '.join(valid)}",
            ) from None
        if first["type"] == "missing":
            raise ConfigError(f"missing required key {key!r}", location=Location(path)) from None
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(
            f"invalid value for {key!r}: {message}",
            location=Location(path, _line_of(text, loc)),
        ) from None


def _valid_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = ProjectConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            break
        if issubclass(field.annotation, BaseModel):
            model = field.annotation
    return sorted(model.model_fields)
