"""Gateway settings: a TOML file validated with pydantic.

Shape (every key optional except each model's ``name`` and ``provider``)::

    [server]   host, port, max_body_bytes
    [stream]   downstream_buffer_bytes, send_timeout_s
    [[models]] name, provider = "sim" | "openai" | "anthropic", ...

Unknown keys are errors, so a typo never silently falls back to a default.
Without a file, :func:`default_settings` serves one simulator model, ``sim``.
Errors: :class:`ConfigError`, whose message names every bad key as a dotted
path (``models[1].itl_ms: Input should be greater than or equal to 0``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(Exception):
    """The configuration file is missing, not TOML, or fails validation."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """``[server]``: where to listen and how much a request may carry."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest accepted request body, bytes; larger bodies get 413."""
    metrics_enabled: bool = True
    """Record per-stream metrics. Turn off only to measure what they cost."""


class StreamSettings(_Section):
    """``[stream]``: the per-connection backpressure bound and client timeouts."""

    downstream_buffer_bytes: int = Field(default=65536, ge=4096, le=64 << 20)
    """Bound on bytes queued toward one client (asyncio buffer + kernel send queue)."""
    send_timeout_s: float = Field(default=30.0, gt=0)
    """A client that takes no bytes for this long is dropped (reason ``slow_client``)."""


class _ModelBase(_Section):
    name: str = Field(min_length=1)
    """The model name clients send."""
    upstream_model: str | None = None
    """The model name sent upstream; defaults to ``name``."""

    @property
    def target_model(self) -> str:
        return self.upstream_model or self.name


class SimModel(_ModelBase):
    """The built-in simulator: deterministic text paced by a monotonic clock."""

    provider: Literal["sim"]
    ttft_ms: float = Field(default=300.0, ge=0)
    itl_ms: float = Field(default=30.0, ge=0)
    output_tokens: int = Field(default=64, ge=1, le=1_000_000)


class _RemoteModel(_ModelBase):
    base_url: str | None = None
    """Upstream base URL; defaults to the provider's public API."""
    api_key_env: str | None = None
    """Name of the environment variable holding the upstream API key."""
    upstream_buffer_bytes: int = Field(default=65536, ge=4096, le=64 << 20)
    """Receive buffer (``SO_RCVBUF``) of upstream sockets: how far the upstream
    can run ahead into the kernel while a slow client holds the relay back."""

    def api_key(self, default_env: str) -> str:
        """The key from ``api_key_env`` (or ``default_env``); empty if unset."""
        return os.environ.get(self.api_key_env or default_env, "")


class OpenAIModel(_RemoteModel):
    """OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...)."""

    provider: Literal["openai"]
    stream_usage: bool = True
    """Ask upstream for a usage chunk (``stream_options.include_usage``) even when
    the client did not, so token metrics are exact; the chunk is then not relayed."""


class AnthropicModel(_RemoteModel):
    """Anthropic's Messages API."""

    provider: Literal["anthropic"]


ModelSettings = Annotated[SimModel | OpenAIModel | AnthropicModel, Field(discriminator="provider")]


class Settings(_Section):
    """The whole configuration; see the module docstring for the file shape."""

    server: ServerSettings = ServerSettings()
    stream: StreamSettings = StreamSettings()
    models: tuple[ModelSettings, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate model names: {', '.join(dupes)}")
        return self

    def model(self, name: str) -> ModelSettings | None:
        """The configured model a client calls ``name``, or None."""
        for m in self.models:
            if m.name == name:
                return m
        return None


def default_settings() -> Settings:
    """The embedded default: one simulator model named ``sim``."""
    return Settings(models=(SimModel(name="sim", provider="sim"),))


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part in ("sim", "openai", "anthropic"):
                continue  # the discriminator tag pydantic inserts, not a key
            else:
                path += f".{part}" if path else str(part)
        lines.append(f"{path or '<root>'}: {e['msg']}")
    return "; ".join(lines)


def parse_settings(data: dict[str, object]) -> Settings:
    """Validate a decoded TOML document. Raises :class:`ConfigError`."""
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid configuration: {_format_errors(err)}") from None


def load_settings(path: Path | str | None) -> Settings:
    """Read and validate a TOML file; ``None`` gives :func:`default_settings`.

    Raises :class:`ConfigError` for a missing file, bad TOML or a bad key.
    """
    if path is None:
        return default_settings()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return parse_settings(data)
