"""``[auth]`` and ``[state]``: client API keys, their limits, and where the
counters live. Part of :class:`gateway.config.Settings`.

A key is stored as the hex SHA-256 of its secret, never the secret
(``sluice keys new NAME`` makes one). Limits are optional per key; a key
without any is only authenticated, never counted.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .config_errors import CROSS_CHECK

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKeySettings(_Section):
    """``[[auth.keys]]``: one client key."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    """What logs, metrics and errors show (never the secret)."""
    sha256: str
    """Hex SHA-256 of the secret (64 hex digits)."""
    models: tuple[str, ...] | None = None
    """Allow-list of model names; unset: every configured model."""
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    """Input + output tokens per minute."""
    max_concurrent_streams: int | None = Field(default=None, ge=1)
    """Requests open at once for this key (streaming or not)."""
    token_budget: int | None = Field(default=None, ge=1)
    """Input + output tokens per ``budget_period``."""
    budget_period: Literal["day", "month"] = "day"
    """Calendar day or month, UTC (of ``token_budget`` and ``usd_budget``)."""
    usd_budget: float | None = Field(default=None, gt=0, le=1e9)
    """US dollars per ``budget_period``, spent at the models' prices
    (:mod:`gateway.cost`); counted in whole micro-dollars."""
    expires_at: datetime | None = None
    """After this instant the key is refused (401). A TOML datetime with an offset."""

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not _HEX64.match(value):
            raise ValueError(
                "expected the 64 hex digits of the secret's SHA-256 "
                "(`sluice keys new NAME` prints a secret and its sha256)"
            )
        return value

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2027-01-01T00:00:00Z")
        return value

    @property
    def limited(self) -> bool:
        """Whether any counter applies to this key (else the store is never asked)."""
        return any(
            v is not None
            for v in (
                self.requests_per_minute,
                self.tokens_per_minute,
                self.max_concurrent_streams,
                self.token_budget,
                self.usd_budget,
            )
        )


class AuthSettings(_Section):
    """``[auth]``: who may call the API routes."""

    anonymous: bool = False
    """Serve requests that carry no key (uncounted). Needed to listen on a
    non-loopback address without keys; with keys, a request without one is
    served anonymously and a wrong key is still 401."""
    keys: tuple[ApiKeySettings, ...] = ()


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class StateSettings(_Section):
    """``[state]``: where the per-key counters live."""

    redis_url: str | None = None
    """``redis://host:6379/0``: counters shared by every process and replica,
    budgets kept across restarts. Unset: in this process only."""
    redis_url_env: str | None = Field(default=None, min_length=1)
    """Name of an environment variable holding ``redis_url`` (e.g. from a
    Kubernetes Secret, when the URL carries a password). Read once, when the
    file is loaded; the variable unset or empty, a URL of another scheme, or
    ``redis_url`` also set is a configuration error (never a silent fallback
    to counting in this process)."""
    fail_open: bool = False
    """Redis unreachable: serve limited keys uncounted (a warning and a metric)
    instead of answering 503 ``state_unavailable``."""
    connect_timeout_s: float = Field(default=0.5, gt=0)
    """Connecting to Redis."""
    timeout_s: float = Field(default=0.5, gt=0)
    """One Redis command (socket timeout): a hung Redis costs at most this."""
    max_connections: int = Field(default=100, ge=2, le=100_000)
    """Redis connections this process may open (one pool shared by quotas and
    the stream store; followers' blocking reads have a second pool of the
    same size; the stream store's cancel subscription holds one of the shared
    pool for good once this process has produced a stored stream). A command
    that finds them all busy waits for one."""
    pool_timeout_s: float = Field(default=5.0, gt=0)
    """Longest wait for a free connection of the pool; past it the request
    gets 503 ``state_busy`` (the gateway is busy, Redis is not down), never
    ``state_unavailable``. ``fail_open`` does not apply to it."""
    readiness_requires_redis: bool | None = None
    """Whether Redis not answering a PING (within ``timeout_s``) turns
    ``/readyz`` 503 ``state_unavailable``. Unset: when some key has limits and
    ``fail_open`` is off (then those keys' requests would get 503 anyway).
    Either way ``/readyz``'s detail reports the state store."""
    lease_ttl_s: float = Field(default=60.0, ge=1)
    """A concurrency slot held by a process that died frees itself after this;
    live streams renew theirs every third of it."""

    @model_validator(mode="before")
    @classmethod
    def _url_from_env(cls, data: Any) -> Any:
        """``redis_url`` from the variable ``redis_url_env`` names. Errors name
        the variable, never its value (the URL may hold a password)."""
        if not isinstance(data, dict) or data.get("redis_url_env") is None:
            return data
        env = data["redis_url_env"]
        if not isinstance(env, str) or not env:
            return data  # the field's own validation reports it
        problem = None
        value = os.environ.get(env, "")
        if data.get("redis_url") is not None:
            problem = "set redis_url or redis_url_env, not both"
        elif not value:
            problem = f"the environment variable {env} is unset or empty"
        elif not value.startswith(_REDIS_SCHEMES):
            problem = f"{env} should hold redis://host:port/db, rediss://... or unix://path"
        if problem is not None:
            raise PydanticCustomError(
                CROSS_CHECK,
                "state.redis_url_env: {msg}",
                {"problems": [("state.redis_url_env", problem)], "msg": problem},
            )
        return {**data, "redis_url": value}

    @field_validator("redis_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_REDIS_SCHEMES):
            raise ValueError("expected redis://host:port/db, rediss://... or unix://path")
        return value
