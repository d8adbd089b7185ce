"""Webhook URLs: checked when a project loads, shown only without what may be secret."""

from __future__ import annotations


def redact(url: str) -> str:
    """A webhook URL as it may be shown: scheme, host and port only (its user, password,
    path and query may hold a token)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(url))
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<a URL that does not parse>"
    return f"{parts.scheme}://{host}{port}/…"


def check_url(url: object) -> str | None:
    """Why ``url`` cannot be a webhook (None: it can); the message never repeats it."""
    from urllib.parse import urlsplit

    if not isinstance(url, str):
        return f"a webhook URL is text, not {type(url).__name__}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "the webhook URL does not parse"
    if parts.scheme not in ("http", "https"):
        return (
            f"the webhook URL must start with http:// or https://, not {parts.scheme or '(none)'}"
        )
    if not parts.hostname:
        return "the webhook URL names no host"
    return None


def redact_credentials(url: str) -> str:
    """A database URL without its user's password (a ``${VAR}`` placeholder stays: it
    names the variable, not the secret)."""
    import re

    return re.sub(r"(://[^:/@\s]*):(?!\$\{[A-Za-z_][A-Za-z0-9_]*\}@)[^@\s]*@", r"\1:***@", url)


STORAGE_SCHEMES = ("s3",)
"""Object stores tested end to end (AWS S3 and S3-compatible servers)."""
LATER_SCHEMES = ("s3a", "gs", "gcs", "az", "abfs", "abfss", "azure", "hdfs", "lakefs", "r2")


def check_storage_url(text: str, setting: str) -> tuple[str, str] | None:
    """Why ``text`` cannot be the ``lake`` or ``artifacts`` location, and what to do
    (None: it can, or it is a local folder). Never repeats a credential."""
    import re
    from urllib.parse import urlsplit

    if "://" not in text:
        return None
    shown = redact_credentials(text)
    scheme = text.split("://", 1)[0].lower()
    if scheme in LATER_SCHEMES:
        return (
            f"{setting} = {shown!r}: {scheme}:// is not supported yet; only s3:// (AWS S3 and "
            "S3-compatible servers) is tested",
            f"use an s3:// URL or a local folder for {setting}",
        )
    if scheme not in STORAGE_SCHEMES:
        return (
            f"{setting} = {shown!r}: unknown scheme {scheme}://",
            f"{setting} is a folder (relative to the project) or s3://bucket/prefix",
        )
    parts = urlsplit(text)
    if "@" in parts.netloc:
        return (
            f"{setting} = {shown!r}: a URL with credentials",
            "give credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), "
            "never in gristmill.toml",
        )
    if not parts.netloc:
        return (f"{setting} = {shown!r} names no bucket", f"write it as {scheme}://BUCKET/PREFIX")
    if parts.query or parts.fragment:
        return (
            f"{setting} = {shown!r}: a URL with a query or a fragment ('?' or '#')",
            f"write it as {scheme}://BUCKET/PREFIX",
        )
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", parts.netloc):
        return (
            f"{setting} = {shown!r}: {parts.netloc!r} is not a bucket name",
            "a bucket name is 3-63 lowercase letters, digits, '.' and '-'",
        )
    path = parts.path.removeprefix("/").removesuffix("/")  # one trailing '/' is fine
    segments = path.split("/") if path else []
    for segment in segments:
        if segment in ("", ".", "..") or not re.fullmatch(r"[A-Za-z0-9._=-]+", segment):
            return (
                f"{setting} = {shown!r}: the prefix part {segment!r} is not supported",
                "a prefix is made of letters, digits, '.', '_', '=' and '-' between single "
                "'/' (no '..', spaces or other characters: delta-rs and pyarrow would spell "
                "such keys differently)",
            )
    return None
