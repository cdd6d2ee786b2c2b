"""A fake Anthropic Messages upstream and builders for its stream events.

Event shapes follow https://docs.anthropic.com/en/api/messages-streaming:
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
(``text_delta`` / ``input_json_delta`` / ``thinking_delta``),
``content_block_stop``, ``message_delta``, ``message_stop``, ``error``.

:class:`FakeAnthropic` serves ``POST /v1/messages`` on a real aiohttp server
and reuses :class:`tests.fakes.FakeOpenAI`'s scripted streaming (pacing,
abrupt close, hang, records) for ``stream: true``; a non-streaming request
gets :attr:`FakeAnthropic.message`.
"""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient

from loadtest.mock.frames import sse_event
from tests.fakes import FakeOpenAI, Record, Script

UPSTREAM_MODEL = "claude-up"


def aevent(payload: dict[str, Any], name: str | None = None) -> bytes:
    """One named SSE event as Anthropic writes it (named after its ``type``
    unless ``name`` says otherwise; :func:`loadtest.mock.frames.sse_event`)."""
    return sse_event(payload, name or payload["type"])


def message_start(input_tokens: int = 11, msg_id: str = "msg_fake") -> dict[str, Any]:
    message = {
        "id": msg_id, "type": "message", "role": "assistant", "model": UPSTREAM_MODEL,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }  # fmt: skip
    return {"type": "message_start", "message": message}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def text_block(index: int) -> dict[str, Any]:
    return block_start(index, {"type": "text", "text": ""})


def tool_block(index: int, name: str, tool_id: str = "toolu_01") -> dict[str, Any]:
    return block_start(index, {"type": "tool_use", "id": tool_id, "name": name, "input": {}})


def thinking_block(index: int) -> dict[str, Any]:
    return block_start(index, {"type": "thinking", "thinking": "", "signature": ""})


def delta(index: int, **fields: Any) -> dict[str, Any]:
    """``delta(0, text="hi")``, ``delta(1, partial_json="{")``, ``delta(0, thinking="…")``."""
    ((key, value),) = fields.items()
    kind = {"text": "text_delta", "partial_json": "input_json_delta",
            "thinking": "thinking_delta", "signature": "signature_delta"}[key]  # fmt: skip
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: value}}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str = "end_turn", output_tokens: int = 7) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }


PING: dict[str, Any] = {"type": "ping"}
MESSAGE_STOP: dict[str, Any] = {"type": "message_stop"}


def error(kind: str = "overloaded_error", message: str = "Overloaded") -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def text_events(pieces: list[str], stop_reason: str = "end_turn") -> list[dict[str, Any]]:
    """A whole text response: start, one text block of ``pieces``, end."""
    return [
        message_start(),
        text_block(0),
        PING,
        *(delta(0, text=p) for p in pieces),
        block_stop(0),
        message_delta(stop_reason, output_tokens=len(pieces)),
        MESSAGE_STOP,
    ]


def tool_events(
    name: str, arguments: str, pieces: int, tool_id: str = "toolu_01"
) -> list[dict[str, Any]]:
    """Text, then one tool_use block whose JSON ``arguments`` arrive in ``pieces`` deltas."""
    size = max(1, -(-len(arguments) // pieces))
    parts = [arguments[i : i + size] for i in range(0, len(arguments), size)]
    return [
        message_start(),
        text_block(0),
        delta(0, text="Let me check."),
        block_stop(0),
        tool_block(1, name, tool_id),
        delta(1, partial_json=""),
        *(delta(1, partial_json=p) for p in parts),
        block_stop(1),
        message_delta("tool_use", output_tokens=20),
        MESSAGE_STOP,
    ]


def wire(events: list[dict[str, Any]]) -> list[bytes]:
    return [aevent(e) for e in events]


def message(
    content: list[dict[str, Any]] | None = None, stop_reason: str = "end_turn"
) -> dict[str, Any]:
    """A non-streaming Message object."""
    return {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": UPSTREAM_MODEL,
        "content": content if content is not None else [{"type": "text", "text": "hi there"}],
        "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }  # fmt: skip


class FakeAnthropic(FakeOpenAI):
    """See the module docstring. ``script``/``message`` may change between requests;
    ``headers`` records each request's headers."""

    def __init__(self) -> None:
        super().__init__()
        self.script = Script(events=wire(text_events(["hi"])))
        self.message = message()
        self.headers: list[dict[str, str]] = []
        self.app.router.add_post("/v1/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        script = self.script
        if body.get("stream"):
            return await self._handle(request)
        self.records.append(Record(body=body))
        if script.status != 200:
            return web.json_response(
                script.error_body or error("api_error", "fake failure"),
                status=script.status,
                headers=script.headers,
            )
        return web.json_response(self.message)


def anthropic_model(fake: FakeAnthropic, **extra: Any) -> dict[str, Any]:
    """A config entry routing model ``claude`` to the fake as ``claude-up``."""
    return {
        "name": "claude",
        "provider": "anthropic",
        "upstream_model": UPSTREAM_MODEL,
        "base_url": fake.base_url,
        **extra,
    }


def anthropic_sdk(client: TestClient[Any, Any], **headers: str) -> anthropic.AsyncAnthropic:
    """The official anthropic SDK pointed at the gateway under test."""
    return anthropic.AsyncAnthropic(
        base_url=str(client.make_url("")),
        api_key="client-key",
        max_retries=0,
        default_headers=headers or None,
    )


def parse_sse(text: str) -> list[tuple[str | None, Any]]:
    """``(event name, parsed data)`` for each SSE event of a response body
    (``[DONE]`` stays a string); comment lines are skipped."""
    events: list[tuple[str | None, Any]] = []
    for block in text.split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            raw = "\n".join(data)
            events.append((name, raw if raw == "[DONE]" else orjson.loads(raw)))
    return events
