"""Load a project folder into a ``Project``: its config and its ``Graph``."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

from gristmill.definitions.config import CONFIG_FILE, DEFAULT_MODULE, ProjectConfig, load_config
from gristmill.definitions.freshness import Freshness
from gristmill.definitions.graph import Graph
from gristmill.definitions.monitors import Monitor, bind
from gristmill.definitions.objects import Definition, Table, check_name
from gristmill.definitions.schedules import Schedule
from gristmill.definitions.sensors import Sensor
from gristmill.definitions.services import Service
from gristmill.definitions.sql import parse_sql, use_cache
from gristmill.errors import DefinitionError, GraphError, Location, ProjectNotFoundError


@dataclass(frozen=True)
class Project:
    """A loaded project: where it lives, its settings, its graph and its services."""

    root: Path
    config: ProjectConfig
    graph: Graph
    services: Mapping[str, Service] = field(default_factory=dict)
    monitors: Mapping[str, Monitor] = field(default_factory=dict)
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    sensors: Mapping[str, Sensor] = field(default_factory=dict)
    freshness: Mapping[str, Freshness] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name


def find_root(start: Path) -> Path:
    """The folder holding ``gristmill.toml``: ``start`` or its nearest parent."""
    start = start.resolve()
    if not start.is_dir():
        what = "is a file" if start.exists() else "does not exist"
        raise ProjectNotFoundError(
            f"the project folder {start} {what}",
            hint="pass the folder that holds gristmill.toml (or one inside it) to --project",
        )
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ProjectNotFoundError(
        f"no {CONFIG_FILE} in {start} or any parent folder",
        hint="cd into a project, pass --project DIR, or create one with `gristmill init NAME`",
    )


def load_project(start: Path) -> Project:
    root = find_root(start)
    config = load_config(root)
    use_cache(root / ".gristmill" / "cache" / "sql")
    nodes: dict[str, Definition] = {}
    services: dict[str, Definition] = {}
    monitors: dict[str, Definition] = {}
    schedules: dict[str, Definition] = {}
    sensors: dict[str, Definition] = {}
    freshness: dict[str, Definition] = {}
    for module_path in _module_paths(root, config):
        for definition in _definitions_in(_import(module_path, root)):
            if isinstance(definition, Service):
                _add(services, definition)
            elif isinstance(definition, Monitor):
                _add(monitors, definition)
            elif isinstance(definition, Schedule):
                _add(schedules, definition)
            elif isinstance(definition, Sensor):
                _add(sensors, definition)
            elif isinstance(definition, Freshness):
                _add(freshness, definition)
            else:
                _add(nodes, definition)
    _add_sql_files(root, config, nodes)
    graph = Graph(nodes=nodes)
    for service in services.values():
        service.validate(graph.nodes)
    bound: dict[str, Monitor] = {}
    for monitor in monitors.values():
        assert isinstance(monitor, Monitor)
        monitor.validate_refs(graph.nodes, services)  # type: ignore[arg-type]
        bound[monitor.name] = bind(monitor, services)  # type: ignore[arg-type]
    for trigger in (*schedules.values(), *sensors.values()):
        if isinstance(trigger, Sensor):
            trigger.validate_refs(graph.nodes, list(bound))
        else:
            assert isinstance(trigger, Schedule)
            trigger.validate_refs(graph.nodes)
    for check in freshness.values():
        assert isinstance(check, Freshness)
        check.validate_refs(graph.nodes)
    return Project(
        root=root,
        config=config,
        graph=graph,
        services=services,  # type: ignore[arg-type]
        monitors=bound,
        schedules=schedules,  # type: ignore[arg-type]
        sensors=sensors,  # type: ignore[arg-type]
        freshness=freshness,  # type: ignore[arg-type]
    )


def definition_files(project: Project) -> dict[str, int]:
    """Each file the project's definitions come from, with its modification time: what a
    long-running process (the scheduler) compares to know it must load them again."""
    config = project.config
    paths = [project.root / CONFIG_FILE]
    if config.modules is None:
        paths.append(project.root / DEFAULT_MODULE)
    else:
        paths += [project.root / m for m in config.modules]
    sql_dir = project.root / config.sql
    if sql_dir.is_dir():
        paths += sorted(sql_dir.glob("*.sql"))
    return {str(p): p.stat().st_mtime_ns if p.is_file() else -1 for p in paths}


def _module_paths(root: Path, config: ProjectConfig) -> list[Path]:
    """The modules ``gristmill.toml`` names, and no other file: importing a module runs
    it, so a helper script left in the folder must not run on every command."""
    if config.modules is None:
        default = root / DEFAULT_MODULE
        return [default] if default.is_file() else []
    paths = [root / m for m in config.modules]
    for path in paths:
        if not path.is_file():
            raise DefinitionError(
                f"module {path.name!r} listed in `modules` does not exist",
                location=Location(root / CONFIG_FILE),
            )
    return paths


def _import(path: Path, root: Path) -> ModuleType:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"_gristmill_project_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(root))
    try:
        spec.loader.exec_module(module)
    except DefinitionError:
        raise
    except Exception as exc:  # a user's module failed to import: report where
        frame = _last_frame_in(exc, path)
        raise DefinitionError(
            f"cannot load {path.name}: {type(exc).__name__}: {exc}",
            location=Location(path, frame),
        ) from exc
    finally:
        sys.path.remove(str(root))
    return module


def _last_frame_in(exc: BaseException, path: Path) -> int | None:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    return line


def _definitions_in(module: ModuleType) -> list[Definition]:
    found = [v for v in vars(module).values() if isinstance(v, Definition)]
    return sorted(found, key=lambda d: d.location.line or 0)


def _add(nodes: dict[str, Definition], definition: Definition) -> None:
    existing = nodes.get(definition.name)
    if existing is not None and existing is not definition:
        raise GraphError(
            f"{definition.name!r} is defined twice (first at {existing.location})",
            location=definition.location,
            hint="names are unique across sources and tables; rename one",
        )
    nodes[definition.name] = definition


def _add_sql_files(root: Path, config: ProjectConfig, nodes: dict[str, Definition]) -> None:
    sql_dir = root / config.sql
    files = {p.stem: p for p in sorted(sql_dir.glob("*.sql"))} if sql_dir.is_dir() else {}
    for name, path in files.items():
        check_name(name, Location(path))
        declared = nodes.get(name)
        if declared is not None and not (isinstance(declared, Table) and _is_bare(declared)):
            raise GraphError(
                f"{name!r} is defined twice: by {path.name} and at {declared.location}",
                location=Location(path, 1),
                hint="keep one; declare the table in Python without sql= to attach a contract",
            )
        text = path.read_text(encoding="utf-8")
        parsed = parse_sql(text, Location(path, 1))
        base = declared if isinstance(declared, Table) else None
        nodes[name] = _sql_table(name, parsed.text, path, parsed.references, base)
    for name, node in list(nodes.items()):
        if isinstance(node, Table) and _is_bare(node):
            if name not in files:
                raise GraphError(
                    f"table {name!r} has no SQL, no function and no file {config.sql}/{name}.sql",
                    location=node.location,
                    hint=f"pass sql=..., decorate a function, or create {config.sql}/{name}.sql",
                )
        elif isinstance(node, Table) and node.sql is not None and node.sql_path is None:
            parsed = parse_sql(node.sql, node.location)
            nodes[name] = replace(node, inputs=parsed.references)


def _is_bare(table: Table) -> bool:
    return table.sql is None and table.function is None


def _sql_table(
    name: str, text: str, path: Path, refs: tuple[str, ...], base: Table | None
) -> Table:
    from gristmill.definitions.contracts import Contract

    if base is None:
        return Table(
            name=name,
            location=Location(path, 1),
            description="",
            contract=Contract(),
            sql=text,
            sql_path=path,
            inputs=refs,
        )
    return replace(base, sql=text, sql_path=path, inputs=refs, location=Location(path, 1))
