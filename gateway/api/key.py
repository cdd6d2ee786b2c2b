"""``GET /v1/sluice/key``: the calling key's view of itself.

Answers (JSON)::

    {"object": "sluice.key", "name": "team-a",
     "models": ["gpt-4o-mini"] | null,          # null: every model
     "expires_at": "2027-01-01T00:00:00Z" | null,
     "limits": {"requests_per_minute", "tokens_per_minute",
                "max_concurrent_streams", "token_budget", "usd_budget",
                "budget_period"},
     "usage": {"minute": {"requests", "tokens", "resets_at"},
               "period": {"name": "2026-11-21", "tokens", "estimated_tokens",
                          "remaining", "resets_at",
                          "spend_usd", "estimated_spend_usd", "remaining_usd"},
               "open_requests"} | null}        # null: a key without limits

A request without a key (an open gateway) is 401 ``invalid_api_key``; Redis
not answering is 503 ``state_unavailable``. Never shows the secret or its hash.
``estimated_tokens``: the part of the period's ``tokens`` Sluice estimated
because the upstream reported no usage (:mod:`gateway.usage_estimate`).
``spend_usd``: US dollars spent this period at the models' prices
(:mod:`gateway.cost`), to the micro-dollar; ``estimated_spend_usd`` the part
priced from estimated tokens; ``remaining_usd`` what is left of ``usd_budget``
(null without one).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from ..cost.spend import MICRO_PER_USD, micro_usd
from ..errors import AuthenticationFailed, StateBusy, StateUnavailable
from ..quota.store import StoreBusy, StoreUnavailable
from ..state import KEY, QUOTA_VIEW, QUOTAS

KEY_ROUTE = "/v1/sluice/key"


def _time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def key_info(request: web.Request) -> web.Response:
    """The caller's key name, models, limits and usage (see the module docstring)."""
    key = request.get(KEY)
    if key is None:
        raise AuthenticationFailed("This route describes the calling API key; none was sent")
    try:
        view = await request.app[QUOTAS].view(key)
    except StoreBusy as err:
        raise StateBusy(
            "The gateway is busy (all its connections to the quota store are in use); "
            "retry shortly",
            retry_after=1,
            detail=str(err),
        ) from None
    except StoreUnavailable as err:
        raise StateUnavailable(
            "The gateway cannot read this key's usage right now; retry shortly",
            retry_after=1,
            detail=str(err),
        ) from None
    usage: dict[str, Any] | None = None
    if view is not None:
        request[QUOTA_VIEW] = view
        w, u = view.windows, view.usage
        remaining = None if key.token_budget is None else max(0, key.token_budget - u.period_tokens)
        remaining_usd = (
            None
            if key.usd_budget is None
            else max(0, micro_usd(key.usd_budget) - u.period_usd) / MICRO_PER_USD
        )
        usage = {
            "minute": {
                "requests": u.requests,
                "tokens": u.tokens,
                "resets_at": _time(w.minute_ends),
            },
            "period": {
                "name": w.period,
                "tokens": u.period_tokens,
                "estimated_tokens": u.period_estimated_tokens,
                "remaining": remaining,
                "resets_at": _time(w.period_ends),
                "spend_usd": u.period_usd / MICRO_PER_USD,
                "estimated_spend_usd": u.period_estimated_usd / MICRO_PER_USD,
                "remaining_usd": remaining_usd,
            },
            "open_requests": u.open_requests if key.max_concurrent_streams is not None else None,
        }
    body = {
        "object": "sluice.key",
        "name": key.name,
        "models": list(key.models) if key.models is not None else None,
        "expires_at": _time(key.expires_at.timestamp()) if key.expires_at else None,
        "limits": {
            "requests_per_minute": key.requests_per_minute,
            "tokens_per_minute": key.tokens_per_minute,
            "max_concurrent_streams": key.max_concurrent_streams,
            "token_budget": key.token_budget,
            "usd_budget": key.usd_budget,
            "budget_period": key.budget_period,
        },
        "usage": usage,
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get(KEY_ROUTE, key_info)
