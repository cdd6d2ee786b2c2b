"""What a dialect encoder hands the relay for each upstream chunk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from ..errors import GatewayError
from ..providers.base import UpstreamChunk
from ..usage_estimate import estimate_input_tokens, estimate_output_tokens


def token_count(value: object) -> int | None:
    """An upstream's token count, or None when it is not a non-negative
    integer: a hostile or broken upstream's ``-1`` (or ``true``) must not
    refund a key's budget or reach a Prometheus counter (which raises)."""
    return value if type(value) is int and value >= 0 else None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the upstream (``estimated``: some filled in by
    Sluice, :mod:`gateway.usage_estimate`, because the upstream sent none)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    estimated: bool = False
    cached_input_tokens: int = 0
    """Of ``input_tokens``, those read from the upstream's prompt cache (billed
    at the cached-input rate, :mod:`gateway.cost`): OpenAI's
    ``prompt_tokens_details.cached_tokens``, Anthropic's
    ``cache_read_input_tokens``, a Responses ``input_tokens_details.cached_tokens``."""


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


class Relayed:
    """What one stream's encoder relayed, for its final :class:`Usage`: the
    generated text pieces (content, reasoning, tool-call arguments), and the
    usage the upstream reported (the last one seen; counts it left out stay
    ``None``). ``body`` is the client's request (for the input estimate).

    Costs one ``list.append`` per content event; the pieces are the strings
    the parsed chunks already hold."""

    __slots__ = ("_body", "_final", "pieces", "reported")

    def __init__(self, body: dict[str, Any] | None) -> None:
        self._body = body
        self.pieces: list[str] = []
        self.reported: Usage | None = None
        self._final: tuple[int, Usage | None, Usage] | None = None

    def report(self, usage: Usage | None) -> None:
        """Keep what the upstream reported (counts it left out keep earlier ones)."""
        if usage is None:
            return
        last = self.reported
        if last is not None:
            usage = Usage(
                usage.input_tokens if usage.input_tokens is not None else last.input_tokens,
                usage.output_tokens if usage.output_tokens is not None else last.output_tokens,
                cached_input_tokens=usage.cached_input_tokens or last.cached_input_tokens,
            )
        self.reported = usage

    @property
    def complete(self) -> bool:
        """Whether the upstream reported both counts (nothing to estimate)."""
        r = self.reported
        return r is not None and r.input_tokens is not None and r.output_tokens is not None

    def usage(self) -> Usage:
        """The stream's usage: the upstream's counts, each missing one
        estimated (then ``estimated=True``). Computed once per state."""
        final = self._final
        if final is not None and final[0] == len(self.pieces) and final[1] is self.reported:
            return final[2]
        reported = self.reported or Usage()
        inp, out = reported.input_tokens, reported.output_tokens
        estimated = inp is None or out is None
        if inp is None:
            inp = estimate_input_tokens(self._body or {})
        if out is None:
            out = estimate_output_tokens(self.pieces, len(self.pieces))
        usage = Usage(inp, out, estimated, reported.cached_input_tokens) if estimated else reported
        self._final = (len(self.pieces), self.reported, usage)
        return usage


class StreamEncoder(Protocol):
    """Turns upstream chunks into SSE bytes in the client's dialect."""

    def encode(self, chunk: UpstreamChunk) -> Frame:
        """The frame for one chunk."""
        ...

    def finish(self) -> bytes:
        """Bytes that end a successful stream (e.g. ``data: [DONE]``); a usage
        the upstream did not send is filled in (:meth:`usage`) where the
        client's dialect carries one."""
        ...

    def usage(self) -> Usage:
        """The stream's usage so far: the upstream's counts, any missing one
        estimated from what was relayed and the request (``estimated``)."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """An error event that ends a failed stream (never a clean end)."""
        ...
