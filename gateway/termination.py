"""Why a stream ended: one enum, carried by the error types, the label values
of ``sluice_stream_terminations_total`` and the ``outcome`` of the
``stream_end`` log line.

=====================  =========================================================
reason                 meaning
=====================  =========================================================
completed              the upstream finished and the client took every event
client_disconnected    the client went away (or stopped the stream)
upstream_error         the provider failed: HTTP error, broken connection,
                       malformed stream
upstream_timeout       no first chunk within ``ttft_timeout_s``
upstream_stalled       the upstream went silent for ``idle_timeout_s`` mid-stream
slow_client            the client took nothing for ``send_timeout_s``
deadline               the whole stream ran past ``deadline_s``
shutdown               the gateway shut down before the stream finished
rejected               the gateway refused the request (invalid, at capacity)
cancelled              its owner cancelled a detached generation
=====================  =========================================================
"""

from __future__ import annotations

from enum import StrEnum


class Termination(StrEnum):
    """A stream's termination reason (see the module docstring)."""

    COMPLETED = "completed"
    CLIENT_DISCONNECTED = "client_disconnected"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_STALLED = "upstream_stalled"
    SLOW_CLIENT = "slow_client"
    DEADLINE = "deadline"
    SHUTDOWN = "shutdown"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
