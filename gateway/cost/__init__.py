"""What requests cost in US dollars.

- :mod:`.prices`: each configured model's price (USD per million input,
  output and cached-input tokens), resolved once at start-up from the config
  or the genai-prices library (:class:`~.prices.PriceBook`);
- :mod:`.spend`: one request's :class:`~.spend.Spend` (whole micro-dollars,
  marked estimated when its tokens were) and where it is recorded
  (``sluice_spend_usd_total``, the summary log line);
- :mod:`.estimate`: a non-streamed answer's usage, estimated when it
  reported none. Cached input tokens come with the usage itself
  (:attr:`gateway.dialects.frames.Usage.cached_input_tokens`, streamed or not).

A key's USD budget is enforced by :mod:`gateway.quota` beside its token
budget, charged where the tokens are (:meth:`gateway.api.hold.Hold.release`).
"""
