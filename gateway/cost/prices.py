"""Each configured model's price, resolved once at start-up.

A model's price comes from, in order:

1. its ``[models.price]`` table (``input``, ``output``, ``cached_input``: USD
   per million tokens): the operator's word, for any model (a self-hosted
   model costs what they say; a negotiated rate replaces the list price);
2. the `genai-prices <https://github.com/pydantic/genai-prices>`_ data
   bundled with the installed version, for a model reached on a provider's
   public API: the provider is found by the upstream URL (the library's
   ``api_pattern`` per provider: ``api.openai.com``, ``api.anthropic.com``,
   ``api.groq.com``, ...; no ``base_url``: the provider kind's public API),
   the model by the upstream model name (the library's match clauses, which
   know dated names such as ``gpt-4o-mini-2024-07-18``). The prices in effect
   at start-up (the library's date-conditional prices); Anthropic-style
   tiers (another rate past N input tokens) are kept;
3. otherwise nothing (0): the simulator, an upstream on a loopback or
   private address (self-hosted: the library is not even loaded), or a
   model the library does not know (a ``model_price_unknown`` warning).

The library is never asked to update itself over the network (its
``UpdatePrices`` is not used): prices change when the package is upgraded.

Rates are kept as integers, pico-dollars per token (USD per million tokens
times 10^6), so a request's cost is exact integer arithmetic until the one
rounding to whole micro-dollars (:mod:`gateway.cost.spend`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import structlog

from ..config import ModelSettings, PriceSettings, RemoteModel, SimModel
from .spend import Spend

log = structlog.get_logger("gateway.cost")

PICO_PER_USD_PER_MTOK = 1_000_000
"""USD per million tokens -> pico-dollars per token."""

_LIBRARY_PROVIDER = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure",
    "gemini": "google",
    "bedrock": "aws",
}
"""Provider kind -> the library's id of its API. An ``openai`` model with a
``base_url`` is matched by that URL instead (an OpenAI-compatible host such as
Groq); every other kind by this id, whatever its endpoint. A kind missing here
costs 0 unless the config prices it."""


def pico_per_token(usd_per_mtok: Decimal | float) -> int:
    """USD per million tokens as whole pico-dollars per token (exact for
    prices given to 6 decimal places)."""
    value = Decimal(str(usd_per_mtok)) * PICO_PER_USD_PER_MTOK
    return int(value.to_integral_value(ROUND_HALF_UP))


class Rate(NamedTuple):
    """One kind of token's rate: pico-dollars per token, and the tiers that
    replace it when a request's input tokens pass a threshold (all its
    tokens then pay the tier's rate, as the providers bill it)."""

    base: int
    tiers: tuple[tuple[int, int], ...] = ()
    """``(input tokens above which, pico-dollars per token)``, ascending."""

    def at(self, input_tokens: int) -> int:
        if not self.tiers:
            return self.base
        rate = self.base
        for start, tier in self.tiers:
            if input_tokens > start:
                rate = tier
        return rate

    def usd_per_mtok(self) -> float:
        """The base rate in USD per million tokens (for logs and docs)."""
        return self.base / PICO_PER_USD_PER_MTOK


class Source(StrEnum):
    """Where a model's price came from."""

    CONFIG = "config"
    LIBRARY = "genai-prices"
    NONE = "none"


class Price(NamedTuple):
    """A model's price (see the module docstring)."""

    input: Rate
    output: Rate
    cached_input: Rate
    source: Source
    ref: str = ""
    """The library's provider and model id (``openai/gpt-4o-mini``), or why
    there is no price."""

    def cost_pico(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> int:
        """Pico-dollars for a request: ``input_tokens`` counts every input
        token, ``cached_input_tokens`` of them read from the prompt cache."""
        cached = min(max(cached_input_tokens, 0), input_tokens)
        return (
            (input_tokens - cached) * self.input.at(input_tokens)
            + cached * self.cached_input.at(input_tokens)
            + output_tokens * self.output.at(input_tokens)
        )

    def log_fields(self) -> dict[str, object]:
        return {
            "source": self.source.value,
            "ref": self.ref,
            "input_usd_per_mtok": self.input.usd_per_mtok(),
            "output_usd_per_mtok": self.output.usd_per_mtok(),
            "cached_input_usd_per_mtok": self.cached_input.usd_per_mtok(),
            "tiered": bool(self.input.tiers or self.output.tiers),
        }


FREE_RATE = Rate(0)


def free(why: str) -> Price:
    return Price(FREE_RATE, FREE_RATE, FREE_RATE, Source.NONE, why)


def from_config(price: PriceSettings) -> Price:
    cached = price.input if price.cached_input is None else price.cached_input
    return Price(
        Rate(pico_per_token(price.input)),
        Rate(pico_per_token(price.output)),
        Rate(pico_per_token(cached)),
        Source.CONFIG,
    )


def _self_hosted(base_url: str) -> bool:
    """Whether ``base_url`` names a loopback or private address (or localhost)."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def _rate(value: Any) -> Rate:
    """A library price value (``Decimal``, ``TieredPrices`` or None) as a :class:`Rate`."""
    if value is None:
        return FREE_RATE
    if isinstance(value, Decimal):
        return Rate(pico_per_token(value))
    tiers = tuple(sorted((int(t.start), pico_per_token(t.price)) for t in value.tiers))
    return Rate(pico_per_token(value.base), tiers)


def from_library(model: RemoteModel, now: datetime | None = None) -> Price:
    """``model``'s price from genai-prices, or :func:`free` with the reason."""
    provider_id = _LIBRARY_PROVIDER.get(model.provider)
    if provider_id is None:
        return free(f"no price library entry for provider {model.provider!r}")
    if model.base_url is not None and _self_hosted(model.base_url):
        return free("self-hosted")
    # Imported only here: loading its data costs ~0.43 s of CPU, paid only by a
    # gateway that has a model on a public API without a configured price.
    from genai_prices import Usage, calc_price
    from genai_prices import __version__ as library_version

    # The library's public entry point, on an empty usage: what it returns
    # names the provider and model it matched and their prices now.
    try:
        if model.base_url is None or model.provider != "openai":
            found = calc_price(Usage(), model.target_model, provider_id=provider_id,
                               genai_request_timestamp=now)  # fmt: skip
        else:
            found = calc_price(Usage(), model.target_model, provider_api_url=model.base_url,
                               genai_request_timestamp=now)  # fmt: skip
    except LookupError as err:
        return free(f"unknown to genai-prices {library_version}: {err}")
    provider, info, prices = found.provider, found.model, found.model_price
    input_rate = _rate(prices.input_mtok)
    cached = prices.cache_read_mtok
    return Price(
        input_rate,
        _rate(prices.output_mtok),
        input_rate if cached is None else _rate(cached),
        Source.LIBRARY,
        f"{provider.id}/{info.id} (genai-prices {library_version})",
    )


def price_of(model: ModelSettings) -> Price:
    """``model``'s price (see the module docstring)."""
    if model.price is not None:
        return from_config(model.price)
    if isinstance(model, SimModel):
        return free("simulator")
    return from_library(model)


class PriceBook:
    """Every configured model's :class:`Price`, by model name; built once
    (:meth:`resolve`), read per request (:meth:`spend`)."""

    __slots__ = ("_prices",)

    def __init__(self, prices: dict[str, Price]) -> None:
        self._prices = prices

    @classmethod
    def resolve(cls, models: Iterable[ModelSettings]) -> PriceBook:
        """Resolve each model's price; a model on a public API the library
        does not know gets a ``model_price_unknown`` warning (and costs 0)."""
        prices: dict[str, Price] = {}
        for model in models:
            price = prices[model.name] = price_of(model)
            if price.source is Source.NONE and price.ref.startswith("unknown"):
                log.warning(
                    "model_price_unknown",
                    model=model.name,
                    upstream_model=model.target_model,
                    detail=price.ref,
                    hint="set [models.price] input/output (USD per million tokens)",
                )
        book = cls(prices)
        log.info("model_prices", prices=book.log_fields())
        return book

    def price(self, model: str) -> Price:
        """``model``'s price; a name not configured (``stored``, ``""``) is free."""
        return self._prices.get(model) or free("not a configured model")

    def spend(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        *,
        estimated: bool = False,
    ) -> Spend:
        """What a request of ``model`` spent (:class:`~gateway.cost.spend.Spend`)."""
        pico = self.price(model).cost_pico(input_tokens, output_tokens, cached_input_tokens)
        return Spend.of_pico(pico, estimated=estimated)

    def log_fields(self) -> dict[str, dict[str, object]]:
        """Each model's price, for the start-up log."""
        return {name: price.log_fields() for name, price in self._prices.items()}
