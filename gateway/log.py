"""configure_logging(): structlog JSON lines, stdlib loggers included.

One JSON object per line on stdout: ``timestamp`` (ISO 8601, UTC), ``level``,
``event``, the context bound by the middleware (``request_id``), and the
call's key/values. aiohttp's stdlib loggers (access, server) go through
``structlog.stdlib.ProcessorFormatter`` so they are JSON too.
(structlog docs: "Standard Library Logging", "Performance".)

No client secret reaches a log line, whatever the request:

- A request aiohttp's HTTP parser rejects (bare-LF line endings, a control
  character in a header, a bad method, a line too long, ...) is logged by
  aiohttp (``aiohttp.server``, "Error handling request", ``web_protocol.
  RequestHandler.handle_error``) with the parser's exception, whose message
  quotes the raw bytes, ``Authorization`` header and all. :class:`ParserErrorFilter`
  turns such a record into ``event="http_request_rejected"`` with the error's
  class, status and the peer address, and drops the exception.
- Every rendered line, ours or a library's, then goes through :func:`scrub`:
  a credential-shaped value (``Bearer <token>``, ``x-api-key: <token>``, a
  ``sk-...`` secret) becomes ``[redacted]``. It is the backstop for what
  nobody foresaw, not the rule: code never logs a header value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any, BinaryIO

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError

_DICT_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)
"""Tracebacks as dicts, without local variables: a frame's locals may hold a
client's secret or its request headers, and those are never logged."""

REDACTED = "[redacted]"
_CREDENTIAL = re.compile(
    rb"(?i)(bearer\s+|x-api-key[\"']?\s*[:=]\s*[\"']?|api[_-]?key=)[^\s\"'\\,;&<]+"
    rb"|\bsk-[A-Za-z0-9_-]{8,}"
)
"""A credential in a rendered line: the value after ``Bearer`` or
``x-api-key:`` (a header dumped raw, JSON-escaped or not), an ``api_key=``
query parameter, or anything shaped like a ``sk-`` secret (Sluice's
``sk-sluice-...``, OpenAI's, Anthropic's ``sk-ant-...``)."""


def _redact(match: re.Match[bytes]) -> bytes:
    prefix = match.group(1)
    return (prefix or b"") + REDACTED.encode()


def scrub(line: bytes) -> bytes:
    """``line`` with every credential-shaped value (:data:`_CREDENTIAL`) replaced."""
    # Without one of these (lower-cased) :data:`_CREDENTIAL` cannot match:
    # checked first, a clean line costs ~1 µs instead of the regex's ~25.
    lowered = line.lower()
    if b"bearer" not in lowered and b"api" not in lowered and b"sk-" not in lowered:
        return line
    return _CREDENTIAL.sub(_redact, line)


def _dumps_scrubbed(obj: Any, **kw: Any) -> bytes:
    return scrub(orjson.dumps(obj, **kw))


def _json_scrubbed(obj: Any, **kw: Any) -> str:
    return scrub(json.dumps(obj, **kw).encode()).decode()


class ParserErrorFilter(logging.Filter):
    """A stdlib record that carries one of aiohttp's HTTP parsing errors
    (:class:`aiohttp.http_exceptions.HttpProcessingError`: ``BadHttpMessage``,
    ``BadStatusLine``, ``LineTooLong``, ``InvalidHeader``, ...) becomes
    ``http_request_rejected`` with ``error_type``, ``status`` and ``remote``,
    at most a warning; the exception, whose message quotes the raw request,
    is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
            record.msg, record.args = "http_request_rejected", ()
            record.exc_info, record.exc_text = None, None
            if record.levelno > logging.WARNING:  # the client's fault, not the gateway's
                record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.error_type = type(exc).__name__
            record.status = exc.code
            record.remote = remote if isinstance(remote, str) else None
        return True


def configure_logging(level: str = "info", stream: BinaryIO | None = None) -> None:
    """Configure structlog and the stdlib root logger. Idempotent.

    ``stream`` (default: stdout) receives structlog's lines; tests pass a buffer.
    """
    lvl = logging.getLevelNamesMapping()[level.upper()]
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            _DICT_TRACEBACKS,
            structlog.processors.JSONRenderer(serializer=_dumps_scrubbed),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.BytesLoggerFactory(stream or sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(ParserErrorFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.ExtraAdder(allow=("error_type", "status", "remote")),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _DICT_TRACEBACKS,
                structlog.processors.JSONRenderer(serializer=_json_scrubbed),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(lvl)
