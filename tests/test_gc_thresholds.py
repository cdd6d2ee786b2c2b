"""The gateway serves with start-up's objects frozen and the collector's
thresholds raised (``gateway.app.GC_THRESHOLDS``): at CPython's defaults,
every open stream's objects reach the oldest generation and full
collections stop every stream at once (docs/architecture.md, "Facts the
design rests on")."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from aiohttp import web

from gateway import app as gateway_app
from tests.helpers import SIM_FAST, settings_from


def test_run_serves_with_the_raised_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def run_app(app: web.Application, *, loop: Any, **options: Any) -> None:
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()
        loop.close()

    monkeypatch.setattr(gateway_app.web, "run_app", run_app)
    before = gc.get_threshold()
    try:
        gateway_app.run(settings_from(models=[SIM_FAST]), "127.0.0.1", 0)
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
    assert seen["threshold"] == gateway_app.GC_THRESHOLDS
    assert seen["threshold"][0] >= 50_000
    assert seen["frozen"] > 0
