"""The gateway's start-up: one structured JSON log line (``event="started"``:
version, PID, listen address, models, state store) once it listens, and no
plain-text aiohttp banner in the JSON log stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from gateway import __version__
from gateway.app import startup_fields, state_store_of
from tests.gwproc import GatewayProc, config_text
from tests.helpers import settings_from

SIM = {"name": "sim", "provider": "sim"}


async def _started_line(proc: GatewayProc) -> dict[str, object]:
    async with asyncio.timeout(20):
        while True:
            for line in proc.out.read_text().splitlines():
                if line.startswith("{") and orjson.loads(line).get("event") == "started":
                    parsed: dict[str, object] = orjson.loads(line)
                    return parsed
            await asyncio.sleep(0.05)


async def test_one_structured_started_line(tmp_path: Path) -> None:
    config = tmp_path / "sluice.toml"
    config.write_text(config_text([]))
    async with GatewayProc(config, tmp_path, "gw") as proc:
        assert proc.proc is not None
        line = await _started_line(proc)
        assert line["pid"] == proc.proc.pid
        assert line["listen"] == proc.url
        assert line["models"] == ["sim"]
        assert line["state_store"] == "memory"
        assert line["version"] == __version__
        assert line["playground"] == f"{proc.url}/playground"
        assert line["level"] == "info"
    out = proc.out.read_text()
    assert "Running on" not in proc.logs()
    assert all(orjson.loads(text) for text in out.splitlines())  # every stdout line is JSON


def test_the_state_store_is_named_without_credentials() -> None:
    settings = settings_from(
        models=[SIM], state={"redis_url": "redis://user:secret@redis.internal:6379/2"}
    )
    assert state_store_of(settings) == "redis://redis.internal:6379/2"
    assert state_store_of(settings_from(models=[SIM])) == "memory"
    fields = startup_fields(settings_from(models=[SIM]), "::1", 8080, workers=2)
    assert fields["listen"] == "http://[::1]:8080" and fields["workers"] == 2
    assert "secret" not in str(startup_fields(settings, "0.0.0.0", 1))
