"""The one path every chat route takes once its body is validated:
model lookup, dialect bridging, then the relay (streaming) or one upstream
call (non-streaming)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from ..dialects import bridge
from ..dialects.openai import usage_of
from ..errors import ModelNotFound
from ..providers.base import Dialect
from ..recorder import StreamRecorder
from ..relay import StreamJob, relay
from ..state import ARRIVAL, METRICS, PROVIDERS, SETTINGS
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


async def serve(request: web.Request, call: ChatCall) -> web.StreamResponse:
    """Serve ``call``. Raises ``GatewayError`` (rendered by the middleware)."""
    settings = request.app[SETTINGS]
    model = settings.model(call.model)
    if model is None:
        raise ModelNotFound(
            f"The model '{call.model}' does not exist; see GET /v1/models", param="model"
        )
    provider = request.app[PROVIDERS][model.name]
    metrics = request.app[METRICS]
    body = bridge.upstream_body(call.client, provider.dialect, call.body)
    if not call.stream:
        payload = await provider.complete(body)
        usage = usage_of(payload) if provider.dialect == "openai" else None
        if usage is not None:
            labels = (model.name, provider.kind)
            if usage.output_tokens:
                metrics.output_tokens.labels(*labels).inc(usage.output_tokens)
            if usage.input_tokens:
                metrics.input_tokens.labels(*labels).inc(usage.input_tokens)
        out = bridge.response_body(call.client, provider.dialect, payload, model=call.model)
        return web.Response(body=orjson.dumps(out), content_type="application/json")
    job = StreamJob(
        request=request,
        provider=provider,
        body=body,
        encoder=bridge.stream_encoder(
            call.client, provider.dialect, include_usage=call.include_usage, model=call.model
        ),
        settings=settings.stream,
        recorder=StreamRecorder(
            metrics if settings.server.metrics_enabled else None,
            model=model.name,
            provider=provider.kind,
            route=call.route,
        ),
        clock=StreamClock(request.get(ARRIVAL, time.perf_counter())),
        model=model.name,
    )
    return await relay(job)
