"""OpenTelemetry GenAI telemetry against an OTLP receiver (tests/otlp_receiver.py,
the official opentelemetry-proto messages): metric names, units, bucket
boundaries and attributes by the GenAI semantic conventions, and the span
tree (server span, sibling attempt spans for a retry and a fallback,
``traceparent`` in and out), for a stream in each client dialect, a
failure and a fallback. Off by default, and then nothing is exported or sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.app import startup_fields
from gateway.otel import metrics as M
from gateway.otel.hooks import OTEL
from gateway.otel.tracing import RequestTrace
from tests.fake_anthropic import FakeAnthropic, anthropic_model, text_events, wire
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import SIM_FAST, GatewayFactory, openai_model, settings_from
from tests.otlp_receiver import Received, grpc_receiver, receiver_app

SERVER, CLIENT = 2, 3  # OTLP Span.SpanKind
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
async def receiver(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Received, str]:
    received = Received()
    server = await aiohttp_server(receiver_app(received))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # ms: spans leave at once
    return received, str(server.make_url("")).rstrip("/")


def _models(fake: FakeOpenAI, second: FakeOpenAI, claude: FakeAnthropic) -> list[dict[str, Any]]:
    return [
        openai_model(fake),
        anthropic_model(claude),
        {
            **openai_model(second),
            "name": "flaky",
            "retries": 1,
            "retry_backoff_s": 0.01,
            "retry_max_backoff_s": 0.01,
            "fallbacks": ["claude"],
        },
    ]


async def _stream(client: Any, path: str, body: dict[str, Any], **headers: str) -> int:
    resp = await client.post(path, json={**body, "stream": True}, headers=headers)
    await resp.read()
    return int(resp.status)


async def test_genai_metrics_and_spans_over_otlp(
    gateway: GatewayFactory,
    fake_openai: FakeOpenAI,
    second_fake: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
    receiver: tuple[Received, str],
    log_lines: Any,
) -> None:
    received, endpoint = receiver
    second_fake.script = Script(status=503)
    pieces = ["one ", "two ", "three"]
    fake_openai.script = Script(events=[*(sse(chunk(p)) for p in pieces), sse("[DONE]")])
    fake_anthropic.script = Script(events=wire(text_events(pieces)))
    client = await gateway(
        models=_models(fake_openai, second_fake, fake_anthropic),
        otel={
            "enabled": True,
            "endpoint": endpoint,
            "metric_export_interval_s": 0.1,
            "chunk_metric": True,
            "prometheus": True,
        },
    )
    chat = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
    messages = {
        "model": "claude",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    assert await _stream(client, "/v1/chat/completions", chat) == 200
    assert await _stream(client, "/v1/messages", messages, traceparent=traceparent) == 200
    assert await _stream(client, "/v1/responses", {"model": "up", "input": "hi"}) == 200
    assert await _stream(client, "/v1/chat/completions", {**chat, "model": "flaky"}) == 200
    plain = await client.post("/v1/chat/completions", json=chat)  # not streamed
    assert plain.status == 200 and (await plain.json())["usage"]["prompt_tokens"] == 3
    fake_openai.queue.append(Script(status=400))
    assert await _stream(client, "/v1/chat/completions", chat) == 400

    servers = lambda: [s for s in received.spans if s.kind == SERVER]  # noqa: E731
    await received.wait_for(lambda: len(servers()) == 6)
    await received.wait_for(
        lambda: received.metric("gen_ai.server.request.duration", error__type="upstream_rejected")
    )
    by_trace = {s.trace_id: s for s in servers()}

    # W3C trace context: the client's trace continues, and goes upstream
    # naming the attempt's span.
    server = by_trace[TRACE_ID]
    assert server.parent_span_id == PARENT_ID
    assert server.name == "POST /v1/messages"
    attempt = next(s for s in received.spans if s.parent_span_id == server.span_id)
    assert fake_anthropic.headers[0]["traceparent"] == f"00-{TRACE_ID}-{attempt.span_id}-01"
    assert attempt.kind == CLIENT and attempt.name == "chat claude-up"
    assert attempt.attributes["gen_ai.provider.name"] == "anthropic"
    assert attempt.attributes["gen_ai.request.stream"] is True
    assert [e[0] for e in attempt.events] == ["sluice.first_token", "sluice.end_of_stream"]
    assert attempt.start_ns <= attempt.events[0][1] <= attempt.events[1][1] <= attempt.end_ns
    assert attempt.attributes["gen_ai.usage.output_tokens"] >= 1
    assert "gen_ai.input.messages" not in attempt.attributes  # content off by default
    assert server.resource["service.name"] == "sluice"

    # The trace id is on the request's summary log line.
    logged = {line["trace_id"] for line in log_lines() if line.get("event") == "request"}
    assert set(by_trace) <= logged

    # A retry and a fallback: three sibling attempt spans under one server span.
    flaky = next(s for s in servers() if s.attributes.get("gen_ai.request.model") == "flaky")
    tries = sorted(
        (s for s in received.spans if s.parent_span_id == flaky.span_id), key=lambda s: s.start_ns
    )
    assert [s.name for s in tries] == ["chat up-model", "chat up-model", "chat claude-up"]
    assert [s.attributes.get("error.type") for s in tries] == ["overloaded", "overloaded", None]
    assert [s.attributes["sluice.attempt"] for s in tries] == [1, 2, 3]
    assert [s.status_code for s in tries] == [2, 2, 0]
    assert tries[2].attributes["sluice.termination"] == "completed"
    assert flaky.attributes["gen_ai.response.model"] == "claude-up"

    # Not streamed: one attempt span, no gen_ai.request.stream, the usage.
    (call,) = [
        s
        for s in received.spans
        if s.kind == CLIENT and "gen_ai.request.stream" not in s.attributes
        and "error.type" not in s.attributes
    ]  # fmt: skip
    assert call.name == "chat up-model"
    assert call.attributes["gen_ai.usage.input_tokens"] == 3
    assert call.attributes["gen_ai.usage.output_tokens"] == 1

    # The failure: error.type on the server span, the attempt and the metric.
    failed = next(s for s in servers() if s.attributes.get("http.response.status_code") == 400)
    assert failed.attributes["error.type"] == "upstream_rejected"
    (rejected,) = [s for s in received.spans if s.parent_span_id == failed.span_id]
    assert rejected.attributes["error.type"] == "upstream_rejected"

    # Metrics: the spec's names, units, bucket boundaries and attributes.
    await received.wait_for(
        lambda: (
            received.metric("gen_ai.server.request.duration", gen_ai__request__model="flaky")
            and len({h.name for h in received.histograms.values()}) == 7
        )
    )
    units = {h.name: (h.unit, tuple(h.bounds)) for h in received.histograms.values()}
    assert units == {
        "gen_ai.server.request.duration": ("s", M.DURATION_BUCKETS),
        "gen_ai.server.time_to_first_token": ("s", M.TTFT_BUCKETS),
        "gen_ai.server.time_per_output_token": ("s", M.TPOT_BUCKETS),
        "gen_ai.client.token.usage": ("{token}", tuple(map(float, M.TOKEN_BUCKETS))),
        "gen_ai.client.operation.duration": ("s", M.DURATION_BUCKETS),
        "gen_ai.client.operation.time_to_first_chunk": ("s", M.DURATION_BUCKETS),
        "gen_ai.client.operation.time_per_output_chunk": ("s", M.DURATION_BUCKETS),
    }
    port = int(fake_anthropic.base_url.rsplit(":", 1)[1].rstrip("/"))
    (claude_in,) = received.metric(
        "gen_ai.client.token.usage", gen_ai__token__type="input",
        gen_ai__request__model="claude-up",
    )  # fmt: skip
    assert claude_in.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-up",
        "gen_ai.response.model": "claude-up",
        "gen_ai.token.type": "input",
        "server.address": "127.0.0.1",
        "server.port": port,
    }
    assert claude_in.count == 2  # the /v1/messages stream and the fallback
    (ok,) = [
        h
        for h in received.metric("gen_ai.server.request.duration", gen_ai__request__model="up")
        if "error.type" not in h.attributes
    ]
    assert ok.count == 3  # chat, responses and the one not streamed
    assert ok.attributes["gen_ai.provider.name"] == "openai"
    (fell_back,) = received.metric("gen_ai.server.request.duration", gen_ai__request__model="flaky")
    assert fell_back.attributes["gen_ai.response.model"] == "claude-up"
    assert fell_back.attributes["gen_ai.provider.name"] == "anthropic"
    overloaded = received.metric("gen_ai.client.operation.duration", error__type="overloaded")
    assert [h.count for h in overloaded] == [2]
    assert received.metric(
        "gen_ai.client.operation.time_to_first_chunk", gen_ai__provider__name="openai"
    )

    # The same families under Prometheus naming on /metrics.
    text = await (await client.get("/metrics")).text()
    assert "gen_ai_server_request_duration_seconds_bucket{" in text
    assert "gen_ai_client_token_usage_bucket{" in text
    assert "sluice_requests_total" in text
    assert (await client.get("/healthz")).status == 200
    assert OTEL in client.app
    await client.close()  # flushes the last export while the receiver is up
    assert not [s for s in received.spans if s.name.startswith("GET")]  # no probes, scrapes


async def test_off_by_default_exports_and_sends_nothing(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic, receiver: tuple[Received, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    received, endpoint = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    messages = {
        "model": "claude",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    assert await _stream(client, "/v1/messages", messages, traceparent=traceparent) == 200
    assert OTEL not in client.app
    assert "traceparent" not in fake_anthropic.headers[0]  # not even the client's, relayed
    assert "gen_ai_" not in await (await client.get("/metrics")).text()
    assert received.spans == [] and received.histograms == {}
    await client.close()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # the SDK's own switch beats [otel]
    disabled = await gateway(otel={"enabled": True, "endpoint": endpoint})
    assert OTEL not in disabled.app
    assert (
        startup_fields(settings_from(models=[SIM_FAST], otel={"enabled": True}), "::1", 1)["otel"]
        is False
    )
    await disabled.close()


async def test_grpc_exporter_and_a_client_that_leaves(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTLP/gRPC (the SDK's gRPC exporters); a client that leaves mid-stream:
    its spans still end, with the termination reason, and status 499."""
    received = Received()
    server, port = grpc_receiver(received)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    try:
        fake_openai.script = Script(
            events=[sse(chunk(f"t{i} ")) for i in range(50)] + [sse("[DONE]")], itl_s=0.05
        )
        client = await gateway(
            models=[openai_model(fake_openai)],
            otel={
                "enabled": True,
                "protocol": "grpc",
                "endpoint": f"http://127.0.0.1:{port}",
                "metric_export_interval_s": 0.1,
                "capture_content": True,
            },
        )
        chat = {"model": "up", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        resp = await client.post("/v1/chat/completions", json=chat)
        await resp.content.readline()  # the first event: the stream is open
        resp.close()  # the client leaves
        await received.wait_for(lambda: len(received.spans) == 2)
        attempt, request = sorted(received.spans, key=lambda s: s.kind, reverse=True)
        assert request.kind == SERVER and attempt.parent_span_id == request.span_id
        assert request.attributes["http.response.status_code"] == 499
        assert attempt.attributes["sluice.termination"] == "client_disconnected"
        assert attempt.attributes["error.type"] == "client_disconnected"
        assert [e[0] for e in attempt.events] == ["sluice.first_token", "sluice.end_of_stream"]
        assert attempt.attributes["gen_ai.input.messages"] == '[{"role":"user","content":"hi"}]'
        await received.wait_for(
            lambda: received.metric(
                "gen_ai.server.request.duration", error__type="client_disconnected"
            )
        )
        await client.close()
    finally:
        server.stop(None)


async def test_a_telemetry_failure_never_fails_the_request(
    gateway: GatewayFactory, receiver: tuple[Received, str], monkeypatch: pytest.MonkeyPatch,
    log_lines: Any,
) -> None:  # fmt: skip
    _, endpoint = receiver

    def broken(*args: Any) -> None:
        raise RuntimeError("telemetry bug")

    monkeypatch.setattr(RequestTrace, "_stream_finished", broken)
    monkeypatch.setattr(RequestTrace, "_end", broken)
    client = await gateway(otel={"enabled": True, "endpoint": endpoint})
    chat = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
    assert await _stream(client, "/v1/chat/completions", chat) == 200
    await client.close()
    events = [line["event"] for line in log_lines()]
    assert events.count("otel_failed") == 2 and "request" in events


async def test_a_client_that_leaves_before_the_first_token(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, receiver: tuple[Received, str]
) -> None:
    """Cancelled while the attempt waits for its first chunk: both spans end,
    the attempt with ``error.type``, the request with 499."""
    received, endpoint = receiver
    fake_openai.script = Script(events=[sse(chunk("late")), sse("[DONE]")], ttft_s=30)
    client = await gateway(
        models=[openai_model(fake_openai)], otel={"enabled": True, "endpoint": endpoint}
    )
    chat = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
    task = asyncio.create_task(_stream(client, "/v1/chat/completions", chat))
    await received.wait_for(lambda: len(fake_openai.records) == 1)
    task.cancel()
    await received.wait_for(lambda: len(received.spans) == 2)
    attempt, request = sorted(received.spans, key=lambda s: s.kind, reverse=True)
    assert request.attributes["http.response.status_code"] == 499
    assert attempt.parent_span_id == request.span_id
    assert attempt.attributes["error.type"] == "client_disconnected"
    assert attempt.status_code == 2 and attempt.end_ns >= attempt.start_ns
    await client.close()
