"""Client API keys: making one, and finding the configured key a request presents.

A secret is ``sk-sluice-`` + 32 random bytes (``secrets.token_urlsafe``); the
config holds only its SHA-256. A request presents it as
``Authorization: Bearer <secret>`` (OpenAI SDKs) or ``x-api-key: <secret>``
(Anthropic SDKs). The secret is hashed at once and goes no further: it is
never stored, logged, exported or echoed. Digests are compared with
``hmac.compare_digest`` against every configured key (no early exit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from .config_auth import ApiKeySettings, AuthSettings

SECRET_PREFIX = "sk-sluice-"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh secret: :data:`SECRET_PREFIX` + 32 random bytes, URL-safe base64."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def sha256_hex(secret: str) -> str:
    """What ``[[auth.keys]] sha256`` holds for ``secret``."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def toml_block(name: str, digest: str, options: Mapping[str, object] | None = None) -> str:
    """The ``[[auth.keys]]`` block to paste into the config for a new key:
    ``options`` (limits, ``models``) as keys, the others as comments."""
    options = options or {}
    lines = ["[[auth.keys]]", f'name = "{name}"', f'sha256 = "{digest}"']
    hints = {
        "models": '["gpt-4o-mini"]        # optional allow-list; default every model',
        "requests_per_minute": "600",
        "tokens_per_minute": "200000           # input + output tokens",
        "max_concurrent_streams": "20",
        "token_budget": '5000000               # per budget_period ("day" or "month", UTC)',
        "usd_budget": "50.0                     # US dollars per budget_period",
        "budget_period": '"day"',
        "expires_at": "2027-01-01T00:00:00Z",
    }
    for key, hint in hints.items():
        value = options.get(key)
        if value is None:
            lines.append(f"# {key} = {hint}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, list):
            lines.append(f"{key} = [{', '.join(f'{chr(34)}{v}{chr(34)}' for v in value)}]")
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def presented_digest(headers: Mapping[str, str]) -> bytes | None:
    """SHA-256 of the secret in ``Authorization: Bearer`` or ``x-api-key``;
    None when the request carries neither."""
    value = headers.get("Authorization")
    secret = None
    if value:
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            secret = rest.strip()
    if secret is None:
        secret = (headers.get("x-api-key") or "").strip() or None
    if secret is None:
        return None
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class KeyRing:
    """The configured keys (``[auth]``), swapped whole on reload (SIGHUP)."""

    def __init__(self, auth: AuthSettings) -> None:
        self.auth = auth
        self._digests = tuple((bytes.fromhex(k.sha256), k) for k in auth.keys)
        self.by_name = {k.name: k for k in auth.keys}

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (else every request is anonymous)."""
        return bool(self._digests)

    @property
    def anonymous(self) -> bool:
        """Whether a request without a key is served."""
        return not self._digests or self.auth.anonymous

    def lookup(self, digest: bytes) -> ApiKeySettings | None:
        """The key whose digest is ``digest``, comparing with every one."""
        found = None
        for candidate, key in self._digests:
            if hmac.compare_digest(candidate, digest):
                found = key
        return found


def expired(key: ApiKeySettings, now: datetime | None = None) -> bool:
    return key.expires_at is not None and key.expires_at <= (now or datetime.now(UTC))


class Identity:
    """App-state holder of the current :class:`KeyRing` (replaced on reload)."""

    def __init__(self, auth: AuthSettings) -> None:
        self.ring = KeyRing(auth)

    def replace(self, auth: AuthSettings) -> None:
        """New keys from here on (SIGHUP): requests already admitted go on.
        Raises ValueError for a change that would open a keyed gateway to
        anyone (every key removed without ``anonymous = true``)."""
        if self.ring.enabled and not auth.keys and not auth.anonymous:
            raise ValueError(
                "the new [auth] has no keys and anonymous = false: that would open the "
                "gateway to anyone (set anonymous = true to mean it)"
            )
        self.ring = KeyRing(auth)
