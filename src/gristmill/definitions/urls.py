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
