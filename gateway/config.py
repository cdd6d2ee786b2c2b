"""Gateway settings: a TOML file validated with pydantic.

Shape (every key optional except each model's ``name`` and ``provider``)::

    [server]   host, port, max_body_bytes
    [stream]   downstream_buffer_bytes, send_timeout_s
    [[models]] name, provider = "sim" | "openai" | "anthropic" | "azure" | "bedrock" | "gemini", ...

Unknown keys are errors, so a typo never silently falls back to a default.
Without a file, :func:`default_settings` serves one simulator model, ``sim``.
Errors: :class:`ConfigError`, whose message has one ``path: message`` per
mistake, the path dotted as in the file (``models[1].itl_ms: Input should be
greater than or equal to 0``; ``models[0].itl_msx: unknown key; did you mean
'itl_ms'?``); see :mod:`gateway.config_errors`.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .config_auth import ApiKeySettings, AuthSettings, StateSettings
from .config_errors import CROSS_CHECK, describe
from .otel.config import OtelSettings
from .routing.settings import RoutingSettings

__all__ = ["ApiKeySettings", "AuthSettings", "StateSettings"]


class ConfigError(Exception):
    """The configuration file is missing, not TOML, or fails validation.

    ``errors`` holds one ``path: message`` line per mistake (validation only).
    """

    def __init__(self, message: str, errors: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """``[server]``: where to listen and how much a request may carry."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=32 << 20, ge=1024)
    """Largest accepted request body, bytes; larger bodies get 413. 32 MiB:
    Anthropic's Messages API limit, what a coding agent's whole context with
    a few screenshots needs."""
    metrics_enabled: bool = True
    """Record per-stream metrics. Turn off only to measure what they cost."""
    max_streams: int = Field(default=1024, ge=1)
    """Streams open at once; over it, new requests get 429 with ``Retry-After``."""
    max_queued_bytes: int = Field(default=256 << 20, ge=65536)
    """Cap on bytes queued toward all clients together; over it, new requests get 429."""
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    """On SIGTERM/SIGINT, how long open streams may go on before a ``shutdown`` error."""
    drain_delay_s: float = Field(default=0.0, ge=0, le=300)
    """On SIGTERM, first this long "leaving": ``/readyz`` answers 503 while
    requests are still served, so a load balancer that health-checks
    ``/readyz`` stops sending before the listener closes. 0 (default): the
    listener closes at once (a Kubernetes ``preStop`` wait does this job there)."""
    keepalive_timeout_s: float = Field(default=30.0, gt=0)
    """Idle connection lifetime; also bounds a client that sends headers very slowly."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """Time allowed to receive a request body (slow-body clients get 408)."""
    uvloop: bool = True
    """Run on uvloop's event loop when it is installed (off: asyncio's own loop)."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API (``"*"``: any); none by default."""
    backlog: int = Field(default=4096, ge=1)
    """Listen backlog: connections the kernel queues before the gateway accepts
    them (capped by ``net.core.somaxconn``). aiohttp's default, 128, makes a
    burst of new clients wait for SYN retransmits (1 s, then 3 s)."""
    playground: bool | None = None
    """Serve the playground page, ``GET /playground``. Unset: on when the
    gateway listens on a loopback address, off otherwise."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Serve ``GET /metrics`` (and ``/readyz`` with its detail, ``/healthz``)
    on a listener of its own on this port, and no longer on the API port,
    whose ``/readyz`` then says only its status. Unset: ``/metrics`` on the
    API port. With ``--workers N`` every worker listens on it
    (``SO_REUSEPORT``); any one's ``/metrics`` aggregates them all."""
    metrics_host: str | None = None
    """Address of the metrics listener; unset: the API's listen address."""
    max_body_bytes_in_flight: int = Field(default=256 << 20, ge=1024)
    """Request-body bytes held at once by all requests of this process (read,
    parsed, kept for retries until the request ends); beyond it a new body
    waits ``body_budget_wait_s``, then 503. Each of ``--workers N`` has its own."""
    body_budget_wait_s: float = Field(default=2.0, ge=0)
    """How long a body waits for room in ``max_body_bytes_in_flight``."""
    metrics_token_env: str | None = Field(default=None, min_length=1)
    """Name of an environment variable holding a bearer token: ``/metrics``
    then answers 401 without ``Authorization: Bearer <token>``, and
    ``/readyz`` gives its detail (open streams, unconfigured models and their
    variables, the state store) only with it. The variable unset or empty is
    a configuration error. Unset: no token asked."""

    @model_validator(mode="after")
    def _metrics_token_set(self) -> ServerSettings:
        env = self.metrics_token_env
        if env is not None and not os.environ.get(env):
            problem = f"the environment variable {env} is unset or empty"
            raise PydanticCustomError(
                CROSS_CHECK,
                "server.metrics_token_env: {msg}",
                {"problems": [("server.metrics_token_env", problem)], "msg": problem},
            )
        return self

    def metrics_token(self) -> str | None:
        """The token ``metrics_token_env`` names (read now), or None."""
        return os.environ.get(self.metrics_token_env) if self.metrics_token_env else None

    def playground_on(self, listen_host: str | None = None) -> bool:
        """Whether ``GET /playground`` is served: ``playground`` when set, else
        whether ``listen_host`` (default: ``host``) is a loopback address."""
        if self.playground is not None:
            return self.playground
        return is_loopback(self.host if listen_host is None else listen_host)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StreamSettings(_Section):
    """``[stream]``: backpressure bound, timeouts and heartbeats (seconds)."""

    downstream_buffer_bytes: int = Field(default=65536, ge=4096, le=64 << 20)
    """Bound on bytes queued toward one client (asyncio buffer + kernel send queue)."""
    send_timeout_s: float = Field(default=30.0, gt=0)
    """A client that takes no bytes for this long is dropped (reason ``slow_client``)."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    """Connecting to the upstream."""
    ttft_timeout_s: float = Field(default=120.0, gt=0)
    """Upstream request sent -> first content chunk (reason ``upstream_timeout``)."""
    idle_timeout_s: float = Field(default=60.0, gt=0)
    """Longest silence between upstream chunks mid-stream (``upstream_stalled``)."""
    deadline_s: float = Field(default=900.0, gt=0)
    """Whole stream, arrival to last event (reason ``deadline``)."""
    heartbeat_interval_s: float = Field(default=15.0, gt=0)
    """Upstream silence after which the headers are committed and ``: ping``
    comments are sent, every this many seconds, until the next chunk."""


class StreamOverrides(_Section):
    """``[models.stream]``: any ``[stream]`` key, for one model."""

    downstream_buffer_bytes: int | None = Field(default=None, ge=4096, le=64 << 20)
    send_timeout_s: float | None = Field(default=None, gt=0)
    connect_timeout_s: float | None = Field(default=None, gt=0)
    ttft_timeout_s: float | None = Field(default=None, gt=0)
    idle_timeout_s: float | None = Field(default=None, gt=0)
    deadline_s: float | None = Field(default=None, gt=0)
    heartbeat_interval_s: float | None = Field(default=None, gt=0)


class PriceSettings(_Section):
    """``[models.price]``: what a model costs, in USD per million tokens; it
    replaces the price library's (:mod:`gateway.cost.prices`)."""

    input: float = Field(ge=0, le=100_000)
    """Input (prompt) tokens not read from a cache."""
    output: float = Field(ge=0, le=100_000)
    """Output tokens (reasoning included)."""
    cached_input: float | None = Field(default=None, ge=0, le=100_000)
    """Input tokens read from the provider's prompt cache; unset: ``input``."""


class _ModelBase(_Section):
    name: str = Field(min_length=1)
    """The model name clients send."""
    upstream_model: str | None = None
    """The model name sent upstream; defaults to ``name``."""
    stream: StreamOverrides = StreamOverrides()
    """Per-model overrides of ``[stream]``."""
    retries: int = Field(default=0, ge=0, le=10)
    """Retries of a retryable failure before the first token (connect errors, 429,
    500, 502, 503, 504, 529, TTFT timeout), with exponential backoff and jitter."""
    retry_backoff_s: float = Field(default=0.25, gt=0)
    """First backoff; doubles per retry, with jitter, up to ``retry_max_backoff_s``."""
    retry_max_backoff_s: float = Field(default=5.0, gt=0)
    """Longest wait before a retry; a ``Retry-After`` beyond it skips to the fallbacks."""
    fallbacks: tuple[str, ...] = ()
    """Models (by name) tried in order once this one's retries are spent."""
    resumable: bool = False
    """Every Chat Completions stream of this model is resumable (as if the
    request sent ``Sluice-Resumable: true``)."""
    price: PriceSettings | None = None
    """What this model costs (USD per million tokens); unset: the price
    library's when the model is on a provider's public API, else nothing
    (:mod:`gateway.cost.prices`)."""
    # -- deployments (gateway/routing) --
    deployments: tuple[ModelSettings, ...] = ()
    """Several upstreams serving this model (``[[models.deployments]]``), each
    parsed as a model entry: ``name`` (the deployment's), and any provider's
    keys; keys it leaves out are the model's (when it keeps the model's
    ``provider``). Chosen per request by ``routing``; the model's
    ``retries`` move a failure before the first token to another deployment;
    ``fallbacks`` follow once every deployment failed or cools down."""
    routing: RoutingSettings = RoutingSettings()
    """``[models.routing]``: strategy, cooldown, queue (gateway/routing)."""
    weight: float = Field(default=1.0, gt=0)
    """As a deployment: its share under the ``weighted`` strategy."""
    max_concurrent_streams: int | None = Field(default=None, ge=1)
    """As a deployment (or a model without deployments: itself): streams open
    at once; over it, requests wait in the model's queue (``routing.queue_*``).
    Unset: no limit."""

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, data: object) -> object:
        """A deployment without its own ``provider`` (or with the model's) takes
        the model's keys it does not set (all but the model-wide ones)."""
        if not isinstance(data, dict) or not isinstance(data.get("deployments"), list | tuple):
            return data
        inherited = {k: v for k, v in data.items() if k not in _MODEL_WIDE}
        provider = data.get("provider")
        deployments = [
            {**inherited, **d}
            if isinstance(d, dict) and d.get("provider", provider) == provider
            else d
            for d in data["deployments"]
        ]
        return {**data, "deployments": deployments}

    @property
    def routed(self) -> tuple[ModelSettings, ...]:
        """The deployments routing chooses among: ``deployments``, or the model
        itself when it only sets ``max_concurrent_streams``; () otherwise."""
        if self.deployments:
            return self.deployments
        if self.max_concurrent_streams is not None:
            return (self,)  # type: ignore[return-value]
        return ()

    @property
    def target_model(self) -> str:
        return self.upstream_model or self.name

    def missing_key_env(self) -> str | None:
        """The environment variable that should hold this model's upstream key
        and is unset (or empty); None when the key is there or none is needed."""
        return None


_MODEL_WIDE = frozenset(
    {"name", "deployments", "routing", "fallbacks", "retries", "retry_backoff_s",
     "retry_max_backoff_s", "resumable", "stream", "weight", "max_concurrent_streams"}
)  # fmt: skip
"""Keys of a model that apply to it as a whole, never inherited by its deployments."""


class SimModel(_ModelBase):
    """The built-in simulator: deterministic text paced by a monotonic clock."""

    provider: Literal["sim"]
    ttft_ms: float = Field(default=300.0, ge=0)
    itl_ms: float = Field(default=30.0, ge=0)
    output_tokens: int = Field(default=64, ge=1, le=1_000_000)


class EnvRef(_Section):
    """``{ env = "NAME" }``: a value read from the environment variable
    ``NAME`` when the gateway starts (unset or empty: a configuration error)."""

    env: str = Field(min_length=1)


UpstreamValue = str | EnvRef
"""A ``headers`` or ``query`` value: the text itself, or ``{ env = "NAME" }``."""


def upstream_value(value: UpstreamValue) -> str:
    """The text of ``value`` (an :class:`EnvRef` read from the environment now;
    empty when unset, which validation reports first)."""
    return os.environ.get(value.env, "") if isinstance(value, EnvRef) else value


class _RemoteModel(_ModelBase):
    base_url: str | None = None
    """Upstream base URL; defaults to the provider's public API."""
    api_key_env: str | None = None
    """Name of the environment variable holding the upstream API key; unset:
    the provider's usual one (``default_key_env``); ``""``: a keyless server
    (a local Ollama or vLLM), sent no key."""
    default_key_env: ClassVar[str] = ""
    upstream_buffer_bytes: int = Field(default=65536, ge=4096, le=64 << 20)
    """Receive buffer (``SO_RCVBUF``) of upstream sockets: how far the upstream
    can run ahead into the kernel while a slow client holds the relay back."""
    max_response_bytes: int = Field(default=8 << 20, ge=65536, le=1 << 30)
    """Largest non-streaming upstream response body, bytes (8 MiB); a larger
    one is a 502 ``upstream_response_too_large``, read no further."""
    headers: dict[str, UpstreamValue] = {}
    """Extra HTTP headers on every upstream request of this model (streamed
    or not), e.g. ``{ "OpenAI-Organization" = "org-1", "X-Tenant" = { env =
    "TENANT_TOKEN" } }``; a value ``{ env = "NAME" }`` is read from that
    variable at start-up. They are set after the provider's own headers, so
    they may replace one (``Authorization``); values are never logged."""
    query: dict[str, UpstreamValue] = {}
    """Extra query parameters on every upstream request URL (``api-version``,
    a gateway's ``key``), values as in ``headers``; never logged."""

    def upstream_headers(self) -> dict[str, str]:
        """``headers`` with environment references read now."""
        return {name: upstream_value(value) for name, value in self.headers.items()}

    def upstream_query(self) -> dict[str, str]:
        """``query`` with environment references read now."""
        return {name: upstream_value(value) for name, value in self.query.items()}

    def missing_value_envs(self) -> list[tuple[str, str]]:
        """``(key path, variable)`` for each ``headers`` / ``query`` value whose
        environment variable is unset or empty (``headers.X-Tenant``)."""
        return [
            (f"{table}.{name}", value.env)
            for table, values in (("headers", self.headers), ("query", self.query))
            for name, value in values.items()
            if isinstance(value, EnvRef) and not os.environ.get(value.env)
        ]

    @property
    def key_env(self) -> str:
        """The variable holding the key (``""``: keyless)."""
        return self.default_key_env if self.api_key_env is None else self.api_key_env

    def api_key(self, default_env: str = "") -> str:
        """The key from ``api_key_env`` (or ``default_env`` when that is unset);
        empty for a keyless server or an unset variable."""
        env = (
            (default_env or self.default_key_env) if self.api_key_env is None else self.api_key_env
        )
        return os.environ.get(env, "") if env else ""

    def missing_key_env(self) -> str | None:
        env = self.key_env
        return env if env and not os.environ.get(env) else None


class OpenAIModel(_RemoteModel):
    """OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...)."""

    provider: Literal["openai"]
    default_key_env: ClassVar[str] = "OPENAI_API_KEY"
    stream_usage: bool = True
    """Ask upstream for a usage chunk (``stream_options.include_usage``) even when
    the client did not, so token metrics are exact; the chunk is then not relayed."""
    responses_api: Literal["native", "chat"] = "chat"
    """How ``/v1/responses`` reaches this upstream: ``native`` relays to its own
    ``/responses`` endpoint byte for byte (OpenAI, vLLM); ``chat`` translates
    through Chat Completions (any OpenAI-compatible server)."""
    max_tokens_field: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto"
    """The name a request's length cap is sent under (a client's ``max_tokens``
    or ``max_completion_tokens``, a Responses ``max_output_tokens``, a Messages
    ``max_tokens``): ``auto`` is ``max_completion_tokens`` for OpenAI's own API
    (no ``base_url``, ``api.openai.com``, Azure OpenAI: its reasoning models
    reject ``max_tokens``) and ``max_tokens`` for any other server (llama.cpp,
    Ollama and older servers ignore ``max_completion_tokens``)."""

    @property
    def length_field(self) -> Literal["max_tokens", "max_completion_tokens"]:
        """:attr:`max_tokens_field` with ``auto`` resolved by the base URL's host."""
        if self.max_tokens_field != "auto":
            return self.max_tokens_field
        host = urlsplit(self.base_url).hostname if self.base_url else "api.openai.com"
        if host == "api.openai.com" or (host or "").endswith(".openai.azure.com"):
            return "max_completion_tokens"
        return "max_tokens"


class AnthropicModel(_RemoteModel):
    """Anthropic's Messages API."""

    provider: Literal["anthropic"]
    default_key_env: ClassVar[str] = "ANTHROPIC_API_KEY"


AZURE_HOST_SUFFIXES = (
    ".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com",
)  # fmt: skip
"""Hosts of Azure OpenAI resource endpoints (the usual key goes there unwarned)."""


class AzureModel(OpenAIModel):
    """An Azure OpenAI deployment (docs/azure.md). ``base_url``: the
    resource's endpoint, ``https://{resource}.openai.azure.com``; unset: the
    ``AZURE_OPENAI_ENDPOINT`` variable (as the openai SDK reads it; unset
    too: the model is unconfigured, 503, like a missing key). With
    ``api_version`` set: ``{base_url}/openai/deployments/{deployment}/chat/
    completions?api-version=...``; unset: the v1 API,
    ``{base_url}/openai/v1/chat/completions`` (the deployment as ``model``).
    Key: the ``api-key`` header from ``api_key_env`` (default
    ``AZURE_OPENAI_API_KEY``), or with ``entra_token_env`` a Microsoft Entra
    ID token as ``Authorization: Bearer``. Every OpenAIModel key applies
    (``responses_api = "native"``: Azure's own Responses API)."""

    provider: Literal["azure"]  # type: ignore[assignment]
    default_key_env: ClassVar[str] = "AZURE_OPENAI_API_KEY"
    deployment: str | None = Field(default=None, min_length=1)
    """The deployment name; unset: ``upstream_model``, else ``name``."""
    api_version: str | None = Field(default=None, min_length=1)
    """``api-version`` of the classic deployments API (e.g. ``"2024-10-21"``);
    unset: the v1 API (``/openai/v1/``, no version)."""
    entra_token_env: str | None = Field(default=None, min_length=1)
    """Name of a variable holding a Microsoft Entra ID access token (scope
    ``https://cognitiveservices.azure.com/.default``), sent as
    ``Authorization: Bearer``, instead of the ``api-key``; read at start-up."""

    endpoint_env: ClassVar[str] = "AZURE_OPENAI_ENDPOINT"

    @property
    def endpoint(self) -> str:
        """``base_url``, else the ``AZURE_OPENAI_ENDPOINT`` variable (read now);
        empty when neither is set."""
        return self.base_url or os.environ.get(self.endpoint_env, "")

    def missing_key_env(self) -> str | None:
        """``AZURE_OPENAI_ENDPOINT`` when no endpoint is known, else the
        credential's variable when it is unset."""
        return self.endpoint_env if not self.endpoint else super().missing_key_env()

    @property
    def target_model(self) -> str:
        """The deployment: ``deployment``, else ``upstream_model``, else ``name``."""
        return self.deployment or self.upstream_model or self.name

    @property
    def key_env(self) -> str:
        """``entra_token_env`` when set, else the ``api-key`` variable."""
        if self.entra_token_env is not None:
            return self.entra_token_env
        return super().key_env

    def api_key(self, default_env: str = "") -> str:
        """The credential :attr:`key_env` holds (a key or an Entra token)."""
        env = self.key_env
        return os.environ.get(env, "") if env else ""

    @property
    def on_azure_host(self) -> bool:
        """Whether the endpoint is an Azure resource's host."""
        host = urlsplit(self.endpoint).hostname or ""
        return host.endswith(AZURE_HOST_SUFFIXES)

    @property
    def length_field(self) -> Literal["max_tokens", "max_completion_tokens"]:
        """``auto``: ``max_completion_tokens`` (Azure's reasoning models reject
        ``max_tokens``; every current api-version accepts it)."""
        if self.max_tokens_field != "auto":
            return self.max_tokens_field
        return "max_completion_tokens"


class BedrockModel(_RemoteModel):
    """AWS Bedrock's Converse API (``ConverseStream`` / ``Converse``);
    ``upstream_model`` is the Bedrock model or inference profile id
    (``anthropic.claude-3-5-haiku-20241022-v1:0``, ``us.amazon.nova-lite-v1:0``,
    an ARN). ``base_url`` overrides the endpoint
    (``https://bedrock-runtime.{region}.amazonaws.com``); ``api_key_env``
    names the variable holding a Bedrock API key (default
    ``AWS_BEARER_TOKEN_BEDROCK``)."""

    provider: Literal["bedrock"]
    default_key_env: ClassVar[str] = "AWS_BEARER_TOKEN_BEDROCK"
    region: str | None = Field(default=None, min_length=1)
    """AWS region; unset: ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else ``us-east-1``."""
    auth: Literal["auto", "sigv4", "bearer"] = "auto"
    """``bearer``: the API key as ``Authorization: Bearer``; ``sigv4``: SigV4
    with credentials from the standard AWS chain (environment, ``profile``,
    container and instance roles); ``auto``: the key when its variable is
    set, else SigV4."""
    profile: str | None = Field(default=None, min_length=1)
    """AWS shared-config profile for SigV4 credentials (unset: ``AWS_PROFILE`` or default)."""
    max_message_bytes: int = Field(default=1 << 20, ge=1024, le=16 << 20)
    """Largest event-stream message accepted from the upstream, bytes (1 MiB);
    a larger one ends the stream with ``upstream_protocol_error``, read no further."""

    @property
    def aws_region(self) -> str:
        """:attr:`region`, else the environment's, else ``us-east-1``."""
        return (
            self.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )

    def missing_key_env(self) -> str | None:
        # SigV4 credentials come from the AWS chain, resolved at start-up
        # (the provider reports them missing); only ``bearer`` needs the key.
        return super().missing_key_env() if self.auth == "bearer" else None


class GeminiModel(_RemoteModel):
    """Google Gemini: the Gemini API with a key (``x-goog-api-key``), or
    Vertex AI with Google credentials when ``vertex_project`` is set
    (:mod:`gateway.providers.gemini`). ``base_url`` is everything before
    ``/models/{model}:streamGenerateContent``."""

    provider: Literal["gemini"]
    default_key_env: ClassVar[str] = "GEMINI_API_KEY"
    vertex_project: str | None = Field(default=None, min_length=1)
    """Serve through Vertex AI in this Google Cloud project, authenticated
    with application default credentials (``google-auth``); no key is read.
    Unset: the Gemini API (``generativelanguage.googleapis.com``) with a key."""
    vertex_location: str = Field(default="us-central1", pattern=r"^[a-z0-9-]+$")
    """Vertex AI region (``global`` for the global endpoint)."""

    @property
    def key_env(self) -> str:
        """``""`` on Vertex AI (no key is read or sent), else as for any model."""
        return "" if self.vertex_project else super().key_env


RemoteModel = OpenAIModel | AnthropicModel | BedrockModel | GeminiModel
"""Any model on a remote upstream (every provider but the simulator; Azure's
is an OpenAIModel)."""

ModelSettings = Annotated[
    SimModel | OpenAIModel | AnthropicModel | AzureModel | BedrockModel | GeminiModel,
    Field(discriminator="provider"),
]


class StoreSettings(_Section):
    """``[store]``: the stream store (stored and background responses), in memory."""

    ttl_s: float = Field(default=3600.0, gt=0)
    """A finished stream stays readable (and resumable) for this long."""
    max_bytes: int = Field(default=256 << 20, ge=65536)
    """All streams together; the oldest finished ones are evicted first."""
    stream_max_bytes: int = Field(default=8 << 20, ge=4096)
    """One stream; a generation past it stops with an error (never unbounded)."""
    resume_ttl_s: float = Field(default=300.0, gt=0)
    """A finished resumable Chat Completions stream stays resumable this long."""
    producer_lease_s: float = Field(default=5.0, gt=0, le=300)
    """With Redis: a running stream's producer renews a lease this long (every
    third of it); when the lease lapses without the stream ending (its replica
    was killed), readers on other replicas end with ``producer_lost`` within
    about this long plus a second."""


class Settings(_Section):
    """The whole configuration; see the module docstring for the file shape."""

    server: ServerSettings = ServerSettings()
    stream: StreamSettings = StreamSettings()
    store: StoreSettings = StoreSettings()
    models: tuple[ModelSettings, ...] = Field(min_length=1)
    auth: AuthSettings = AuthSettings()
    state: StateSettings = StateSettings()
    otel: OtelSettings = OtelSettings()

    @model_validator(mode="after")
    def _check_models(self) -> Settings:
        problems: list[tuple[str, str]] = []
        first: dict[str, int] = {}
        for i, m in enumerate(self.models):
            if m.name in first:
                problems.append(
                    (f"models[{i}].name", f"duplicate model name {m.name!r} "
                     f"(models[{first[m.name]}] has it too)")
                )  # fmt: skip
            first.setdefault(m.name, i)
        for i, m in enumerate(self.models):
            for fallback in m.fallbacks:
                if fallback not in first or fallback == m.name:
                    problems.append(
                        (f"models[{i}].fallbacks", f"{fallback!r} is not another configured model")
                    )
        problems.extend(_check_keys(self.auth.keys, first))
        problems.extend(_check_value_envs(self.models))
        problems.extend(_check_deployments(self.models))
        if problems:
            raise PydanticCustomError(
                CROSS_CHECK, "; ".join(f"{p}: {m}" for p, m in problems), {"problems": problems}
            )
        return self

    def stream_for(self, model: ModelSettings) -> StreamSettings:
        """``[stream]`` with ``model``'s overrides applied (computed once per model)."""
        return self._streams[model.name]

    @cached_property
    def _streams(self) -> dict[str, StreamSettings]:
        out = {}
        for m in self.models:
            overrides = m.stream.model_dump(exclude_none=True)
            out[m.name] = self.stream.model_copy(update=overrides) if overrides else self.stream
        return out

    def model(self, name: str) -> ModelSettings | None:
        """The configured model a client calls ``name``, or None."""
        for m in self.models:
            if m.name == name:
                return m
        return None


def _check_keys(keys: tuple[ApiKeySettings, ...], models: dict[str, int]) -> list[tuple[str, str]]:
    """Duplicate key names or digests; allow-lists naming unknown models."""
    problems: list[tuple[str, str]] = []
    names: dict[str, int] = {}
    digests: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key.name in names:
            problems.append(
                (f"auth.keys[{i}].name",
                 f"duplicate key name {key.name!r} (auth.keys[{names[key.name]}] has it too)")
            )  # fmt: skip
        if key.sha256 in digests:
            problems.append(
                (f"auth.keys[{i}].sha256",
                 f"the same secret as auth.keys[{digests[key.sha256]}]")
            )  # fmt: skip
        names.setdefault(key.name, i)
        digests.setdefault(key.sha256, i)
        for model in key.models or ():
            if model not in models:
                problems.append((f"auth.keys[{i}].models", f"{model!r} is not a configured model"))
    return problems


def _check_value_envs(models: tuple[ModelSettings, ...]) -> list[tuple[str, str]]:
    """``headers`` / ``query`` values naming an unset environment variable, on
    a model or one of its deployments."""
    entries = [(f"models[{i}]", m) for i, m in enumerate(models)] + [
        (f"models[{i}].deployments[{j}]", d)
        for i, m in enumerate(models)
        for j, d in enumerate(m.deployments)
    ]
    return [
        (f"{where}.{path}", f"the environment variable {env} is unset or empty")
        for where, m in entries
        if not isinstance(m, SimModel)
        for path, env in m.missing_value_envs()
    ]


def _check_deployments(models: tuple[ModelSettings, ...]) -> list[tuple[str, str]]:
    """Deployment names unique within a model; no deployments or fallbacks of a
    deployment, nor a model-wide key (retries, routing, stream, ...) it would ignore."""
    problems: list[tuple[str, str]] = []
    for i, m in enumerate(models):
        seen: set[str] = set()
        for j, d in enumerate(m.deployments):
            where = f"models[{i}].deployments[{j}]"
            if d.name in seen:
                problems.append((f"{where}.name", f"duplicate deployment name {d.name!r}"))
            seen.add(d.name)
            if d.deployments or d.fallbacks:
                problems.append((where, "a deployment has no deployments or fallbacks of its own"))
            for key in sorted(d.model_fields_set & _MODEL_WIDE - {"name", "weight",
                              "max_concurrent_streams", "deployments", "fallbacks"}):  # fmt: skip
                problems.append((f"{where}.{key}", "applies to the model as a whole; set it there"))
    return problems


def default_settings() -> Settings:
    """The embedded default: one simulator model named ``sim``."""
    return Settings(models=(SimModel(name="sim", provider="sim"),))


_PROVIDERS: dict[str, type[BaseModel]] = {
    "openai": OpenAIModel,
    "anthropic": AnthropicModel,
    "azure": AzureModel,
    "bedrock": BedrockModel,
    "gemini": GeminiModel,
    "sim": SimModel,
}
"""``provider`` values, in the order error messages list them."""


def parse_settings(data: dict[str, object]) -> Settings:
    """Validate a decoded TOML document. Raises :class:`ConfigError`."""
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        lines = tuple(describe(err, Settings, _PROVIDERS))
        raise ConfigError(f"invalid configuration: {'; '.join(lines)}", lines) from None


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
