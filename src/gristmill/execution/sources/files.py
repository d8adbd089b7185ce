"""What a file source offers now: the files its glob matches, with size and mtime."""

from __future__ import annotations

import glob
from pathlib import Path

from gristmill.definitions.sources import FileSource
from gristmill.storage.catalog.records import IngestedFile


def list_files(root: Path, source: FileSource) -> list[IngestedFile]:
    # the project's own path is literal: a folder named `[draft]` or `50% off` is no pattern
    pattern = (
        source.path
        if Path(source.path).is_absolute()
        else str(Path(glob.escape(str(root))) / source.path)
    )
    found = []
    for name in sorted(glob.glob(pattern, recursive=True)):
        path = Path(name)
        if path.is_file():
            stat = path.stat()
            found.append(
                IngestedFile(
                    path=_relative(path, root), size=stat.st_size, mtime_ns=stat.st_mtime_ns
                )
            )
    return found


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
