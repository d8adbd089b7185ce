"""The artifact store: files addressed by the SHA-256 of their bytes.

``put`` writes a file once under ``sha256/ab/abcdef...`` (atomically, via a temporary
file and rename) and returns its digest; ``get`` reads it back and refuses bytes whose
digest differs, so a file changed on disk is never loaded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from gristmill.errors import ArtifactError


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ArtifactError(f"{digest!r} is not a SHA-256 digest")
        return self.root / "sha256" / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        path = self.path(digest)
        if path.exists() and sha256(path.read_bytes()) == digest:
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(
                f"artifact {digest[:12]}... is missing ({path})",
                hint="restore the artifact store from a backup, or retrain the model",
            ) from None
        actual = sha256(data)
        if actual != digest:
            raise ArtifactError(
                f"artifact {path} was changed on disk: its SHA-256 is {actual[:12]}..., "
                f"the registry expects {digest[:12]}...; refusing to load it",
                hint="restore the original file, or retrain and register a new version",
            )
        return data
