"""A fake Azure OpenAI upstream: :class:`~tests.fakes.FakeOpenAI`'s scripts
served on Azure's paths, with Azure's authentication and stream additions.

Paths (https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference):
``POST /openai/deployments/{deployment}/chat/completions?api-version=...``
(the classic API: 404 without ``api-version``, as Azure answers),
``POST /openai/v1/chat/completions`` and ``/openai/v1/responses`` (the v1
API), ``POST /openai/responses?api-version=...``. A request without the
expected ``api-key`` header (or ``Authorization: Bearer`` token) gets 401.

Streams (the builders below) carry what Azure adds to OpenAI's chunks
(https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-filter):
a first chunk with empty ``choices``, empty ``id``/``model``/``object`` and
``prompt_filter_results``; ``content_filter_results`` on every choice; a
choice without ``delta`` carrying only filter results and
``content_filter_offsets`` (the asynchronous filter); ``finish_reason:
"content_filter"`` when the output was filtered; the usage chunk of
``stream_options.include_usage``. ``tests/test_azure_fake.py`` checks that
the official ``openai.AsyncAzureOpenAI`` client reads all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import FakeOpenAI, Record, sse

DEPLOYMENT = "gpt-4o-prod"
API_VERSION = "2024-10-21"
KEY = "azure-test-key"
MODEL = "gpt-4o-2024-11-20"

_SAFE = {"filtered": False, "severity": "safe"}
FILTERS: dict[str, Any] = {
    "hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE,
}  # fmt: skip
FILTERED: dict[str, Any] = {**FILTERS, "violence": {"filtered": True, "severity": "medium"}}
PROMPT_FILTER = {
    "choices": [], "created": 0, "id": "", "model": "", "object": "",
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
        **FILTERS, "jailbreak": {"filtered": False, "detected": False}}}],
}  # fmt: skip
USAGE = {"prompt_tokens": 17, "completion_tokens": 5, "total_tokens": 22,
         "prompt_tokens_details": {"cached_tokens": 0}}  # fmt: skip


@dataclass
class Seen:
    """One request as the fake got it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FakeAzure(FakeOpenAI):
    """See the module docstring. ``script`` / ``queue`` as on FakeOpenAI;
    ``completion`` is the body of a non-streaming answer (None: FakeOpenAI's)."""

    def __init__(self, key: str = KEY, token: str | None = None) -> None:
        super().__init__()
        self.key = key
        self.token = token
        """When set, ``Authorization: Bearer <token>`` is accepted too (Entra ID)."""
        self.seen: list[Seen] = []
        self.completion: dict[str, Any] | None = None
        self.endpoint = ""
        """The resource endpoint (``http://127.0.0.1:port``): the config's ``base_url``."""
        self.app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure)
        self.app.router.add_post("/openai/v1/chat/completions", self._azure)
        self.app.router.add_post("/openai/v1/responses", self._azure)
        self.app.router.add_post("/openai/responses", self._azure)

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.path, dict(request.query), dict(request.headers)))
        bearer = request.headers.get("Authorization", "")
        if request.headers.get("api-key") != self.key and not (
            self.token and bearer == f"Bearer {self.token}"
        ):
            message = "Access denied due to invalid subscription key or wrong API endpoint."
            return web.json_response({"error": {"code": "401", "message": message}}, status=401)
        v1 = request.path.startswith("/openai/v1/")
        if not v1 and "api-version" not in request.query:
            return web.json_response(
                {"error": {"code": "404", "message": "Resource not found"}}, status=404
            )
        body = await request.json()
        if not body.get("stream") and self.completion is not None:
            self.records.append(Record(body=body))
            return web.json_response(self.completion)
        return await self._handle(request)


def _chunk(choice: dict[str, Any], **extra: Any) -> bytes:
    payload = {
        "choices": [choice], "created": 1733400000, "id": "chatcmpl-az1", "model": MODEL,
        "object": "chat.completion.chunk", "system_fingerprint": "fp_az", **extra,
    }  # fmt: skip
    return sse(payload)


def _choice(delta: dict[str, Any] | None, finish: str | None = None,
            filters: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    choice: dict[str, Any] = {
        "content_filter_results": FILTERS if filters is None else filters,
        "finish_reason": finish, "index": 0, "logprobs": None,
    }  # fmt: skip
    if delta is not None:
        choice["delta"] = delta
    return choice


def text_stream(pieces: list[str], finish: str = "stop", usage: bool = True) -> list[bytes]:
    """An Azure chat stream: the prompt-filter chunk, a role chunk, one chunk
    per piece, an asynchronous-filter chunk (no ``delta``), the finish chunk
    (``content_filter``: its results say what was filtered), usage, ``[DONE]``."""
    out = [sse(PROMPT_FILTER), _chunk(_choice({"content": "", "refusal": None,
                                               "role": "assistant"}, filters={}))]  # fmt: skip
    out += [_chunk(_choice({"content": piece})) for piece in pieces]
    offsets = {"check_offset": 0, "start_offset": 0, "end_offset": sum(map(len, pieces))}
    out.append(_chunk({**_choice(None), "content_filter_offsets": offsets}))
    filters = FILTERED if finish == "content_filter" else {}
    out.append(_chunk(_choice({}, finish, filters)))
    if usage:
        out.append(_usage_chunk())
    out.append(sse("[DONE]"))
    return out


def tool_stream(name: str, arguments: str, call_id: str = "call_az1") -> list[bytes]:
    """An Azure chat stream calling one tool, its arguments in three pieces."""
    third = max(1, len(arguments) // 3)
    parts = [arguments[:third], arguments[third : 2 * third], arguments[2 * third :]]
    head = {"index": 0, "id": call_id, "type": "function",
            "function": {"name": name, "arguments": ""}}  # fmt: skip
    out = [sse(PROMPT_FILTER), _chunk(_choice({"content": None, "refusal": None,
                                               "role": "assistant", "tool_calls": [head]},
                                              filters={}))]  # fmt: skip
    out += [
        _chunk(_choice({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}, filters={}))
        for p in parts
    ]
    out += [_chunk(_choice({}, "tool_calls", {})), _usage_chunk(), sse("[DONE]")]
    return out


def _usage_chunk() -> bytes:
    return sse({"choices": [], "created": 1733400000, "id": "chatcmpl-az1", "model": MODEL,
                "object": "chat.completion.chunk", "system_fingerprint": "fp_az",
                "usage": USAGE})  # fmt: skip


def completion(content: str | None, finish: str = "stop",
               tool: tuple[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """A non-streaming Azure chat completion (``tool``: name and arguments)."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool is not None:
        message["tool_calls"] = [{"id": "call_az1", "type": "function",
                                  "function": {"name": tool[0], "arguments": tool[1]}}]  # fmt: skip
    return {
        "choices": [{"content_filter_results": FILTERED if finish == "content_filter" else FILTERS,
                     "finish_reason": finish, "index": 0, "logprobs": None,
                     "message": message}],
        "created": 1733400000, "id": "chatcmpl-az2", "model": MODEL,
        "object": "chat.completion",
        "prompt_filter_results": PROMPT_FILTER["prompt_filter_results"],
        "system_fingerprint": "fp_az", "usage": USAGE,
    }  # fmt: skip


def responses_stream(text: str) -> list[bytes]:
    """A native Responses stream (Azure's ``/openai/v1/responses``) of one message."""
    base = {"id": "resp_az", "object": "response", "created_at": 1, "status": "in_progress",
            "model": MODEL, "output": [], "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [], "content_filters": None}  # fmt: skip
    item = {"id": "msg_az", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip
    done = {**base, "status": "completed", "output": [item],
            "usage": {"input_tokens": 17, "output_tokens": 5, "total_tokens": 22}}  # fmt: skip
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": base}),
        ("response.output_item.added", {"output_index": 0, "item": {**item, "content": [],
                                                                   "status": "in_progress"}}),
        ("response.output_text.delta", {"item_id": "msg_az", "output_index": 0,
                                        "content_index": 0, "delta": text}),
        ("response.completed", {"response": done}),
    ]  # fmt: skip
    return [
        b"event: "
        + kind.encode()
        + b"\ndata: "
        + orjson.dumps({"type": kind, "sequence_number": seq, **fields})
        + b"\n\n"
        for seq, (kind, fields) in enumerate(events)
    ]


def azure_model(fake: FakeAzure, **extra: Any) -> dict[str, Any]:
    """A config entry routing model ``az`` to the fake's deployment (classic API)."""
    return {
        "name": "az", "provider": "azure", "base_url": fake.endpoint,
        "deployment": DEPLOYMENT, "api_version": API_VERSION, **extra,
    }  # fmt: skip
