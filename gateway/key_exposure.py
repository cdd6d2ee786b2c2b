"""Where the gateway's upstream keys would go, checked once at start-up.

Two configurations send a key somewhere its owner may not expect, and both
are legal (a proxy in front of OpenAI, a vLLM box on the LAN), so they are
warned about, not refused:

- ``upstream_default_key_to_custom_host``: a model with its own ``base_url``
  and no ``api_key_env`` sends the provider's usual key (``OPENAI_API_KEY``,
  ``ANTHROPIC_API_KEY``) to that host. Naming the variable (``""`` for a
  server that needs none) silences it.
- ``upstream_key_over_plain_http``: a key goes over ``http://`` to a host that
  is not loopback, readable by anyone on the path; so does a ``headers`` or
  ``query`` value read from an environment variable (``{ env = "..." }``).

An Azure model's ``AZURE_OPENAI_API_KEY`` going to an Azure resource host
(``*.openai.azure.com``, ...) is where it was meant to go.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .config import AzureModel, EnvRef, RemoteModel, Settings, SimModel, is_loopback


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
        if model.api_key_env is None and not _named_or_azure(model):
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
    found.extend(_header_exposures(settings))
    return found


def _named_or_azure(model: RemoteModel) -> bool:
    """An Azure model whose credential goes to an Azure endpoint, or whose
    Entra token variable is named: its usual key is where it was meant to go."""
    return isinstance(model, AzureModel) and (
        model.on_azure_host or model.entra_token_env is not None
    )


def _header_exposures(settings: Settings) -> list[dict[str, str]]:
    """``upstream_key_over_plain_http`` for ``headers`` / ``query`` values read
    from the environment (secrets, presumably) sent over ``http://`` beyond
    loopback; ``key_env`` names the variable, never its value."""
    found: list[dict[str, str]] = []
    for model in settings.models:
        if isinstance(model, SimModel) or not model.base_url:
            continue
        parts = urlsplit(model.base_url)
        host = parts.hostname or ""
        if parts.scheme != "http" or is_loopback(host):
            continue
        for value in (*model.headers.values(), *model.query.values()):
            if isinstance(value, EnvRef):
                found.append({
                    "event": "upstream_key_over_plain_http", "model": model.name,
                    "host": host, "key_env": value.env,
                    "hint": "use https:// for a host beyond this machine",
                })  # fmt: skip
    return found
