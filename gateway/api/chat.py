"""The one path every chat route takes once its body is validated: model
lookup, admission, dialect bridging for the primary and each fallback, then
the stream (:class:`~gateway.stream.Stream`) or one upstream call with
retries (non-streaming)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web

from ..attempts import Target, with_fallbacks
from ..config import ModelSettings, Settings, SimModel
from ..cost.estimate import answer_usage
from ..dialects import bridge
from ..dialects.anthropic import parse_messages_request
from ..dialects.anthropic import usage_of as anthropic_usage_of
from ..dialects.openai import parse_chat_request
from ..dialects.openai import usage_of as openai_usage_of
from ..dialects.translate_responses import DEFAULT_MAX_OUTPUT_BYTES
from ..downstream import StoreDownstream, StoreWriter, TeeDownstream
from ..errors import (
    DeadlineExceeded,
    ModelNotFound,
    ShuttingDown,
    UpstreamNotConfigured,
)
from ..interrupts import Interrupter
from ..otel.hooks import call_usage
from ..providers.base import Provider
from ..recorder import Recorder, make_recorder
from ..routing.build import ROUTERS, missing_key_env
from ..routing.route import Route, affinity_key
from ..routing.router import Deployment, ModelRouter
from ..split_body import SplitBody
from ..sse import BLANK_HEARTBEAT, HEARTBEAT, SSEResponse
from ..state import (
    ADMISSION,
    ARRIVAL,
    DETACHED,
    KEY,
    METRICS,
    NATIVE_RESPONSES,
    PROVIDERS,
    SETTINGS,
    SUMMARY,
)
from ..stream import Stream
from ..timing import StreamClock
from .follow import owner_of
from .hold import Hold, run_stream


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A validated chat request, whatever the client's dialect."""

    client: bridge.ClientDialect
    route: str
    model: str
    stream: bool
    include_usage: bool
    body: dict[str, Any]
    response_id: str | None = None
    """Responses API: the id of the Response (and its key in the stream store)."""
    keep: StoreWriter | None = None
    """Responses API: keep a copy of the stream's events in the stream store."""


def _target(call: ChatCall, settings: Settings, model: ModelSettings, provider: Provider) -> Target:
    output_bound = (
        DEFAULT_MAX_OUTPUT_BYTES if isinstance(model, SimModel) else model.max_response_bytes
    )
    return Target(
        model=model.name,
        provider=provider,
        body=_upstream_body(call, provider),
        encoder=bridge.stream_encoder(
            call.client,
            provider.dialect,
            include_usage=call.include_usage,
            model=call.model,
            body=call.body,
            response_id=call.response_id,
            max_output_bytes=output_bound,
        ),
        settings=settings.stream_for(model),
        retries=model.retries,
        backoff_s=model.retry_backoff_s,
        max_backoff_s=model.retry_max_backoff_s,
    )


def _upstream_body(call: ChatCall, provider: Provider) -> dict[str, Any]:
    """The body for ``provider``: a large body (:class:`SplitBody`) goes as the
    client's bytes when nothing but the provider's own fields must change
    (same dialect, a provider that declares ``takes_split_body``); otherwise
    it is decoded whole and bridged."""
    body = call.body
    if isinstance(body, SplitBody):
        if call.client == provider.dialect and getattr(provider, "takes_split_body", False):
            return body
        body = body.whole()
        # Decoded whole, it is validated whole (the gateway works per message now).
        (parse_messages_request if call.client == "anthropic" else parse_chat_request)(body)
    return bridge.upstream_body(call.client, provider.dialect, body)


def _targets(request: web.Request, call: ChatCall) -> tuple[Target, ...]:
    settings = request.app[SETTINGS]
    request[SUMMARY]["model"] = call.model
    model = settings.model(call.model)
    if model is None:
        raise ModelNotFound(
            f"The model '{call.model}' does not exist; see GET /v1/models", param="model"
        )
    if (env := missing_key_env(model)) is not None:
        raise UpstreamNotConfigured(
            f"The model '{model.name}' has no upstream API key configured", detail=f"{env} is unset"
        )
    providers: dict[str, Provider] = request.app[PROVIDERS]
    if call.client == "responses":
        # Upstreams that speak Responses natively get the request as is.
        native: dict[str, Provider] = request.app[NATIVE_RESPONSES]
        providers = {**providers, **native}
    # A fallback the key may not use is skipped: a fallback serves (and is
    # charged) like a request for it.
    key = request.get(KEY)
    allowed = key.models if key is not None else None
    chain = [
        model,
        *(
            m
            for name in model.fallbacks
            if (m := settings.model(name)) is not None and (allowed is None or name in allowed)
        ),
    ]
    routers = request.app.get(ROUTERS, {})
    return tuple(
        _target(call, settings, m, providers[m.name])
        if m.name not in routers
        else _routed_target(request, call, settings, m, routers[m.name])
        for m in chain
    )


def _routed_target(
    request: web.Request,
    call: ChatCall,
    settings: Settings,
    model: ModelSettings,
    router: ModelRouter,
) -> Target:
    """A model with deployments: a target that stands for them all (its first
    deployment's dialect, for errors before any answered), whose attempts go
    through a :class:`~gateway.routing.route.Route`. A deployment of another
    dialect gets a target of its own, built when it is chosen."""
    first = router.deployments[0].provider
    primary = _target(call, settings, model, first)

    def make(deployment: Deployment) -> Target:
        provider = deployment.provider
        if provider.dialect == first.dialect:
            return replace(primary, provider=provider, route=None)
        return _target(call, settings, model, provider)

    summary = request[SUMMARY]

    def served(name: str) -> None:
        summary["deployment"] = name

    key = affinity_key(request, call.body, model.routing.affinity_header)
    return replace(primary, route=Route(router, make, key=key, served=served))


async def serve(request: web.Request, call: ChatCall) -> web.StreamResponse:
    """Serve ``call``. Raises ``GatewayError`` (rendered by the middleware).

    A keyed request is checked against the key's models (403) and limits
    (429, or 503 when the quota store does not answer) before it is admitted,
    and charged the tokens it spent when it ends, however it ends."""
    targets = _targets(request, call)
    recorder = _recorder(request, call, targets)
    if call.stream:
        primary = targets[0]
        sse = SSEResponse(
            request,
            buffer_bytes=primary.settings.downstream_buffer_bytes,
            send_timeout_s=primary.settings.send_timeout_s,
            heartbeat=BLANK_HEARTBEAT if call.client == "gemini" else HEARTBEAT,
        )
        downstream = sse if call.keep is None else TeeDownstream(sse, call.keep)
        clock = StreamClock(request.get(ARRIVAL, time.perf_counter()))
        stream = Stream(downstream, targets, clock, recorder, request.app[ADMISSION])
        await run_stream(request, stream, call.model)
        return sse.response
    interrupter = Interrupter(_current_task())
    hold = await Hold.take(request, interrupter, call.model, charge_key=True)
    spent = _Spent(targets[0].model)
    try:
        return await _complete(call, targets, recorder, interrupter, spent)
    finally:
        await hold.release(
            spent.model,
            spent.input_tokens,
            spent.output_tokens,
            cached_input_tokens=spent.cached_input_tokens,
            estimated=spent.estimated,
        )


def _recorder(request: web.Request, call: ChatCall, targets: tuple[Target, ...]) -> Recorder:
    metrics = request.app[METRICS] if request.app[SETTINGS].server.metrics_enabled else None
    primary = targets[0]
    return make_recorder(
        metrics, model=primary.model, provider=primary.provider.kind, route=call.route
    )


@dataclass(slots=True)
class _Spent:
    """What a non-streaming request spent, filled in as it ends (for the key's quota)."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    estimated: bool = False


async def detach(request: web.Request, call: ChatCall, writer: StoreWriter) -> None:
    """Start ``call`` (a stream) detached from ``request``: it runs on, into the
    stream store, after the request is answered. Raises ``GatewayError`` now
    for what fails before it starts (unknown model, the key's models and
    limits, admission); the key is charged when the generation ends. A
    generation that fails before its first event still ends its stored
    stream (with its error event), so its readers end too."""
    assert call.response_id is not None
    targets = _targets(request, call)
    stream = Stream(
        StoreDownstream(writer),
        targets,
        StreamClock(),
        _recorder(request, call, targets),
        request.app[ADMISSION],
    )
    ended: dict[str, object] = {}  # the spend, for the detached_end line
    hold = await Hold.take(request, stream, call.model, charge_key=True, summary=ended)

    async def run() -> None:
        try:
            await stream.run()
        finally:
            await hold.release_stream(stream.outcome)

    request.app[DETACHED].start(call.response_id, stream, run, owner_of(request), ended)


def _current_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None
    return task


async def _complete(
    call: ChatCall,
    targets: tuple[Target, ...],
    recorder: Recorder,
    interrupter: Interrupter,
    spent: _Spent,
) -> web.Response:
    async def attempt(target: Target) -> tuple[Target, dict[str, Any]]:
        return target, await target.provider.complete(target.body)

    try:
        async with asyncio.timeout(targets[0].settings.deadline_s):
            try:
                target, payload = await with_fallbacks(targets, attempt, recorder)
            except asyncio.CancelledError:
                if interrupter.take() is None:
                    raise
                raise ShuttingDown("The gateway is shutting down") from None
    except TimeoutError:
        raise DeadlineExceeded("The request exceeded its deadline") from None
    finally:
        interrupter.disarm()
    usage_of = openai_usage_of if target.provider.dialect == "openai" else anthropic_usage_of
    usage = answer_usage(call.body, payload, target.provider.dialect, usage_of(payload))
    spent.model = target.model
    spent.estimated = usage.estimated
    recorder.tokens(usage.output_tokens, usage.input_tokens)
    call_usage(usage.input_tokens, usage.output_tokens)  # OpenTelemetry (when on)
    spent.input_tokens = usage.input_tokens or 0
    spent.output_tokens = usage.output_tokens or 0
    spent.cached_input_tokens = usage.cached_input_tokens
    out = bridge.response_body(
        call.client,
        target.provider.dialect,
        payload,
        model=call.model,
        body=call.body,
        response_id=call.response_id,
    )
    return web.Response(body=orjson.dumps(out), content_type="application/json")
