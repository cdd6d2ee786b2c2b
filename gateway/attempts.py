"""Opening the upstream: retries with backoff, then fallbacks, until a first chunk.

Before the first chunk nothing has reached the client but (maybe) headers and
heartbeats, so a retryable failure (``GatewayError.retryable``: connect
errors, 429, 500, 502, 503, 504, 529, TTFT timeout) may be retried on the same
target with exponential backoff and jitter (tenacity's
``wait_exponential_jitter``), never shorter than the upstream's
``Retry-After``. A ``Retry-After`` beyond ``retry_max_backoff_s`` or spent
retries move on to the next fallback, possibly another provider and dialect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from .config import StreamSettings
from .dialects.frames import StreamEncoder
from .errors import GatewayError, UpstreamProtocolError, UpstreamTimeout
from .otel.hooks import track_attempts
from .providers.base import Provider, UpstreamChunk, UpstreamStream
from .recorder import Recorder
from .routing.route import LeasedUpstream
from .timing import StreamClock

if TYPE_CHECKING:
    from .routing.route import Route
    from .routing.router import Lease


@dataclass(frozen=True, slots=True)
class Target:
    """One model that may serve the request: the primary or a fallback."""

    model: str
    provider: Provider
    body: dict[str, Any]
    """The request body in the provider's dialect."""
    encoder: StreamEncoder
    """Encodes this provider's chunks in the client's dialect."""
    settings: StreamSettings
    retries: int = 0
    backoff_s: float = 0.25
    max_backoff_s: float = 5.0
    route: Route | None = None
    """A model with deployments: its attempts go through the route
    (:mod:`gateway.routing.route`), which chooses one per attempt."""


@dataclass(frozen=True, slots=True)
class OpenUpstream:
    """A target whose upstream has produced its first chunk."""

    target: Target
    upstream: UpstreamStream
    first: UpstreamChunk


async def _first_chunk(target: Target, clock: StreamClock) -> OpenUpstream:
    clock.mark_upstream_sent()
    upstream: UpstreamStream | None = None
    try:
        async with asyncio.timeout(target.settings.ttft_timeout_s):
            upstream = await target.provider.open_stream(target.body)
            clock.mark_upstream_headers()
            first = await upstream.next()
    except TimeoutError:
        if upstream is not None:
            upstream.close()
        raise UpstreamTimeout(
            f"No first token from the upstream provider within {target.settings.ttft_timeout_s} s"
        ) from None
    except BaseException:
        if upstream is not None:
            upstream.close()
        raise
    if first is None:
        upstream.close()
        raise UpstreamProtocolError("The upstream stream ended before its first event")
    return OpenUpstream(target, upstream, first)


def _wait(target: Target) -> Any:
    jitter = wait_exponential_jitter(
        multiplier=target.backoff_s, max=target.max_backoff_s, jitter=target.backoff_s
    )

    def wait(state: RetryCallState) -> float:
        delay = float(jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, GatewayError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    return wait


def _stop(target: Target) -> Any:
    def stop(state: RetryCallState) -> bool:
        if state.attempt_number > target.retries:
            return True
        exc = state.outcome.exception() if state.outcome else None
        return (
            isinstance(exc, GatewayError)
            and exc.retry_after is not None
            and exc.retry_after > target.max_backoff_s
        )

    return stop


def _retrying(target: Target, recorder: Recorder) -> AsyncRetrying:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        code = exc.code if isinstance(exc, GatewayError) and exc.code else "upstream_error"
        recorder.retry(target.provider.kind, code)

    return AsyncRetrying(
        stop=_stop(target),
        wait=_wait(target),
        retry=retry_if_exception(_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, GatewayError) and exc.retryable


T = TypeVar("T")


async def open_first(
    targets: tuple[Target, ...], clock: StreamClock, recorder: Recorder
) -> OpenUpstream:
    """The first target (after retries) whose upstream yields a first chunk."""

    async def attempt(target: Target) -> OpenUpstream:
        return await _first_chunk(target, clock)

    return await with_fallbacks(targets, attempt, recorder, keep=_leased)


def _leased(opened: OpenUpstream, lease: Lease) -> OpenUpstream:
    """A routed stream holds its deployment slot until its upstream is closed."""
    return OpenUpstream(opened.target, LeasedUpstream(opened.upstream, lease), opened.first)


async def with_fallbacks(
    targets: tuple[Target, ...],
    attempt: Callable[[Target], Awaitable[T]],
    recorder: Recorder,
    keep: Callable[[T, Lease], T] | None = None,
) -> T:
    """``attempt`` on each target in turn, with retries, until one succeeds.

    Raises the last target's ``GatewayError`` when all fail, or at once for
    one that is not retryable (a 400 from the upstream would fail anywhere).
    A target with a ``route`` spends its retries on its model's deployments;
    ``keep`` then ties the deployment's slot to the result (None: the slot
    is given back when the attempt returns).
    """
    last: GatewayError | None = None
    attempt = track_attempts(attempt)  # OpenTelemetry: each call an attempt span (when on)
    for index, target in enumerate(targets):
        if index:
            recorder.retry(targets[index - 1].provider.kind, "fallback")
            recorder.relabel(target.model, target.provider.kind)
        try:
            if target.route is not None:
                result: T = await target.route.attempt(target, attempt, recorder, keep)
            elif target.retries:
                result = await _retrying(target, recorder)(attempt, target)
            else:
                # No retries: no tenacity machinery on the per-request path.
                result = await attempt(target)
            return result
        except GatewayError as err:
            if not err.retryable:
                raise
            last = err
    assert last is not None
    raise last
