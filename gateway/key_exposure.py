"""Where the gateway's upstream keys would go, checked once at start-up.

Two configurations send a key somewhere its owner may not expect, and both
are legal (a proxy in front of OpenAI, a vLLM box on the LAN), so they are
warned about, not refused:

- ``upstream_default_key_to_custom_host``: a model with its own ``base_url``
  and no ``api_key_env`` sends the provider's usual key (``OPENAI_API_KEY``,
  ``ANTHROPIC_API_KEY``) to that host. Naming the variable (``""`` for a
  server that needs none) silences it.
- ``upstream_key_over_plain_http``: a key goes over ``http://`` to a host that
  is not loopback, readable by anyone on the path.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .config import Settings, SimModel, is_loopback


def key_exposures(settings: Settings) -> list[dict[str, str]]:
    """One ``{"event", "model", "host", "key_env", "hint"}`` per warning (see
    the module docstring); empty when every key goes where it was meant to."""
    found: list[dict[str, str]] = []
    # A model's deployments (gateway/routing) are model entries too, keys and all.
    for model in (d for m in settings.models for d in (m, *m.deployments)):
        if isinstance(model, SimModel) or not model.base_url:
            continue
        env = model.key_env
        if not env or not model.api_key():
            continue  # no key is sent
        parts = urlsplit(model.base_url)
        host = parts.hostname or ""
        where = {"model": model.name, "host": host, "key_env": env}
        if model.api_key_env is None:
            found.append({
                "event": "upstream_default_key_to_custom_host", **where,
                "hint": f'name the key for this host: api_key_env = "..." ("" for none), '
                f"or the provider's own {env} goes to {host}",
            })  # fmt: skip
        if parts.scheme == "http" and not is_loopback(host):
            found.append({
                "event": "upstream_key_over_plain_http", **where,
                "hint": "use https:// for a host beyond this machine",
            })  # fmt: skip
    return found
