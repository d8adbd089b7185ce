"""Creating a project from an example template with generated data."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from gristmill.errors import FolderNotEmptyError, OutputError, UnknownNameError
from gristmill.workspace.live import Servers

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = ("churn",)


def init_project(
    directory: Path,
    *,
    example: str,
    scale: str,
    seed: int,
    drift: bool = False,
    live: Servers | None = None,
) -> dict[str, Any]:
    from gristmill.examples.churn.generator import SCALES, generate

    if example not in EXAMPLES:
        raise UnknownNameError("example", example, list(EXAMPLES))
    if scale not in SCALES:
        raise UnknownNameError("scale", scale, list(SCALES))
    if live is not None and drift:
        from gristmill.errors import InvalidInputError

        raise InvalidInputError(
            "--drift and --live do not go together: the drifted months arrive as files",
            hint="use one of them",
        )
    directory = directory.resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        what = "folder is not empty" if directory.is_dir() else "path is a file"
        raise FolderNotEmptyError(
            f"cannot create a project in {directory}: the {what}",
            hint="choose a new folder name, or remove what is there first",
        )
    template = EXAMPLES_DIR / example / "project"
    try:
        shutil.copytree(
            template, directory, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    except OSError as exc:
        raise OutputError(
            f"cannot create a project in {directory}: {exc.strerror or exc}",
            hint="choose a folder you can write to",
        ) from None
    counts = generate(directory / "data", scale=scale, seed=seed, drift=drift)
    servers: dict[str, Any] | None = None
    if live is not None:
        try:
            servers = _go_live(directory, live)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # nothing half-made stays behind
            raise
    return {
        "project": example,
        "path": str(directory),
        "scale": scale,
        "seed": seed,
        "drift": drift,
        "files": sum(n for k, n in counts.items() if k != "arriving"),
        "data": counts,
        **({"live": servers} if servers is not None else {}),
    }


def _go_live(directory: Path, servers: Servers) -> dict[str, Any]:
    """Load users, transactions and events into the servers; point sources.py at them."""
    import secrets

    from gristmill.workspace.live import (
        Names,
        change_capture,
        check,
        load,
        placeholders_for,
        redact,
        sources_module,
    )

    check(servers)  # every server reachable before anything is loaded
    not_logical = change_capture(servers.postgres)
    names = Names.for_folder(directory)
    loaded = load(directory / "data", servers, names)
    named, variables = placeholders_for(servers)  # the project holds no password
    sources = directory / "sources.py"
    sources.write_text(
        sources_module(sources.read_text(), named, names, capture=not_logical is None)
    )
    for moved in ("users", "transactions", "events"):
        shutil.rmtree(directory / "data" / moved)
    (directory / "pii.key").write_text(secrets.token_hex(32) + "\n")
    (directory / "pii.key").chmod(0o600)
    with open(directory / "gristmill.toml", "a") as toml:
        toml.write(
            "\n[pii]                                     # the key of e-mail pseudonyms: keep it\n"
            'key_file = "pii.key"\n'
        )
    return {
        "postgres": f"{redact(servers.postgres)} {names.schema}.users",
        "mysql": f"{redact(servers.mysql)} {names.table}",
        "nats": f"{redact(servers.nats)} {names.stream}",
        "users": "read by change data capture (a logical replication slot)"
        if not_logical is None
        else f"read by their updated_at cursor: no change data capture, {not_logical}",
        "export": sorted(variables),
        **loaded,
    }
