"""The one path every chat route takes once its body is validated: model
lookup, admission, dialect bridging for the primary and each fallback, then
the relay (streaming) or one upstream call with retries (non-streaming)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from ..admission import StreamHandle
from ..attempts import Target, with_fallbacks
from ..config import ModelSettings, Settings
from ..dialects import bridge
from ..dialects.anthropic import usage_of as anthropic_usage_of
from ..dialects.openai import usage_of as openai_usage_of
from ..errors import DeadlineExceeded, ModelNotFound, ShuttingDown, UpstreamNotConfigured
from ..providers.base import Dialect, Provider
from ..recorder import StreamRecorder
from ..relay import StreamJob, relay
from ..state import ADMISSION, ARRIVAL, METRICS, PROVIDERS, SETTINGS, SUMMARY
from ..timing import StreamClock


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A validated chat request, whatever the client's dialect."""

    client: Dialect
    route: str
    model: str
    stream: bool
    include_usage: bool
    body: dict[str, Any]


def _target(call: ChatCall, settings: Settings, model: ModelSettings, provider: Provider) -> Target:
    return Target(
        model=model.name,
        provider=provider,
        body=bridge.upstream_body(call.client, provider.dialect, call.body),
        encoder=bridge.stream_encoder(
            call.client, provider.dialect, include_usage=call.include_usage, model=call.model
        ),
        settings=settings.stream_for(model),
        retries=model.retries,
        backoff_s=model.retry_backoff_s,
        max_backoff_s=model.retry_max_backoff_s,
    )


def _targets(request: web.Request, call: ChatCall) -> tuple[Target, ...]:
    settings = request.app[SETTINGS]
    request[SUMMARY]["model"] = call.model
    model = settings.model(call.model)
    if model is None:
        raise ModelNotFound(
            f"The model '{call.model}' does not exist; see GET /v1/models", param="model"
        )
    if (env := model.missing_key_env()) is not None:
        raise UpstreamNotConfigured(
            f"The model '{model.name}' has no upstream API key configured", detail=f"{env} is unset"
        )
    providers = request.app[PROVIDERS]
    chain = [model, *(m for name in model.fallbacks if (m := settings.model(name)) is not None)]
    return tuple(_target(call, settings, m, providers[m.name]) for m in chain)


async def serve(request: web.Request, call: ChatCall) -> web.StreamResponse:
    """Serve ``call``. Raises ``GatewayError`` (rendered by the middleware)."""
    settings = request.app[SETTINGS]
    metrics = request.app[METRICS]
    targets = _targets(request, call)
    primary = targets[0]
    admission = request.app[ADMISSION]
    handle = admission.admit()
    recorder = StreamRecorder(
        metrics if settings.server.metrics_enabled else None,
        model=primary.model,
        provider=primary.provider.kind,
        route=call.route,
        admission=admission,
    )
    try:
        if call.stream:
            clock = StreamClock(request.get(ARRIVAL, time.perf_counter()))
            return await relay(StreamJob(request, targets, recorder, clock, handle))
        return await _complete(call, targets, recorder, handle)
    finally:
        admission.release(handle)


async def _complete(
    call: ChatCall, targets: tuple[Target, ...], recorder: StreamRecorder, handle: StreamHandle
) -> web.Response:
    async def attempt(target: Target) -> tuple[Target, dict[str, Any]]:
        return target, await target.provider.complete(target.body)

    try:
        async with asyncio.timeout(targets[0].settings.deadline_s) as timer:
            handle.timeout = timer
            target, payload = await with_fallbacks(targets, attempt, recorder)
    except TimeoutError:
        if handle.stop_reason == "shutdown":
            raise ShuttingDown("The gateway is shutting down") from None
        raise DeadlineExceeded("The request exceeded its deadline") from None
    finally:
        handle.timeout = None
    usage_of = openai_usage_of if target.provider.dialect == "openai" else anthropic_usage_of
    usage = usage_of(payload)
    if usage is not None:
        recorder.tokens(usage.output_tokens, usage.input_tokens)
    out = bridge.response_body(call.client, target.provider.dialect, payload, model=call.model)
    return web.Response(body=orjson.dumps(out), content_type="application/json")
