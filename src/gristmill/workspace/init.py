"""Creating a project from an example template with generated data."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from gristmill.errors import FolderNotEmptyError, OutputError, UnknownNameError

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = ("churn",)


def init_project(
    directory: Path, *, example: str, scale: str, seed: int, drift: bool = False
) -> dict[str, Any]:
    from gristmill.examples.churn.generator import SCALES, generate

    if example not in EXAMPLES:
        raise UnknownNameError("example", example, list(EXAMPLES))
    if scale not in SCALES:
        raise UnknownNameError("scale", scale, list(SCALES))
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
    return {
        "project": example,
        "path": str(directory),
        "scale": scale,
        "seed": seed,
        "drift": drift,
        "files": sum(n for k, n in counts.items() if k != "arriving"),
        "data": counts,
    }
