"""The built-in simulator: an OpenAI-dialect provider with deterministic text.

Tokens are paced by monotonic deadlines (``start + ttft + i * itl``), not by
sleeping a fixed gap after each send, so a slow consumer does not make the
rate drift: a late token is followed at once by the ones that are due.

It honours ``n`` (``n`` choices; streamed chunks carry one choice each, with
``index`` 0..n-1, interleaved per step), ``max_tokens`` /
``max_completion_tokens`` (text length; ``finish_reason: "length"``),
``stream_options.include_usage``, and ``tools``: when a request calls for a
tool (rules in :mod:`.sim_answer`) each choice answers with one tool call,
streamed as ``delta.tool_calls`` (``id``, ``function.name``, then
``function.arguments`` in several deltas) with ``finish_reason:
"tool_calls"``. Shapes: https://platform.openai.com/docs/api-reference/chat.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import orjson

from ..config import SimModel
from .base import Dialect, UpstreamChunk
from .sim_answer import ToolCall, sim_token, tool_call_for

__all__ = ["SimProvider", "SimStream", "sim_token"]


def _output_length(model: SimModel, body: dict[str, Any]) -> int:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    n = model.output_tokens
    return min(n, limit) if isinstance(limit, int) and limit > 0 else n


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _prompt_tokens(body: dict[str, Any]) -> int:
    # A stand-in for a tokenizer: roughly one token per four characters.
    chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", ()))
    return max(1, chars // 4)


class _Answer:
    """The deltas of one choice, in order, and how it finishes."""

    def __init__(self, model: SimModel, body: dict[str, Any]) -> None:
        self.tool = tool_call_for(body)
        self.length = _output_length(model, body)
        self._call_id = f"call_sim_{uuid.uuid4().hex[:24]}"
        if self.tool is not None:
            self.finish = "tool_calls"
        else:
            self.finish = "length" if self.length < model.output_tokens else "stop"

    @property
    def steps(self) -> int:
        """Content steps after the role: tokens, or arguments pieces."""
        return self.length if self.tool is None else len(self.tool.pieces())

    def deltas(self) -> Iterator[dict[str, Any]]:
        """Step 0 is the role; each later step one token or arguments piece
        (lazily: ``output_tokens`` may be large)."""
        if self.tool is None:
            yield {"role": "assistant", "content": ""}
            for i in range(self.length):
                yield {"content": sim_token(i)}
            return
        head = {"index": 0, "id": self._call_id, "type": "function"}
        first = {**head, "function": {"name": self.tool.name, "arguments": ""}}
        yield {"role": "assistant", "content": None, "tool_calls": [first]}
        for piece in self.tool.pieces():
            yield {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}

    def message(self) -> dict[str, Any]:
        """The non-streaming ``choices[i].message``."""
        if self.tool is None:
            text = "".join(sim_token(i) for i in range(self.length))
            return {"role": "assistant", "content": text}
        return {"role": "assistant", "content": None, "tool_calls": [self._tool_call(self.tool)]}

    def _tool_call(self, tool: ToolCall) -> dict[str, Any]:
        function = {"name": tool.name, "arguments": tool.arguments}
        return {"id": self._call_id, "type": "function", "function": function}


class SimStream:
    """A paced chat.completion.chunk sequence; see the module docstring.

    :meth:`_script` lays out ``(due, chunk)`` pairs (``due`` in seconds after
    the start); :meth:`next` sleeps until each is due. It is cancel-safe: a
    cancelled sleep leaves the chunk in place for the next call.
    """

    def __init__(self, model: SimModel, body: dict[str, Any]) -> None:
        self._model = model
        self._answer = _Answer(model, body)
        self._n = _choices(body)
        self._usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._prompt_tokens = _prompt_tokens(body)
        self._id = f"chatcmpl-sim-{uuid.uuid4().hex[:24]}"
        self._created = int(time.time())
        self._start = asyncio.get_running_loop().time()
        self._steps = self._script()
        self._next: tuple[float, UpstreamChunk] | None = None

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> UpstreamChunk:
        payload: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model.target_model,
            "choices": choices,
            **extra,
        }
        return UpstreamChunk(data=orjson.dumps(payload), payload=payload)

    def _script(self) -> Generator[tuple[float, UpstreamChunk], None, None]:
        ttft, itl = self._model.ttft_ms / 1000, self._model.itl_ms / 1000
        last = ttft
        for step, delta in enumerate(self._answer.deltas()):
            last = ttft + max(0, step - 1) * itl
            for index in range(self._n):
                yield last, self._chunk([{"index": index, "delta": delta, "finish_reason": None}])
        for index in range(self._n):
            finish = self._answer.finish
            yield last, self._chunk([{"index": index, "delta": {}, "finish_reason": finish}])
        if self._usage:
            completion = self._answer.steps * self._n
            usage = {
                "prompt_tokens": self._prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": self._prompt_tokens + completion,
            }
            yield last, self._chunk([], usage=usage)

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
        """A ``chat.completion`` with ``n`` choices, after the time a stream would take."""
        answer = _Answer(self._model, body)
        steps = answer.steps
        await asyncio.sleep((self._model.ttft_ms + max(0, steps - 1) * self._model.itl_ms) / 1000)
        n, prompt = _choices(body), _prompt_tokens(body)
        choices = [
            {"index": i, "message": answer.message(), "finish_reason": answer.finish}
            for i in range(n)
        ]
        completion = steps * n
        return {
            "id": f"chatcmpl-sim-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._model.target_model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    async def aclose(self) -> None:
        return None
