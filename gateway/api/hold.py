"""What an admitted request holds, and the one place that gives it back.

Every request that streams or calls an upstream takes, in this order: the
key's ticket (its request counted, a concurrency lease: :mod:`gateway.quota`)
and a gateway admission slot (:class:`~gateway.admission.Admission`:
``max_streams``, queued bytes, draining). :meth:`Hold.take` takes both or
neither (a refusal gives back what was taken); :meth:`Hold.release` gives
both back, once, charging the key what the request spent (tokens, and
their cost in USD: :mod:`gateway.cost`, also counted in
``sluice_spend_usd_total`` and put on the summary line). It is shielded
from the cancellation of the task that calls it (a client that left), so
the key's lease is never left to expire.

:func:`run_stream` is the admit -> stream -> settle sequence that a live
stream, a detached generation and a stored stream's reader share.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ..admission import Admission, Stoppable
from ..auth import check_model, stash_view
from ..cost.prices import PriceBook
from ..cost.spend import ANONYMOUS, NO_SPEND, SpendMeter
from ..outcome import Outcome
from ..quota.limiter import Quotas, Ticket
from ..state import ADMISSION, KEY, PRICES, QUOTAS, SPEND_METER, SUMMARY
from ..stream import Stream


@dataclass(slots=True)
class Hold:
    """An admission slot and, for a keyed request, the key's ticket."""

    admission: Admission
    request: Stoppable
    quotas: Quotas
    ticket: Ticket | None
    model: str
    prices: PriceBook
    meter: SpendMeter
    summary: dict[str, object]
    key_name: str
    """The key's name, :data:`~gateway.cost.spend.ANONYMOUS` without a key (the
    ``key`` label of the spend)."""
    released: bool = False

    @classmethod
    async def take(
        cls,
        request: web.Request,
        stoppable: Stoppable,
        model: str | None,
        *,
        charge_key: bool,
        summary: dict[str, object] | None = None,
    ) -> Hold:
        """Admit ``stoppable`` for ``request``. ``model``: checked against the
        key's allow-list (None: not a model request, e.g. a stored stream's
        reader). ``charge_key``: count it against the key's limits (False for
        a reader whose generation already holds the request's ticket).
        ``summary``: where the spend's log fields go (default: the request's
        summary line; a detached generation's end line outlives it).

        Raises ``ModelNotAllowed`` (403), the key's 429s, ``StateUnavailable``
        (503), ``AtCapacity`` (429) or ``ShuttingDown`` (503); nothing is held
        then."""
        app = request.app
        quotas = app[QUOTAS]
        key = request.get(KEY)
        ticket = None
        if key is not None:
            if model is not None:
                check_model(request, model)
            if charge_key:
                ticket = await quotas.admit(key, stash_view(request))
        admission = app[ADMISSION]
        try:
            admission.admit(stoppable)
        except BaseException:
            if ticket is not None:
                await quotas.settle_shielded(ticket, model or "", 0, 0)
            raise
        return cls(
            admission,
            stoppable,
            quotas,
            ticket,
            model or "",
            app[PRICES],
            app[SPEND_METER],
            request[SUMMARY] if summary is None else summary,
            key.name if key is not None else ANONYMOUS,
        )

    async def release(
        self,
        model: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        *,
        estimated: bool = False,
        cached_input_tokens: int = 0,
    ) -> None:
        """Give everything back (idempotent); the key is charged the tokens
        spent, under ``model`` (the one that served the request; default the
        one asked for), ``estimated`` when Sluice counted them itself (the
        upstream sent no usage). Shielded: it completes even when the calling
        task is cancelled meanwhile.

        With ``model`` (a request that asked a model), their cost at its
        price (``cached_input_tokens`` of the input read from the prompt
        cache) is counted (``sluice_spend_usd_total``), put on the summary
        line (``spend_usd``, ``spend_estimated``) and charged to the key's
        USD budget. Without, nothing is spent (a stored stream's reader)."""
        if self.released:
            return
        self.released = True
        self.admission.release(self.request)
        spend = NO_SPEND
        if model is not None:
            spend = self.prices.spend(
                model, input_tokens, output_tokens, cached_input_tokens, estimated=estimated
            )
            self.meter.record(self.key_name, model, spend)
            self.summary.update(spend.log_fields())
        if self.ticket is not None:
            await self.quotas.settle_shielded(
                self.ticket,
                model or self.model,
                input_tokens,
                output_tokens,
                estimated=estimated,
                spend=spend,
            )

    async def release_stream(self, outcome: Outcome | None) -> None:
        """:meth:`release`, charging what a stream's ``outcome`` says it spent."""
        if outcome is None:
            await self.release()
        else:
            await self.release(
                outcome.model,
                outcome.input_tokens or 0,
                outcome.output_tokens,
                estimated=outcome.usage_estimated,
                cached_input_tokens=outcome.usage.cached_input_tokens if outcome.usage else 0,
            )


async def run_stream(
    request: web.Request,
    stream: Stream,
    model: str | None,
    *,
    charge_key: bool = True,
    charge_tokens: bool = True,
) -> web.StreamResponse | None:
    """Admit ``stream``, run it, give back what it held, and put its outcome on
    the request's summary log line. ``charge_tokens`` False: the key is
    charged the request, not the tokens (a stored stream's reader: its
    generation was charged them). Raises what :meth:`Hold.take` and
    :meth:`Stream.run` raise."""
    hold = await Hold.take(request, stream, model, charge_key=charge_key)
    try:
        return await stream.run()
    finally:
        await hold.release_stream(stream.outcome if charge_tokens else None)
        if stream.outcome is not None:
            request[SUMMARY].update(stream.outcome.log_fields())
