"""Everything a stored response holds is counted (issue 20 row 4): its input
("context") and snapshot count toward ``[store] max_bytes`` and
``stream_max_bytes``, in both stores, and a ``previous_response_id`` chain
stores each turn once (it grew quadratically: 40 links of 0.5 MB, 19 MB
sent, took RSS to 498 MB)."""

from __future__ import annotations

import io
from typing import Any

import orjson

from gateway.state import STREAM_STORE
from tests.helpers import GatewayFactory

SIM = {"name": "sim", "provider": "sim", "ttft_ms": 1, "itl_ms": 0, "output_tokens": 4}


def _json(body: dict[str, Any]) -> dict[str, Any]:
    """A large JSON body as the client wants it (a stream, not raw bytes)."""
    return {
        "data": io.BytesIO(orjson.dumps(body)),
        "headers": {"Content-Type": "application/json"},
    }


async def _held(client: Any, ids: list[str]) -> int:
    """Bytes the store says it holds for these responses."""
    stream_store = client.server.app[STREAM_STORE]
    total = 0
    for rid in ids:
        got = await stream_store.get(rid)
        total += got.size if got is not None else 0
    return total


async def test_the_input_counts_toward_the_global_bound(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    """400 stored 0.9 MB requests took RSS from 57 to 409 MB with max_bytes = 2 MB
    (memory); the Redis store ignored ``max_bytes`` entirely."""
    client = await gateway(
        models=[SIM], server={"max_body_bytes": 4 << 20}, store={"max_bytes": 2 << 20}, **store
    )
    big = "x" * 900_000
    ids = []
    for _ in range(12):
        resp = await client.post("/v1/responses", json={"model": "sim", "input": big})
        assert resp.status == 200, await resp.text()
        ids.append((await resp.json())["id"])
    stream_store = client.server.app[STREAM_STORE]
    if hasattr(stream_store, "held_bytes"):
        assert stream_store.held_bytes <= 2 << 20
    else:
        assert int(await stream_store._redis.get("sluice:s:total")) <= 2 << 20
    assert await _held(client, ids) <= 2 << 20  # the oldest were evicted, not kept uncounted
    kept = [rid for rid in ids if await stream_store.get(rid) is not None]
    assert 1 <= len(kept) <= 2 and kept[-1] == ids[-1]


async def test_an_input_past_the_per_response_bound_is_refused_clearly(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    client = await gateway(
        models=[SIM],
        server={"max_body_bytes": 4 << 20},
        store={"stream_max_bytes": 1 << 20},
        **store,
    )
    big = "x" * (2 << 20)
    resp = await client.post("/v1/responses", **_json({"model": "sim", "input": big}))
    assert resp.status == 507
    assert "store: false" in (await resp.json())["error"]["message"]
    unstored = await client.post(
        "/v1/responses", **_json({"model": "sim", "input": big, "store": False})
    )
    assert unstored.status == 200


async def test_a_chain_stores_each_turn_once(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    client = await gateway(
        models=[SIM],
        server={"max_body_bytes": 4 << 20},
        store={"stream_max_bytes": 4 << 20, "max_bytes": 256 << 20},
        **store,
    )
    turn = "y" * 100_000
    ids: list[str] = []
    previous = None
    for i in range(20):
        body: dict[str, Any] = {"model": "sim", "input": f"{i} {turn}"}
        if previous is not None:
            body["previous_response_id"] = previous
        resp = await client.post("/v1/responses", json=body)
        assert resp.status == 200, await resp.text()
        previous = (await resp.json())["id"]
        ids.append(previous)
    sent = 20 * len(turn)
    held = await _held(client, ids)
    # Linear: each turn once (plus its small output and snapshot). Quadratic
    # would be ~ sent * 21 / 2.
    assert sent <= held < 2 * sent, (held, sent)
