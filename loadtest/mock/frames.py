"""SSE frames and JSON bodies of the two upstream dialects the mock speaks.

OpenAI Chat Completions streaming: ``data: {chat.completion.chunk}`` events, a
final chunk with ``finish_reason``, a usage chunk (``choices: []``) when the
request set ``stream_options.include_usage``, then ``data: [DONE]``.
Anthropic Messages streaming: ``message_start``, ``content_block_start``,
``ping``, ``content_block_delta`` (``text_delta``) per token,
``content_block_stop``, ``message_delta`` (stop reason, usage),
``message_stop``; errors are ``event: error`` with ``overloaded_error``.

Per-token frames are built from precomputed byte prefixes, so the hot path is
two concatenations: the mock must not be the bottleneck of a benchmark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final, Literal

import orjson

Dialect = Literal["openai", "anthropic"]

OPENAI_DONE: Final = b"data: [DONE]\n\n"


def token_text(index: int, width: int) -> bytes:
    """Token ``index`` as ASCII text, padded with ``x`` to ``width`` bytes (0: unpadded)."""
    text = b"t%d " % index
    return text.ljust(width, b"x") if width > len(text) else text


def _dumps(obj: object) -> bytes:
    return orjson.dumps(obj)


@dataclass(slots=True)
class FrameSet:
    """Frames of one stream in one dialect. Token text is ASCII, so it is
    embedded in JSON with quotes only, without a JSON encoder per token."""

    dialect: Dialect
    stream_id: str
    model: str
    input_tokens: int
    include_usage: bool = False
    _prefix: bytes = field(init=False, default=b"")
    _suffix: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        if self.dialect == "openai":
            head = _dumps(
                {
                    "id": self.stream_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": self.model,
                }
            )[:-1]
            self._prefix = b"data: " + head + b',"choices":[{"index":0,"delta":{"content":"'
            self._suffix = b'"},"finish_reason":null}]}\n\n'
        else:
            self._prefix = (
                b"event: content_block_delta\n"
                b'data: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"text_delta","text":"'
            )
            self._suffix = b'"}}\n\n'

    def token(self, text: bytes) -> bytes:
        """One content frame carrying ``text`` (ASCII, no quotes or backslashes)."""
        return self._prefix + text + self._suffix

    def _openai_chunk(self, choices: list[object], **extra: object) -> bytes:
        body: dict[str, object] = {
            "id": self.stream_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
        }
        body.update(extra)
        return sse_event(body)

    def head(self) -> bytes:
        """Frames before the first token (sent at TTFT, with the first token)."""
        if self.dialect == "openai":
            delta = {"role": "assistant", "content": ""}
            return self._openai_chunk([{"index": 0, "delta": delta, "finish_reason": None}])
        start = {
            "type": "message_start",
            "message": {
                "id": self.stream_id,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": self.model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": self.input_tokens, "output_tokens": 1},
            },
        }
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        return (
            _event("message_start", start)
            + _event("content_block_start", block)
            + _event("ping", {"type": "ping"})
        )

    def tail(self, output_tokens: int) -> bytes:
        """Frames after the last token: finish reason, usage, end marker."""
        if self.dialect == "openai":
            out = self._openai_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
            if self.include_usage:
                usage = {
                    "prompt_tokens": self.input_tokens,
                    "completion_tokens": output_tokens,
                    "total_tokens": self.input_tokens + output_tokens,
                }
                out += self._openai_chunk([], usage=usage)
            return out + OPENAI_DONE
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
        return (
            _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + _event("message_delta", delta)
            + _event("message_stop", {"type": "message_stop"})
        )

    def error(self) -> bytes:
        """A mid-stream error frame: the stream is then closed without an end marker."""
        if self.dialect == "openai":
            err = {
                "message": "upstream overloaded (mock)",
                "type": "server_error",
                "code": "overloaded",
            }
            return sse_event({"error": err})
        err = {"type": "overloaded_error", "message": "Overloaded (mock)"}
        return _event("error", {"type": "error", "error": err})


def sse_event(data: object, name: str | None = None) -> bytes:
    """One SSE event (https://html.spec.whatwg.org/multipage/server-sent-events.html):
    ``event: <name>`` when named (Anthropic's events), then ``data: `` and
    ``data`` (``str`` as is, e.g. ``[DONE]``; ``bytes`` as is; anything else as
    compact JSON), then the blank line. The one event encoder of the mock
    upstream and of the tests' fake upstreams (``tests/fakes.py``,
    ``tests/fake_anthropic.py``)."""
    if isinstance(data, str):
        body = data.encode()
    elif isinstance(data, bytes):
        body = data
    else:
        body = _dumps(data)
    head = b"event: " + name.encode() + b"\n" if name is not None else b""
    return head + b"data: " + body + b"\n\n"


def _event(name: str, data: object) -> bytes:
    return sse_event(data, name)


def http_error_body(dialect: Dialect, status: int) -> bytes:
    """The JSON error body of an HTTP error before the stream starts."""
    if dialect == "openai":
        if status == 429:
            err = {
                "message": "Rate limit reached (mock)",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        else:
            err = {
                "message": "Service unavailable (mock)",
                "type": "server_error",
                "code": "service_unavailable",
            }
        return _dumps({"error": {**err, "param": None}})
    kind = "rate_limit_error" if status == 429 else "overloaded_error"
    return _dumps({"type": "error", "error": {"type": kind, "message": f"{kind} (mock)"}})


def completion_body(
    dialect: Dialect, stream_id: str, model: str, text: str, input_tokens: int, output_tokens: int
) -> bytes:
    """The non-streaming response body: ``chat.completion`` or an Anthropic ``message``."""
    if dialect == "openai":
        return _dumps(
            {
                "id": stream_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": input_tokens,
                    "completion_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens,
                },
            }
        )
    return _dumps(
        {
            "id": stream_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
    )
