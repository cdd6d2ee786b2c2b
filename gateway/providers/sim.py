"""The built-in simulator: an OpenAI-dialect provider with deterministic text.

Tokens are paced by monotonic deadlines (``start + ttft + i * itl``), not by
sleeping a fixed gap after each send, so a slow consumer does not make the
rate drift: a late token is followed at once by the ones that are due.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Generator
from typing import Any

import orjson

from ..config import SimModel
from .base import Dialect, UpstreamChunk

_WORDS = (
    "Sluice", " relays", " tokens", " from", " upstream", " to", " downstream", " with",
    " explicit", " backpressure", ":", " each", " event", " waits", " for", " the",
    " client's", " socket", " to", " drain", ".",
)  # fmt: skip


def sim_token(i: int) -> str:
    """The ``i``-th token of the simulator's text (deterministic)."""
    return _WORDS[i % len(_WORDS)]


def _output_length(model: SimModel, body: dict[str, Any]) -> int:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    n = model.output_tokens
    return min(n, limit) if isinstance(limit, int) and limit > 0 else n


def _prompt_tokens(body: dict[str, Any]) -> int:
    # A stand-in for a tokenizer: roughly one token per four characters.
    chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", ()))
    return max(1, chars // 4)


class SimStream:
    """A paced chat.completion.chunk sequence; see the module docstring.

    :meth:`_script` lays out ``(due, chunk)`` pairs (``due`` in seconds after
    the start); :meth:`next` sleeps until each is due. It is cancel-safe: a
    cancelled sleep leaves the chunk in place for the next call.
    """

    def __init__(self, model: SimModel, body: dict[str, Any]) -> None:
        self._model = model
        self._n = _output_length(model, body)
        self._usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._prompt_tokens = _prompt_tokens(body)
        self._id = f"chatcmpl-sim-{uuid.uuid4().hex[:24]}"
        self._created = int(time.time())
        self._start = asyncio.get_running_loop().time()
        self._steps = self._script()
        self._next: tuple[float, UpstreamChunk] | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> UpstreamChunk:
        payload: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model.target_model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return UpstreamChunk(data=orjson.dumps(payload), payload=payload)

    def _script(self) -> Generator[tuple[float, UpstreamChunk], None, None]:
        ttft, itl = self._model.ttft_ms / 1000, self._model.itl_ms / 1000
        yield ttft, self._chunk({"role": "assistant", "content": ""})
        for i in range(self._n):
            yield ttft + i * itl, self._chunk({"content": sim_token(i)})
        last = ttft + max(0, self._n - 1) * itl
        finish = "length" if self._n < self._model.output_tokens else "stop"
        yield last, self._chunk({}, finish=finish)
        if self._usage:
            usage = {
                "prompt_tokens": self._prompt_tokens,
                "completion_tokens": self._n,
                "total_tokens": self._prompt_tokens + self._n,
            }
            payload: dict[str, Any] = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model.target_model,
                "choices": [],
                "usage": usage,
            }
            yield last, UpstreamChunk(data=orjson.dumps(payload), payload=payload)

    async def next(self) -> UpstreamChunk | None:
        step = self._next
        if step is None:
            step = self._next = next(self._steps, None)
            if step is None:
                return None
        loop = asyncio.get_running_loop()
        delay = self._start + step[0] - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next = None
        return step[1]

    def close(self) -> None:
        self._steps.close()
        self._next = None

    release = close


class SimProvider:
    """Serves a :class:`~gateway.config.SimModel` in the OpenAI dialect."""

    kind = "sim"
    dialect: Dialect = "openai"

    def __init__(self, model: SimModel) -> None:
        self._model = model

    async def open_stream(self, body: dict[str, Any]) -> SimStream:
        return SimStream(self._model, body)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        n = _output_length(self._model, body)
        await asyncio.sleep((self._model.ttft_ms + max(0, n - 1) * self._model.itl_ms) / 1000)
        prompt = _prompt_tokens(body)
        return {
            "id": f"chatcmpl-sim-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._model.target_model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(sim_token(i) for i in range(n)),
                    },
                    "finish_reason": "length" if n < self._model.output_tokens else "stop",
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n},
        }

    async def aclose(self) -> None:
        return None
