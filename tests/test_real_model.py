"""A real model behind Sluice: llama.cpp's server with SmolLM2-135M-Instruct
(tests/real_model.py, one server for the session), an in-process gateway in
front (``provider = "openai"``), the official SDKs as clients.

Small ``max_tokens`` everywhere: the whole module runs in seconds on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from aiohttp.test_utils import TestClient

from gateway.usage_estimate import estimate_tokens
from tests.conftest import LogLines
from tests.cutting_proxy import CuttingProxy
from tests.helpers import GatewayFactory, sdk
from tests.keyhelp import make_key, oai, poll
from tests.rawclient import RawSSEClient
from tests.real_model import RealModel

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2"
MAX_TOKENS = 24
SYSTEM = "Answer in one sentence."
QUESTION = "Name three rivers in Europe."
CHAT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
GREEDY: dict[str, Any] = {"temperature": 0}
LONG = [{"role": "user", "content": "Count from 1 to 300, one number per line."}]
ENDLESS: dict[str, Any] = {"logit_bias": {"2": -100}}
"""SmolLM2's end-of-turn token (id 2, ``<|im_end|>``) banned: the answer runs
to ``max_tokens``, so a generation nobody stops would take seconds."""

INPUT_TOLERANCE = 0.15
"""The documented error of the input estimate on English prompts (README)."""
OUTPUT_TOLERANCE = 0.15
"""The documented error of the output estimate on English text (README)."""
ESTIMATE_TOTAL = 0.05
ESTIMATE_P90 = 0.15
"""The documented error of the text estimate (README): summed over many
samples, and for nine samples in ten."""


@pytest.fixture
async def sluice(gateway: GatewayFactory, real_model: RealModel) -> TestClient[Any, Any]:
    return await gateway(models=[real_model.gateway_model()])


def direct(real_model: RealModel) -> openai.AsyncOpenAI:
    """The OpenAI SDK straight to the llama.cpp server."""
    return openai.AsyncOpenAI(base_url=real_model.url, api_key="none", max_retries=0)


async def straight_text(real_model: RealModel) -> str:
    """The server's own answer to CHAT, capped at ``MAX_TOKENS`` with
    ``max_tokens`` (what Sluice sends a non-OpenAI server for every dialect's
    length field: ``max_tokens_field = "auto"``)."""
    async with direct(real_model) as client:
        done = await client.chat.completions.create(  # type: ignore[call-overload]
            model=MODEL, messages=CHAT, seed=7, max_tokens=MAX_TOKENS, **GREEDY
        )
    return done.choices[0].message.content or ""


async def through(client: TestClient[Any, Any], api: str, stream: bool) -> str:
    """The answer to CHAT through Sluice, in ``api``'s dialect, streamed or not."""
    if api == "chat":
        async with sdk(client) as oa:
            if not stream:
                done = await oa.chat.completions.create(
                    model=MODEL,
                    messages=CHAT,
                    max_tokens=MAX_TOKENS,
                    seed=7,
                    **GREEDY,  # type: ignore[arg-type]
                )
                return done.choices[0].message.content or ""
            chunks = await oa.chat.completions.create(
                model=MODEL,
                messages=CHAT,
                max_tokens=MAX_TOKENS,
                seed=7,
                stream=True,
                **GREEDY,  # type: ignore[arg-type]
            )
            return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    if api == "responses":
        async with sdk(client) as oa:
            kwargs: dict[str, Any] = {
                "model": MODEL, "instructions": SYSTEM, "input": QUESTION,
                "max_output_tokens": MAX_TOKENS, "store": False, **GREEDY,
            }  # fmt: skip
            if not stream:
                return (await oa.responses.create(**kwargs)).output_text
            async with oa.responses.stream(**kwargs) as events:
                return (await events.get_final_response()).output_text
    ac = anthropic.AsyncAnthropic(base_url=str(client.make_url("")), api_key="k", max_retries=0)
    async with ac:
        kwargs = {
            "model": MODEL, "system": SYSTEM, "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": QUESTION}],
            "extra_body": GREEDY,  # anthropic 2.x has no temperature parameter
        }  # fmt: skip
        if not stream:
            message = await ac.messages.create(**kwargs)
        else:
            async with ac.messages.stream(**kwargs) as events:
                message = await events.get_final_message()
    return "".join(b.text for b in message.content if b.type == "text")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_the_text_through_sluice_is_the_text_from_the_server(
    sluice: TestClient[Any, Any], real_model: RealModel, api: str, stream: bool
) -> None:
    expected = await straight_text(real_model)
    assert expected.strip(), "the model said nothing"
    assert await through(sluice, api, stream) == expected


async def _ttft(client: openai.AsyncOpenAI, max_tokens: int = 4) -> float:
    """Seconds to the first content chunk of a short streamed request."""
    start = time.perf_counter()
    stream = await client.chat.completions.create(  # type: ignore[call-overload]
        model=MODEL, messages=CHAT, max_tokens=max_tokens, stream=True, **GREEDY
    )
    first: float | None = None
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
    assert first is not None
    return first


def disconnects(real_model: RealModel, since: int) -> int:
    """How many times the server logged a client gone (it stops generating
    for it: llama-cpp-python's ``Disconnected from client``) after byte
    offset ``since`` of its log."""
    return real_model.log.read_bytes()[since:].count(b"Disconnected from client")


async def test_a_client_leaving_mid_stream_frees_the_server(
    sluice: TestClient[Any, Any], real_model: RealModel, log_lines: LogLines
) -> None:
    async with direct(real_model) as straight:
        # Idle: the first token of CHAT after another prompt (LONG) ran to its
        # end, so both measurements pay the same prompt processing.
        await straight.chat.completions.create(  # type: ignore[call-overload]
            model=MODEL, messages=LONG, max_tokens=5, **GREEDY
        )
        idle = await _ttft(straight)
        since = real_model.log.stat().st_size
        async with sdk(sluice) as oa:
            stream = await oa.chat.completions.create(  # type: ignore[call-overload]
                model=MODEL, messages=LONG, max_tokens=1000, stream=True, **GREEDY, **ENDLESS
            )
            got = 0
            async for chunk in stream:
                got += bool(chunk.choices and chunk.choices[0].delta.content)
                if got == 5:
                    break
            await stream.close()
        # The server runs one request at a time (interrupt_requests off): had the
        # abandoned generation gone on (1000 tokens, seconds), this would wait.
        after = await _ttft(straight)

    async def seen() -> bool:
        return disconnects(real_model, since) == 1

    await poll(seen)
    print(f"\nTTFT idle {idle * 1000:.1f} ms, right after a cancel {after * 1000:.1f} ms")
    assert after < 3 * idle + 0.1

    async def logged() -> bool:
        return any(li.get("outcome") == "client_disconnected" for li in log_lines())

    await poll(logged)
    line = next(li for li in log_lines() if li.get("outcome") == "client_disconnected")
    assert line["upstream_cancel_ms"] is not None and line["output_tokens"] >= 5


async def test_a_stalled_client_holds_the_real_server_back(
    gateway: GatewayFactory, real_model: RealModel, log_lines: LogLines
) -> None:
    proxy = CuttingProxy(real_model.port, cut_after=1 << 62)  # counts, never cuts
    port = await proxy.start()
    buffer = 16384
    client = await gateway(
        models=[real_model.gateway_model(base_url=f"http://127.0.0.1:{port}/v1")],
        stream={"downstream_buffer_bytes": buffer, "send_timeout_s": 2.0},
    )
    body = {"model": MODEL, "messages": LONG, "max_tokens": 1500, "stream": True, **GREEDY,
            **ENDLESS}  # fmt: skip
    raw = await RawSSEClient.open(
        client.server.host,
        client.server.port,
        "/v1/chat/completions",
        body,  # type: ignore[arg-type]
    )
    try:
        assert raw.status == 200
        await raw.events(limit=1)

        async def ended() -> bool:
            return any(li.get("outcome") == "slow_client" for li in log_lines())

        await poll(ended, timeout_s=60, every_s=0.1)
    finally:
        raw.close()
        await proxy.close()
    line = next(li for li in log_lines() if li.get("outcome") == "slow_client")
    read = proxy.bytes_down
    print(
        f"\nstalled client: Sluice read {read} bytes from llama.cpp, wrote {line['bytes']} "
        f"({line['events']} events), max buffered {line['max_buffered_bytes']}"
    )
    # Held back: Sluice queued no more than its per-connection buffer allows
    # toward the client, and stopped reading the server long before the
    # 1500-token answer (~250 bytes a token) was out.
    # The kernel's share (SO_SNDBUF = half, doubled by Linux) + asyncio's quarter
    # + the event being written (gateway/sse.py).
    assert line["max_buffered_bytes"] <= buffer * 5 // 4 + 1024
    assert read < 1500 * 200
    # The server is free again: a request right after completes.
    async with direct(real_model) as straight:
        assert await _ttft(straight) > 0


async def test_a_keys_quotas_count_the_estimated_usage(
    gateway: GatewayFactory, real_model: RealModel, log_lines: LogLines
) -> None:
    secret, key = make_key("real", tokens_per_minute=1_000_000, token_budget=30)
    client = await gateway(models=[real_model.gateway_model()], auth={"keys": [key]})
    async with oai(client, secret) as oa:
        stream = await oa.chat.completions.create(
            model=MODEL, messages=CHAT, max_tokens=48, stream=True, seed=7,  # type: ignore[arg-type]
            stream_options={"include_usage": True}, **GREEDY,
        )  # fmt: skip
        chunks = [c async for c in stream]
        usage = chunks[-1].usage
        # The budget (30 tokens) is spent: the next request is refused.
        with pytest.raises(openai.RateLimitError) as refused:
            await oa.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=4)  # type: ignore[arg-type]
    assert refused.value.code == "insufficient_quota"
    # The server's own counts, for the same request (its non-streamed answer has usage).
    async with direct(real_model) as straight:
        done = await straight.chat.completions.create(
            model=MODEL,
            messages=CHAT,
            max_tokens=48,
            seed=7,
            **GREEDY,  # type: ignore[arg-type]
        )
    truth = done.usage
    assert usage is not None and truth is not None
    print(f"\nestimated {usage.prompt_tokens} + {usage.completion_tokens}, "
          f"server {truth.prompt_tokens} + {truth.completion_tokens}")  # fmt: skip
    assert abs(usage.prompt_tokens - truth.prompt_tokens) <= INPUT_TOLERANCE * truth.prompt_tokens
    assert (
        abs(usage.completion_tokens - truth.completion_tokens)
        <= OUTPUT_TOLERANCE * truth.completion_tokens
    )
    line = next(li for li in log_lines() if li.get("outcome") == "completed")
    assert line["usage_estimated"] is True
    assert (line["input_tokens"], line["output_tokens"]) == (
        usage.prompt_tokens, usage.completion_tokens
    )  # fmt: skip
    me = await (await client.get("/v1/sluice/key", headers={"x-api-key": secret})).json()
    assert me["usage"]["minute"]["tokens"] == usage.total_tokens
    assert me["usage"]["period"]["estimated_tokens"] == usage.total_tokens


def test_the_estimate_against_the_models_tokenizer(real_model: RealModel) -> None:
    """The README's figures: the word-piece estimate vs SmolLM2's own tokenizer
    on English (the README's prose paragraphs) and code (gateway/*.py blocks):
    over all samples within ESTIMATE_TOTAL, nine samples in ten within
    ESTIMATE_P90."""
    english = [p for p in (ROOT / "README.md").read_text().split("\n\n")
               if len(p) > 200 and not p.startswith(("```", "|", "    "))]  # fmt: skip
    code = [p for f in sorted((ROOT / "gateway").glob("*.py"))
            for p in f.read_text().split("\n\n") if len(p) > 200]  # fmt: skip
    for name, samples in (("English", english[:60]), ("code", code[:120])):
        truth = [real_model.count_tokens(text) for text in samples]
        guess = [estimate_tokens(text) for text in samples]
        total = sum(guess) / sum(truth) - 1
        errors = sorted(abs(g - t) / t for g, t in zip(guess, truth, strict=True))
        p90 = errors[int(0.9 * (len(errors) - 1))]
        print(f"\n{name}: {len(samples)} samples, {sum(truth)} tokens; "
              f"estimate {total:+.1%} over all, p90 |error| {p90:.1%}")  # fmt: skip
        assert abs(total) <= ESTIMATE_TOTAL
        assert p90 <= ESTIMATE_P90
