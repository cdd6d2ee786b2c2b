"""configure_logging(): structlog JSON lines, stdlib loggers included.

One JSON object per line on stdout: ``timestamp`` (ISO 8601, UTC), ``level``,
``event``, the context bound by the middleware (``request_id``), and the
call's key/values. aiohttp's stdlib loggers (access, server) go through
``structlog.stdlib.ProcessorFormatter`` so they are JSON too.
(structlog docs: "Standard Library Logging", "Performance".)
"""

from __future__ import annotations

import logging
import sys
from typing import BinaryIO

import orjson
import structlog

_DICT_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)
"""Tracebacks as dicts, without local variables: a frame's locals may hold a
client's secret or its request headers, and those are never logged."""


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
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.BytesLoggerFactory(stream or sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _DICT_TRACEBACKS,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(lvl)
