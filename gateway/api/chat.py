"""The one path every chat route takes once its body is validated: model
lookup, admission, dialect bridging for the primary and each fallback, then
the stream (:class:`~gateway.stream.Stream`) or one upstream call with
retries (non-streaming)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from ..attempts import Target, with_fallbacks
from ..auth import check_model, stash_view
from ..config import ModelSettings, Settings
from ..dialects import bridge
from ..dialects.anthropic import usage_of as anthropic_usage_of
from ..dialects.openai import usage_of as openai_usage_of
from ..errors import DeadlineExceeded, ModelNotFound, ShuttingDown, UpstreamNotConfigured
from ..interrupts import Interrupter
from ..providers.base import Dialect, Provider
from ..recorder import Recorder, make_recorder
from ..state import ADMISSION, ARRIVAL, KEY, METRICS, PROVIDERS, QUOTAS, SETTINGS, SUMMARY
from ..stream import Stream
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
    """Serve ``call``. Raises ``GatewayError`` (rendered by the middleware).

    A keyed request is checked against the key's models (403) and limits
    (429, or 503 when the quota store does not answer) before it is admitted,
    and charged the tokens it spent when it ends, however it ends."""
    targets = _targets(request, call)
    key = request.get(KEY)
    if key is None:
        return await _serve(request, call, targets, _Spent(targets[0].model))
    check_model(request, call.model)
    quotas = request.app[QUOTAS]
    ticket = await quotas.admit(key, stash_view(request))
    spent = _Spent(targets[0].model)
    try:
        return await _serve(request, call, targets, spent)
    finally:
        # Shielded: a client that leaves cancels this task, and its slot and
        # tokens must still be settled.
        await quotas.settle_shielded(ticket, spent.model, spent.input_tokens, spent.output_tokens)


@dataclass(slots=True)
class _Spent:
    """What a request spent, filled in as it ends (for the key's quota)."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0


async def _serve(
    request: web.Request, call: ChatCall, targets: tuple[Target, ...], spent: _Spent
) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    primary = targets[0]
    admission = request.app[ADMISSION]
    recorder = make_recorder(
        request.app[METRICS] if settings.server.metrics_enabled else None,
        model=primary.model,
        provider=primary.provider.kind,
        route=call.route,
    )
    if call.stream:
        clock = StreamClock(request.get(ARRIVAL, time.perf_counter()))
        stream = Stream(request, targets, clock, recorder, admission)
        admission.admit(stream)
        try:
            return await stream.run()
        finally:
            admission.release(stream)
            outcome = stream.outcome
            if outcome is not None:
                spent.model = outcome.model
                spent.input_tokens = outcome.input_tokens or 0
                spent.output_tokens = outcome.output_tokens
                # Onto the request's one summary line (the middleware writes it).
                request[SUMMARY].update(outcome.log_fields())
    interrupter = Interrupter(_current_task())
    admission.admit(interrupter)
    try:
        return await _complete(call, targets, recorder, interrupter, spent)
    finally:
        admission.release(interrupter)


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
    usage = usage_of(payload)
    spent.model = target.model
    if usage is not None:
        recorder.tokens(usage.output_tokens, usage.input_tokens)
        spent.input_tokens = usage.input_tokens or 0
        spent.output_tokens = usage.output_tokens or 0
    out = bridge.response_body(call.client, target.provider.dialect, payload, model=call.model)
    return web.Response(body=orjson.dumps(out), content_type="application/json")
