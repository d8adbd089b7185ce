"""Where the lake and the artifacts live: a local folder, or a prefix on object storage.

A ``Location`` is that root, with the file operations the lake and the artifact store
need beyond what delta-rs does (is there a log, list the tables, read and replace one
log entry, remove unreferenced files), done through one pyarrow file system for both
kinds. delta-rs reads the object store's settings and credentials from the environment
itself (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``, ...); pyarrow does not read the endpoint from
there, so ``_s3`` gives it the same settings. Nothing here logs or repeats a secret.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from gristmill.definitions.urls import check_storage_url
from gristmill.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow.fs as pafs


@dataclass(frozen=True)
class Location:
    """A root folder (``url`` is an absolute local path) or an object-store prefix
    (``s3://bucket/prefix``)."""

    url: str
    _fs: list[pafs.FileSystem] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str, base: Path, *, setting: str) -> Location:
        """``text`` from gristmill.toml's ``setting``: a URL, or a folder relative to
        ``base`` (the project loads only URLs ``check_storage_url`` accepts)."""
        problem = check_storage_url(text, setting)
        if problem is not None:
            raise ConfigError(problem[0], hint=problem[1])
        if "://" not in text:
            folder = Path(text).expanduser()
            return cls(str(folder if folder.is_absolute() else base / folder))
        scheme, rest = text.split("://", 1)
        return cls(f"{scheme.lower()}://{rest.strip('/')}")

    @property
    def remote(self) -> bool:
        return "://" in self.url

    @property
    def folder(self) -> Path:
        """The local folder (a remote location has none)."""
        if self.remote:
            raise ValueError(f"{self.url} is not a local folder")
        return Path(self.url)

    def join(self, *parts: str) -> str:
        """A URL (or local path) below the root, as delta-rs takes it."""
        return "/".join([self.url.rstrip("/"), *parts])

    # --- file operations through pyarrow (both kinds) -------------------------------

    @property
    def fs(self) -> pafs.FileSystem:
        if not self._fs:
            self._fs.append(_filesystem(self))
        return self._fs[0]

    def key(self, *parts: str) -> str:
        """The file system's path of ``parts`` below the root."""
        if self.remote:
            return "/".join([self.url.split("://", 1)[1], *parts]).rstrip("/")
        return str(Path(self.url, *parts))

    def key_of(self, uri: str) -> str:
        """The file system's path of a URL delta-rs gave (``s3://b/k`` -> ``b/k``)."""
        # delta-rs percent-encodes the URIs it gives (a space as %20); keys are plain
        return unquote(uri.split("://", 1)[1]) if self.remote and "://" in uri else uri

    def check(self, setting: str) -> None:
        """Fail clearly when a remote root's bucket is missing or unreachable."""
        if not self.remote:
            return
        import pyarrow.fs as pafs

        bucket = self.url.split("://", 1)[1].split("/", 1)[0]
        if self._info(bucket).type == pafs.FileType.NotFound:
            raise ConfigError(
                f"{setting} = {self.url!r}: the bucket {bucket!r} does not exist" + _at_endpoint(),
                hint=f"create the bucket, or point {setting} at one that exists (the "
                "endpoint comes from AWS_ENDPOINT_URL, credentials from AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY)",
            )

    def is_dir(self, *parts: str) -> bool:
        if not self.remote:  # a stat, without importing pyarrow (a no-op run stays fast)
            return os.path.isdir(self.key(*parts))
        import pyarrow.fs as pafs

        return bool(self._info(self.key(*parts)).type == pafs.FileType.Directory)

    def is_file(self, *parts: str) -> bool:
        if not self.remote:
            return os.path.isfile(self.key(*parts))
        import pyarrow.fs as pafs

        return bool(self._info(self.key(*parts)).type == pafs.FileType.File)

    def _info(self, key: str) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(key)
        except OSError as exc:
            raise store_error(f"cannot reach {self.url}", exc) from None

    def children(self, *parts: str) -> list[str]:
        """Names of the folders directly below ``parts`` ([] when there is none)."""
        if not self.remote:
            folder = Path(self.key(*parts))
            return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.key(*parts), allow_not_found=True)
        try:
            found = self.fs.get_file_info(selector)
        except OSError as exc:
            raise store_error(f"cannot reach {self.url}", exc) from None
        return sorted(i.base_name for i in found if i.type == pafs.FileType.Directory)

    def files(self, *parts: str) -> Iterator[tuple[str, str]]:
        """Every file below ``parts``, recursively: (path relative to it, its key)."""
        import pyarrow.fs as pafs

        base = self.key(*parts)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        for info in sorted(self.fs.get_file_info(selector), key=lambda i: i.path):
            if info.type == pafs.FileType.File:
                yield info.path[len(base) :].lstrip("/"), info.path

    def read_bytes(self, key: str) -> bytes:
        with self.fs.open_input_stream(key) as stream:
            return bytes(stream.read())

    def replace(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` whole: readers see the old bytes or the new ones
        (a local file through a rename; an object store's PUT is atomic)."""
        if self.remote:
            with self.fs.open_output_stream(key) as out:
                out.write(data)
            return
        fd, scratch = tempfile.mkstemp(dir=os.path.dirname(key), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(scratch, key)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        self.fs.delete_file(key)


def _filesystem(location: Location) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    if not location.remote:
        return pafs.LocalFileSystem()
    return s3_filesystem()


def s3_filesystem() -> pafs.FileSystem:
    """pyarrow's S3 client with the settings delta-rs reads from the environment."""
    import pyarrow.fs as pafs

    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    options: dict[str, object] = {}
    if endpoint:
        scheme = urlsplit(endpoint).scheme or "https"
        options["endpoint_override"] = endpoint.split("://", 1)[-1].rstrip("/")
        options["scheme"] = scheme
        # an S3-compatible server on a host of its own: paths, not bucket subdomains
        options["force_virtual_addressing"] = False
    if region:
        options["region"] = region
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        options["access_key"] = key
        options["secret_key"] = secret
        if env.get("AWS_SESSION_TOKEN"):
            options["session_token"] = env["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**options)


def _at_endpoint() -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return f" at {endpoint}" if endpoint else ""


def store_error(what: str, exc: OSError) -> Exception:
    """An object store's failure (a missing bucket, no network, refused credentials), as
    the lake's error: what failed, the store's own reason, and where the settings come from."""
    from gristmill.errors import LakeError

    return LakeError(
        f"{what}: {describe(exc)}",
        hint="check the bucket exists, the network, and the credentials and endpoint in the "
        "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL)",
    )


def describe(exc: BaseException) -> str:
    """An object store's error in one line: the S3 error code and message when the
    response carried them (delta-rs nests the whole response), else the first line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "scheme is not allowed" in text:
        return "the endpoint is plain http://, which needs AWS_ALLOW_HTTP=true"
    if "denied destination" in text or "resolve_deny" in text:
        # no keys in the environment: the client asked the instance metadata service
        return "no credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    if code:
        return f"{code.group(1)}: {message.group(1) if message else ''}".rstrip(": ")
    lines = [line.strip(" ↳") for line in text.strip().splitlines() if line.strip(" ↳")]
    return " / ".join(lines[-2:])[:300] if lines else type(exc).__name__
