"""A fake Gemini API upstream and builders for its stream events.

Shapes follow https://ai.google.dev/api/generate-content
(``GenerateContentResponse``: ``candidates[].content.parts[]`` with ``text``
or a whole ``functionCall``, ``finishReason``, ``usageMetadata``, and
``{"error": {"code", "message", "status"}}`` objects). The official
``google-genai`` SDK reads these bytes (tests/test_gemini_sdk.py), which
is what proves them real.

:class:`FakeGemini` serves ``POST /v1beta/models/{model}:streamGenerateContent``
(SSE, ``alt=sse``) and ``:generateContent`` on a real aiohttp server, with
:class:`tests.fakes.Script` pacing (``ttft_s``, ``itl_s``, ``then``: end,
close, hang, flood) and records (bytes out, close time).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes import FakeOpenAI, Record, Script

UPSTREAM_MODEL = "gemini-up"
USAGE = {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13}


def gevent(payload: dict[str, Any]) -> bytes:
    """One SSE event as the Gemini API writes it (``alt=sse``: ``data:`` lines, CRLF-free)."""
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


def response(
    parts: list[dict[str, Any]] | None = None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``GenerateContentResponse`` with one candidate."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts or []}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": UPSTREAM_MODEL,
                           "responseId": "resp-fake"}  # fmt: skip
    if usage is not None:
        out["usageMetadata"] = usage
    return out


def text(t: str) -> dict[str, Any]:
    return {"text": t}


def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"functionCall": {"name": name, "args": args}}


def text_events(pieces: list[str], finish: str = "STOP") -> list[dict[str, Any]]:
    """A whole text response: one event per piece; the last carries the finish and usage."""
    events = [response([text(p)]) for p in pieces[:-1]]
    events.append(response([text(pieces[-1])], finish, USAGE))
    return events


def tool_events(name: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Some text, then one whole function call, then the finish."""
    return [
        response([text("Let me check.")]),
        response([call(name, args)]),
        response([], "STOP", USAGE),
    ]


def gemini_error(
    code: int = 503, status: str = "UNAVAILABLE", message: str = "overloaded"
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def wire(events: list[dict[str, Any]]) -> list[bytes]:
    return [gevent(e) for e in events]


class FakeGemini(FakeOpenAI):
    """See the module docstring. ``script`` (or ``queue``) and ``whole`` (the
    ``:generateContent`` answer) may change between requests; ``headers``,
    ``paths`` and ``queries`` record each request's."""

    def __init__(self) -> None:
        super().__init__()
        self.script = Script(events=wire(text_events(["hi"])))
        self.whole: dict[str, Any] = response([text("hi there")], "STOP", USAGE)
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.queries: list[dict[str, str]] = []
        self.app.router.add_post("/v1beta/models/{model}:streamGenerateContent", self._stream)
        self.app.router.add_post("/v1beta/models/{model}:generateContent", self._whole)

    def _take(self, request: web.Request, body: dict[str, Any]) -> tuple[Record, Script]:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        self.paths.append(request.path)
        self.queries.append(dict(request.query))
        record = Record(body=body)
        record.peer = request.transport.get_extra_info("peername") if request.transport else None
        self.records.append(record)
        return record, self.queue.pop(0) if self.queue else self.script

    async def _whole(self, request: web.Request) -> web.StreamResponse:
        _, script = self._take(request, await request.json())
        if script.status != 200:
            return web.json_response(
                script.error_body or gemini_error(script.status, "INTERNAL", "fake failure"),
                status=script.status,
                headers=script.headers,
            )
        return web.json_response(self.whole)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        record, script = self._take(request, await request.json())
        if script.status != 200:
            return web.json_response(
                script.error_body or gemini_error(script.status, "INTERNAL", "fake failure"),
                status=script.status,
                headers=script.headers,
            )
        return await self._play(request, record, script)

    def _flood_event(self, n: int) -> bytes:
        return gevent(response([text(f"tok{n} " + "x" * 200)]))


async def start_fake_gemini(aiohttp_server: Any) -> FakeGemini:
    """A :class:`FakeGemini` serving on loopback, ``base_url`` set (``.../v1beta``)."""
    fake = FakeGemini()
    server: TestServer = await aiohttp_server(fake.app)
    fake.base_url = str(server.make_url("/v1beta"))
    return fake


def gemini_model(fake: FakeGemini, **extra: Any) -> dict[str, Any]:
    """A config entry routing model ``gem`` to the fake as ``gemini-up``."""
    return {
        "name": "gem",
        "provider": "gemini",
        "upstream_model": UPSTREAM_MODEL,
        "base_url": fake.base_url,
        **extra,
    }
