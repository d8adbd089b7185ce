"""Who is acting: API keys, UI sessions and the command line's principal.

The one authentication module of the serving app, the REST API and the UI: an API key
(``Authorization: Bearer gm_…``) or a UI session (a signed HttpOnly cookie naming the key
it was opened with) becomes a ``Principal``; the command line's principal is
``GRISTMILL_TOKEN``'s key, else the OS user as ``[access] users`` maps it. What a
principal may then do is ``gristmill.access``'s alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from gristmill.access import LEGACY_ROLES, Action, Principal, requires
from gristmill.definitions.config import ROLE_NAMES, AccessSettings
from gristmill.errors import ConfigError, Unauthorized, UnknownNameError
from gristmill.storage.catalog import ApiToken
from gristmill.storage.catalog.records import utcnow
from gristmill.workspace.shapes import KeyInfo

if TYPE_CHECKING:
    from gristmill.workspace.core import Workspace

NEW_KEY_S = 1.0
"""An unknown key re-reads the keys if they are older than this: new keys work at once."""
TOKEN_ENV = "GRISTMILL_TOKEN"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    id: str
    role: str
    note: str
    token: str
    """Shown once; only its SHA-256 is stored."""


class Tokens:
    """API keys: created by an admin, stored as SHA-256 hashes, listed without them."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    @requires(Action.MANAGE_KEYS)
    def create(self, role: str, note: str = "") -> NewToken:
        if role not in ROLE_NAMES:
            raise UnknownNameError("role", role, list(ROLE_NAMES))
        token_id = secrets.token_hex(4)
        token = f"gm_{token_id}_{secrets.token_urlsafe(24)}"
        self.ws.catalog.add_token(ApiToken(token_id, role, hash_token(token), note, utcnow()))
        return NewToken(token_id, role, note, token)

    @requires(Action.MANAGE_KEYS)
    def list(self) -> list[KeyInfo]:
        """The keys, without their hashes."""
        return [
            KeyInfo(t.id, t.role, t.note, t.created_at, t.revoked_at)
            for t in self.ws.catalog.tokens()
        ]

    def any_active(self) -> bool:
        """Whether any key may be used (no key is shown: asked before serving)."""
        return any(t.revoked_at is None for t in self.ws.catalog.tokens())

    @requires(Action.MANAGE_KEYS)
    def revoke(self, token_id: str) -> None:
        if not self.ws.catalog.revoke_token(token_id):
            active = [t.id for t in self.ws.catalog.tokens() if t.revoked_at is None]
            raise UnknownNameError("active key", token_id, active)


class Keys:
    """Token -> principal, re-read from the catalog at most every ``ttl_s`` (so a revoked
    key stops working within ``ttl_s``); a key created a moment ago works at once."""

    def __init__(self, ws: Workspace, ttl_s: float = 5.0) -> None:
        self.ws = ws
        self.ttl_s = ttl_s
        self._by_hash: dict[str, Principal] = {}
        self._by_id: dict[str, Principal] = {}
        self._known: dict[str, Principal] = {}
        """Valid tokens seen since the last reload (so never more than the valid keys)."""
        self._loaded = 0.0
        self._lock = threading.Lock()

    def __call__(self, token: str) -> Principal | None:
        now = time.monotonic()
        if now - self._loaded > self.ttl_s:
            self._reload(now)
        found = self._known.get(token)
        if found is None:
            hashed = hash_token(token)
            if hashed not in self._by_hash and now - self._loaded > NEW_KEY_S:
                self._reload(now)  # a key created a moment ago; at most once a second
            found = self._by_hash.get(hashed)
            if found is not None:
                self._known[token] = found
        return found

    def by_id(self, key_id: str) -> Principal | None:
        """The principal of an active key by its id (a UI session names its key)."""
        now = time.monotonic()
        if now - self._loaded > self.ttl_s:
            self._reload(now)
        return self._by_id.get(key_id)

    def _reload(self, now: float) -> None:
        with self._lock:
            active = [t for t in self.ws.catalog.tokens() if t.revoked_at is None]
            self._by_id = {t.id: _key_principal(t) for t in active}
            self._by_hash = {t.hash: self._by_id[t.id] for t in active}
            self._known = {}
            self._loaded = now


def _key_principal(key: ApiToken) -> Principal:
    return Principal(f"key:{key.id}", LEGACY_ROLES.get(key.role, key.role))


def cli_principal(ws: Workspace, environ: Mapping[str, str] | None = None) -> Principal:
    """The command line's principal: ``GRISTMILL_TOKEN``'s key if set, else the OS user
    as ``[access] users`` maps it."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        found = Keys(ws)(token)
        if found is None:
            raise Unauthorized(
                f"{TOKEN_ENV} holds an unknown or revoked API key",
                token_given=True,
                hint=f"unset {TOKEN_ENV} to act as your OS user, or ask an admin for a key "
                "(`gristmill tokens create --role ...`)",
            )
        return found
    from gristmill.workspace.core import os_user

    user = os_user()
    return Principal(f"user:{user}", os_role(ws.project.config.access, user))


def key_principal(ws: Workspace, token: str) -> Principal:
    """The principal of a key handed over in code (``gm.connect(token=...)``)."""
    found = Keys(ws)(token.strip())
    if found is None:
        raise Unauthorized(
            "the key given as token= is unknown or revoked",
            token_given=True,
            hint="ask an admin for a key: gristmill tokens create --role analyst",
        )
    return found


def os_role(settings: AccessSettings, user: str) -> str:
    """An OS user's role: as named in ``users``, else ``default_role``; without either,
    ``admin`` when ``users`` names nobody (a project on a laptop), else ``viewer``."""
    if user in settings.users:
        return settings.users[user]
    if settings.default_role is not None:
        return settings.default_role
    return "viewer" if settings.users else "admin"


# ---- UI sessions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    principal: Principal
    expires: float
    csrf: str
    """The token every form and htmx request of this session must carry."""


class Sessions:
    """Signed session cookies: ``<payload>.<hmac>``, the payload naming the key a login
    used and when the session ends. Nothing is stored server-side; a revoked key ends its
    sessions (within the key cache's ttl). The secret is a file of the project's state
    folder (mode 0600), made on first use."""

    def __init__(self, keys: Keys, secret_file: Path, hours: float) -> None:
        self.keys = keys
        self.hours = hours
        self.secret = _secret(secret_file)

    def open(self, token: str) -> tuple[str, Session]:
        """A cookie value for a login with ``token``; ``Unauthorized`` for a bad key."""
        principal = self.keys(token.strip())
        if principal is None:
            raise Unauthorized(
                "unknown or revoked API key",
                token_given=bool(token.strip()),
                hint="paste a key from `gristmill tokens create --role ...`",
            )
        expires = time.time() + self.hours * 3600
        payload = orjson.dumps({"k": principal.name.removeprefix("key:"), "e": int(expires),
                                "n": secrets.token_hex(8)})  # fmt: skip
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        cookie = f"{body}.{self._sign(body)}"
        return cookie, Session(principal, expires, self._csrf(cookie))

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie, or None when it is absent, forged, expired or its key
        was revoked."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            key_id, expires = str(payload["k"]), float(payload["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < time.time():
            return None
        principal = self.keys.by_id(key_id)
        if principal is None:
            return None
        return Session(principal, expires, self._csrf(cookie))

    def _sign(self, body: str) -> str:
        return hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()[:43]

    def _csrf(self, cookie: str) -> str:
        return hmac.new(self.secret, b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()[:32]


def _secret(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = None  # the first start: made below
    except OSError as exc:
        raise ConfigError(
            f"cannot read the UI's session secret {path}: {exc.strerror}",
            hint="give the server's user read access to it (mode 0600, its owner)",
        ) from None
    if text is not None:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise ConfigError(
                f"the UI's session secret {path} is not hex",
                hint="delete it: a new one is made at the next start (everyone logs in again)",
            ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return bytes.fromhex(value)
