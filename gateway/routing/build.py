"""The routers of a configuration: one :class:`ModelRouter` per model with
deployments (or with ``max_concurrent_streams``), each deployment with its
own provider on the process's shared upstream sessions. A deployment whose
key variable is unset is left out (and named by ``/readyz`` while every
deployment of its model misses its key)."""

from __future__ import annotations

import time

from aiohttp import web

from ..config import ModelSettings, Settings
from ..metrics import DeploymentFamilies
from ..providers.http import UpstreamSessions
from ..providers.registry import build_provider
from .ewma import PeakEwma
from .health import Health
from .router import Deployment, ModelRouter

ROUTERS = web.AppKey("routers", dict[str, ModelRouter])
"""Model name -> its router (models with deployments only)."""


def missing_key_env(model: ModelSettings) -> str | None:
    """``model.missing_key_env()``, for a model with deployments: the first
    deployment's missing variable when every deployment misses its key (a
    deployment without its key is left out of routing; see :func:`build_routers`)."""
    if not model.deployments:
        return model.missing_key_env()
    missing = [d.missing_key_env() for d in model.deployments]
    return missing[0] if all(m is not None for m in missing) else None


def build_routers(
    settings: Settings, sessions: UpstreamSessions, families: DeploymentFamilies | None
) -> dict[str, ModelRouter]:
    """One router per routed model (see the module docstring)."""
    routers: dict[str, ModelRouter] = {}
    now = time.monotonic()
    for model in settings.models:
        routed = model.routed
        if not routed:
            continue
        conf = model.routing
        connect_s = settings.stream_for(model).connect_timeout_s
        usable = [d for d in routed if d is model or d.missing_key_env() is None]
        if not usable:
            continue  # the model answers 503 upstream_not_configured
        deployments = [
            Deployment(
                name=d.name,
                provider=build_provider(d, sessions, connect_s),
                weight=d.weight,
                max_streams=d.max_concurrent_streams,
                ewma=PeakEwma(conf.latency_default_s, conf.latency_decay_s, now),
                health=Health(
                    failures=conf.cooldown_failures,
                    window_s=conf.cooldown_window_s,
                    cooldown_s=conf.cooldown_s,
                    max_cooldown_s=conf.max_cooldown_s,
                ),
                children=families.children(model.name, d.name) if families else None,
            )
            for d in usable
        ]
        for d in deployments:
            if d.children is not None:
                d.children.cooling_down.set(0)
        routers[model.name] = ModelRouter(model.name, deployments, conf, families)
    return routers


async def close_routers(routers: dict[str, ModelRouter]) -> None:
    """Release every deployment's provider."""
    for router in routers.values():
        for d in router.deployments:
            await d.provider.aclose()
