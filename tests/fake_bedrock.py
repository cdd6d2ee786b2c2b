"""A fake AWS Bedrock Runtime upstream: Converse and ConverseStream.

Wire format from the API reference
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html)
and botocore's ``bedrock-runtime`` service model: ``POST
/model/{modelId}/converse-stream`` answers ``application/vnd.amazon.eventstream``
(binary messages, :func:`frame`, with real CRC32s), ``POST
/model/{modelId}/converse`` a JSON ``ConverseResponse``; errors are
``{"message"}`` bodies with ``x-amzn-ErrorType``.

:class:`FakeBedrock` checks every request's authentication as Bedrock
would: a SigV4 signature recomputed with botocore from the request it
received (the dummy credentials the tests put in the environment,
:data:`ACCESS_KEY`), or the Bedrock API key :data:`API_KEY`; a request that
fails gets 403. ``tests/test_bedrock_fake.py`` proves the fake real: boto3's
own ``bedrock-runtime`` client (``converse_stream``, ``converse``) signs
requests the fake accepts and reads its bytes. Streaming reuses
:class:`tests.fakes.FakeOpenAI`'s scripted writes (pacing, abrupt close,
hang, byte counts).
"""

from __future__ import annotations

import hmac
import struct
from binascii import crc32
from typing import Any

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from tests.fakes import FakeOpenAI, Record, Script

UPSTREAM_MODEL = "anthropic.claude-up-v1:0"
REGION = "us-east-1"
ACCESS_KEY = "AKIDFAKEBEDROCK"
SECRET_KEY = "fake-secret-key"
API_KEY = "fake-bedrock-api-key"
EVENT_STREAM = "application/vnd.amazon.eventstream"


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message (string headers only, type 7)."""
    raw = b""
    for name, value in headers.items():
        key, val = name.encode(), value.encode()
        raw += struct.pack("!B", len(key)) + key + struct.pack("!BH", 7, len(val)) + val
    total = 12 + len(raw) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw))
    prelude += struct.pack("!I", crc32(prelude))
    body = prelude + raw + payload
    return body + struct.pack("!I", crc32(body))


def event(name: str, payload: dict[str, Any]) -> bytes:
    """An ``event`` message as Bedrock writes it (with its ``p`` padding field)."""
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps({**payload, "p": "abcdefgh"}))


def exception(name: str, message: str = "Too many requests, please wait.") -> bytes:
    """An ``exception`` message (``throttlingException``, ``modelStreamErrorException``, ...)."""
    headers = {":exception-type": name, ":content-type": "application/json",
               ":message-type": "exception"}  # fmt: skip
    return frame(headers, orjson.dumps({"message": message}))


def message_start() -> bytes:
    return event("messageStart", {"role": "assistant"})


def text_delta(index: int, text: str) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": text}})


def tool_start(index: int, name: str, tool_id: str = "tooluse_01") -> bytes:
    start = {"toolUse": {"toolUseId": tool_id, "name": name}}
    return event("contentBlockStart", {"contentBlockIndex": index, "start": start})


def tool_delta(index: int, partial: str) -> bytes:
    delta = {"toolUse": {"input": partial}}
    return event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})


def block_stop(index: int) -> bytes:
    return event("contentBlockStop", {"contentBlockIndex": index})


def message_stop(reason: str = "end_turn") -> bytes:
    return event("messageStop", {"stopReason": reason})


def metadata(input_tokens: int = 11, output_tokens: int = 7) -> bytes:
    usage = {"inputTokens": input_tokens, "outputTokens": output_tokens,
             "totalTokens": input_tokens + output_tokens}  # fmt: skip
    return event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}})


def text_events(
    pieces: list[str], reason: str = "end_turn", output_tokens: int | None = None
) -> list[bytes]:
    """A whole text answer: start, one text block of ``pieces``, stop, usage."""
    return [
        message_start(),
        *(text_delta(0, p) for p in pieces),
        block_stop(0),
        message_stop(reason),
        metadata(output_tokens=len(pieces) if output_tokens is None else output_tokens),
    ]


def tool_events(name: str, arguments: str, pieces: int, tool_id: str = "tooluse_01") -> list[bytes]:
    """Text, then one toolUse block whose JSON input arrives in ``pieces`` deltas."""
    size = max(1, -(-len(arguments) // pieces))
    parts = [arguments[i : i + size] for i in range(0, len(arguments), size)]
    return [
        message_start(),
        text_delta(0, "Let me check."),
        block_stop(0),
        tool_start(1, name, tool_id),
        *(tool_delta(1, p) for p in parts),
        block_stop(1),
        message_stop("tool_use"),
        metadata(output_tokens=20),
    ]


def converse_response(
    content: list[dict[str, Any]] | None = None, reason: str = "end_turn"
) -> dict[str, Any]:
    """A non-streaming ConverseResponse."""
    return {
        "output": {"message": {"role": "assistant",
                               "content": [{"text": "hi there"}] if content is None else content}},
        "stopReason": reason,
        "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15},
        "metrics": {"latencyMs": 42},
    }  # fmt: skip


def signature_ok(request: web.Request, body: bytes) -> bool:
    """Whether ``request`` carries a valid SigV4 signature by :data:`ACCESS_KEY`
    (recomputed with botocore over the request as received) or the API key."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return hmac.compare_digest(auth[7:], API_KEY)
    try:
        algorithm, fields = auth.split(" ", 1)
        parts = dict(p.strip().split("=", 1) for p in fields.split(","))
        access_key, day, region, service, _ = parts["Credential"].split("/")
        signed = parts["SignedHeaders"].split(";")
        stamp = request.headers["X-Amz-Date"]
    except (KeyError, ValueError):
        return False
    if algorithm != "AWS4-HMAC-SHA256" or access_key != ACCESS_KEY or service != "bedrock":
        return False
    if region != REGION or not stamp.startswith(day):
        return False
    url = f"{request.scheme}://{request.host}{request.raw_path}"
    headers = {h: request.headers[h] for h in signed if h != "host" and h in request.headers}
    unsigned = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    unsigned.context["timestamp"] = stamp
    signer = SigV4Auth(ReadOnlyCredentials(ACCESS_KEY, SECRET_KEY, None), "bedrock", REGION)
    canonical = signer.canonical_request(unsigned)
    expected = signer.signature(signer.string_to_sign(unsigned, canonical), unsigned)
    return hmac.compare_digest(expected, parts["Signature"])


class FakeBedrock(FakeOpenAI):
    """See the module docstring. ``script`` (streams) and ``response``
    (Converse) may change between requests; ``queue`` holds scripts for the
    next streams; ``paths`` and ``headers`` record each request's."""

    def __init__(self) -> None:
        super().__init__()
        self.script = Script(events=text_events(["hi"]), content_type=EVENT_STREAM)
        self.response = converse_response()
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.app.router.add_post("/model/{model}/converse-stream", self._stream)
        self.app.router.add_post("/model/{model}/converse", self._converse)

    async def _check(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.read()
        self.paths.append(request.raw_path)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if not signature_ok(request, body):
            error = {"message": "The request signature we calculated does not match"}
            return {}, web.json_response(
                error, status=403, headers={"x-amzn-ErrorType": "AccessDeniedException:"}
            )
        return orjson.loads(body), None

    def _refuse(self, script: Script) -> web.Response:
        kinds = {429: "ThrottlingException", 503: "ServiceUnavailableException",
                 400: "ValidationException"}  # fmt: skip
        kind = kinds.get(script.status, "InternalServerException")
        return web.json_response(
            script.error_body or {"message": "fake failure"},
            status=script.status,
            headers={
                "x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/",
                **script.headers,
            },
        )

    async def _converse(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._check(request)
        self.records.append(Record(body=body))
        if refused is not None:
            return refused
        script = self.queue.pop(0) if self.queue else self.script
        if script.status != 200:
            return self._refuse(script)
        return web.json_response(self.response)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._check(request)
        record = Record(body=body)
        self.records.append(record)
        if refused is not None:
            return refused
        script = self.queue.pop(0) if self.queue else self.script
        if script.status != 200:
            return self._refuse(script)
        return await self._play(request, record, script)


def bedrock_model(fake: FakeBedrock, **extra: Any) -> dict[str, Any]:
    """A config entry routing model ``nova`` to the fake as :data:`UPSTREAM_MODEL`."""
    return {
        "name": "nova",
        "provider": "bedrock",
        "upstream_model": UPSTREAM_MODEL,
        "base_url": fake.base_url,
        "region": REGION,
        **extra,
    }


async def start_fake_bedrock(aiohttp_server: Any) -> FakeBedrock:
    """A :class:`FakeBedrock` serving on loopback, ``base_url`` set."""
    fake = FakeBedrock()
    server = await aiohttp_server(fake.app)
    fake.base_url = str(server.make_url(""))
    return fake


def aws_environment(monkeypatch: Any) -> None:
    """The dummy credentials in the environment (botocore's chain reads them
    first), and nothing else of a developer's AWS setup: no profile files,
    no instance metadata, no Bedrock API key."""
    for name in ("AWS_BEARER_TOKEN_BEDROCK", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def script(events: list[bytes], **fields: Any) -> Script:
    """A :class:`~tests.fakes.Script` of event-stream messages."""
    return Script(events=events, **{"content_type": EVENT_STREAM, **fields})
