"""The artifact store: files addressed by the SHA-256 of their bytes.

``put`` writes a file once under ``sha256/ab/abcdef...`` (whole: a local file through a
temporary file and a rename, an object through one PUT) and returns its digest; ``get``
reads it back and refuses bytes whose digest differs, so a changed file is never loaded.
The root is a local folder or an object-store prefix (``s3://bucket/artifacts``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gristmill.errors import ArtifactError
from gristmill.storage.location import Location


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    def __init__(self, root: Path | Location) -> None:
        self.location = root if isinstance(root, Location) else Location(str(root))

    @property
    def root(self) -> Path:
        """The store's local folder (a store on object storage has none)."""
        return self.location.folder

    def path(self, digest: str) -> str:
        """Where the artifact lives: a local path or the object's key."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ArtifactError(f"{digest!r} is not a SHA-256 digest")
        return self.location.key("sha256", digest[:2], digest)

    def _where(self, digest: str) -> str:
        return self.location.join("sha256", digest[:2], digest)

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        key = self.path(digest)
        if self.location.is_file("sha256", digest[:2], digest):
            if sha256(self.location.read_bytes(key)) == digest:
                return digest
        if not self.location.remote:
            Path(key).parent.mkdir(parents=True, exist_ok=True)
        self.location.replace(key, data)
        return digest

    def get(self, digest: str) -> bytes:
        key = self.path(digest)
        if not self.location.is_file("sha256", digest[:2], digest):
            raise ArtifactError(
                f"artifact {digest[:12]}... is missing ({self._where(digest)})",
                hint="restore the artifact store from a backup, or retrain the model",
            )
        data = self.location.read_bytes(key)
        actual = sha256(data)
        if actual != digest:
            where = "in the store" if self.location.remote else "on disk"
            raise ArtifactError(
                f"artifact {self._where(digest)} was changed {where}: its SHA-256 is "
                f"{actual[:12]}..., the registry expects {digest[:12]}...; refusing to load it",
                hint="restore the original file, or retrain and register a new version",
            )
        return data
