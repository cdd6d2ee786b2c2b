"""Bedrock's credentials never block the event loop and survive a cancelled
wait (gateway/providers/bedrock_auth.py); a client that leaves closes the
Bedrock upstream at once."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials

from gateway.errors import UpstreamNotConfigured
from gateway.providers.bedrock_auth import SigV4
from gateway.state import ADMISSION
from tests.conftest import LogLines
from tests.fake_bedrock import (
    ACCESS_KEY,
    FakeBedrock,
    aws_environment,
    bedrock_model,
    message_start,
    script,
    start_fake_bedrock,
    text_delta,
)
from tests.helpers import GatewayFactory
from tests.rawclient import RawSSEClient


async def test_a_cancelled_wait_leaves_the_resolution_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aws_environment(monkeypatch)
    started, release = threading.Event(), threading.Event()
    load = SigV4._load
    calls: list[int] = []

    def slow(self: SigV4) -> Any:
        calls.append(1)
        started.set()
        release.wait(10)
        return load(self)

    monkeypatch.setattr(SigV4, "_load", slow)
    signer = SigV4("us-east-1")  # built inside the loop: resolving already, in a thread
    waiter = asyncio.create_task(signer.frozen())
    assert await asyncio.to_thread(started.wait, 10)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    assert (await signer.frozen()).access_key == ACCESS_KEY
    assert len(calls) == 1  # the one resolution, not cancelled and started again


async def test_a_refresh_runs_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_environment(monkeypatch)
    threads: list[int] = []
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()

    def refresh() -> dict[str, str]:
        threads.append(threading.get_ident())
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        return {"access_key": "AKIDNEW", "secret_key": "s", "token": "t", "expiry_time": later}

    signer = SigV4("us-east-1")
    await signer.frozen()
    signer._credentials = RefreshableCredentials(  # type: ignore[misc]
        "AKIDOLD", "s", "t", datetime.fromisoformat(soon), refresh, "test"
    )
    frozen = await signer.frozen()  # within 15 minutes of expiry: refreshed
    assert frozen.access_key == "AKIDNEW"
    assert threads and threading.get_ident() not in threads
    assert (await signer.frozen()).access_key == "AKIDNEW" and len(threads) == 1


async def test_no_credentials_is_not_configured_and_logged(
    monkeypatch: pytest.MonkeyPatch, log_lines: LogLines
) -> None:
    aws_environment(monkeypatch)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(UpstreamNotConfigured):
        await SigV4("us-east-1").frozen()
    await asyncio.sleep(0)  # the start-up resolution's callback
    (line,) = [x for x in log_lines() if x["event"] == "upstream_credentials_missing"]
    assert line["provider"] == "bedrock" and "no credentials" in line["detail"]


async def test_a_client_that_leaves_closes_the_upstream(
    gateway: GatewayFactory, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws_environment(monkeypatch)
    fake: FakeBedrock = await start_fake_bedrock(aiohttp_server)
    fake.script = script([message_start(), text_delta(0, "a")], then="hang")
    client = await gateway(models=[bedrock_model(fake)])
    raw = await RawSSEClient.open(
        client.server.host, client.server.port, "/v1/chat/completions",
        {"model": "nova", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )  # type: ignore[arg-type]  # fmt: skip
    assert await raw.events(limit=2)
    assert client.app[ADMISSION].open_streams == 1
    raw.close()
    async with asyncio.timeout(10):
        while fake.records[0].closed_at is None or client.app[ADMISSION].open_streams:
            await asyncio.sleep(0.02)
