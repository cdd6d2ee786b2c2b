"""What a dialect encoder hands the relay for each upstream chunk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..errors import GatewayError
from ..providers.base import UpstreamChunk


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the upstream."""

    input_tokens: int | None = None
    output_tokens: int | None = None


class Frame(NamedTuple):
    """Bytes to write for one upstream chunk (possibly empty: nothing to relay),
    whether they carry content (text, reasoning, tool-call arguments: what
    TTFT and ITL time), and usage if the chunk reported it.

    A NamedTuple, not a frozen dataclass: one is built per SSE event, and a
    frozen dataclass's ``__init__`` (``object.__setattr__`` per field) costs
    several times a tuple's."""

    data: bytes
    content: bool = False
    usage: Usage | None = None


EMPTY = Frame(b"")


def data_lines(data: bytes) -> bytes:
    """An event's data that holds ``\\n`` (sent upstream as several ``data:``
    lines, which the decoder joined) as the body of as many ``data:`` lines
    (WHATWG HTML 9.2.6: the client joins them back), without the leading
    ``data: `` of the first. Callers relay ``data`` unchanged when it holds no
    ``\\n`` (the common case: one ``in`` check) and call this otherwise."""
    return data.replace(b"\n", b"\ndata: ")


class StreamEncoder(Protocol):
    """Turns upstream chunks into SSE bytes in the client's dialect."""

    def encode(self, chunk: UpstreamChunk) -> Frame:
        """The frame for one chunk."""
        ...

    def finish(self) -> bytes:
        """Bytes that end a successful stream (e.g. ``data: [DONE]``)."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """An error event that ends a failed stream (never a clean end)."""
        ...
