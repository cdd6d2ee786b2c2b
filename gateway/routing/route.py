"""Route: one request's attempts across the deployments of one model.

:func:`gateway.attempts.with_fallbacks` hands a routed target's attempts to
:meth:`Route.attempt`: up to ``1 + retries`` attempts, each on a deployment
the request has not failed on yet (:meth:`ModelRouter.acquire`, which may
wait in the model's queue: inside the opening, so the stream core's
heartbeats go on meanwhile). A retryable failure before the first token
moves to the next deployment at once (no backoff: it is another server);
when none is left, the last upstream error (``DeploymentsUnavailable``
when none was tried) goes to the fallbacks; so does ``DeploymentsBusy``
(every deployment full for the queue's time: 429).

The slot is given back on every path: at once when the attempt fails or is
cancelled, when ``keep`` is None (a non-streaming call) as soon as it
returns, otherwise when the stream's upstream is closed or released
(:class:`LeasedUpstream`; the stream core does that on every exit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from ..errors import DeploymentsUnavailable, GatewayError
from ..providers.base import UpstreamChunk, UpstreamStream
from .router import Deployment, Lease, ModelRouter

if TYPE_CHECKING:
    from ..attempts import Target
    from ..recorder import Recorder

T = TypeVar("T")


class Route:
    """See the module docstring. ``make`` builds the target of one
    deployment; ``served`` is told the name of the deployment that served."""

    __slots__ = ("key", "make", "router", "served")

    def __init__(
        self,
        router: ModelRouter,
        make: Callable[[Deployment], Target],
        *,
        key: str | None = None,
        served: Callable[[str], None] | None = None,
    ) -> None:
        self.router = router
        self.make = make
        self.key = key
        self.served = served

    async def attempt(
        self,
        target: Target,
        attempt: Callable[[Target], Awaitable[T]],
        recorder: Recorder,
        keep: Callable[[T, Lease], T] | None,
    ) -> T:
        """``attempt`` on deployments of ``target``'s model until one succeeds."""
        tried: set[str] = set()
        last: GatewayError | None = None
        kind = target.provider.kind
        for _ in range(1 + target.retries):
            try:
                lease = await self.router.acquire(self.key, frozenset(tried))
            except DeploymentsUnavailable:
                if last is not None:
                    raise last from None  # what the deployments tried said
                raise
            chosen = self.make(lease.deployment)
            try:
                if last is not None:
                    recorder.retry(kind, last.code or "upstream_error")
                if chosen.provider.kind != kind:
                    kind = chosen.provider.kind
                    recorder.relabel(chosen.model, kind)
                result = await attempt(chosen)
            except GatewayError as err:
                lease.failed(err)
                if not err.retryable:
                    raise
                last = err
                tried.add(lease.deployment.name)
                continue
            except BaseException:
                lease.release()
                raise
            lease.first_token()
            d = lease.deployment
            recorder.deployment(d.name, d.children.itl if d.children is not None else None)
            if self.served is not None:
                self.served(d.name)
            if keep is None:
                lease.release()
                return result
            return keep(result, lease)
        assert last is not None
        raise last


class LeasedUpstream:
    """An upstream stream that gives its deployment slot back when it is closed
    or released. ``next`` is the wrapped stream's own bound method: nothing
    is added per chunk."""

    __slots__ = ("_inner", "_lease", "next", "next_nowait")

    def __init__(self, inner: UpstreamStream, lease: Lease) -> None:
        self._inner = inner
        self._lease = lease
        self.next: Callable[[], Coroutine[Any, Any, UpstreamChunk | None]] = inner.next
        self.next_nowait: Callable[[], UpstreamChunk | None] = getattr(
            inner, "next_nowait", _nothing
        )

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._lease.release()

    def release(self) -> None:
        try:
            self._inner.release()
        finally:
            self._lease.release()


def _nothing() -> UpstreamChunk | None:
    """``next_nowait`` of a stream that has none: no chunk is ever waiting."""
    return None


def affinity_key(request: web.Request, body: Mapping[str, Any], header: str) -> str | None:
    """The affinity strategy's key: the ``header`` (``Sluice-Session``), else
    the body's ``user`` (OpenAI), else ``metadata.user_id`` (Anthropic)."""
    value = request.headers.get(header)
    if value:
        return str(value)
    user = body.get("user")
    if isinstance(user, str) and user:
        return user
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping):
        uid = metadata.get("user_id")
        if isinstance(uid, str) and uid:
            return uid
    return None
