"""CORS: listed origins may call the API from a browser; others get nothing."""

from __future__ import annotations

from gateway.cors import EXPOSE_HEADERS
from tests.helpers import SIM_FAST, GatewayFactory

APP = "http://app.example.com"
BODY = {"model": "sim", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, sluice-resumable",
}


async def test_a_listed_origin_gets_preflight_and_headers(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM_FAST], server={"cors_origins": [APP]}, auth={"keys": []})
    pre = await client.options("/v1/chat/completions", headers={"Origin": APP, **PREFLIGHT})
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == APP
    allowed = pre.headers["Access-Control-Allow-Headers"].lower()
    assert {
        "authorization",
        "content-type",
        "sluice-resumable",
        "last-event-id",
        "x-goog-api-key",
    } <= {h.strip() for h in allowed.split(",")}
    resp = await client.post(
        "/v1/chat/completions", json=BODY, headers={"Origin": APP, "Sluice-Resumable": "true"}
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert "Sluice-Stream-Id" in resp.headers["Access-Control-Expose-Headers"]
    assert resp.headers["Access-Control-Expose-Headers"] == EXPOSE_HEADERS
    assert (await resp.text()).endswith("data: [DONE]\n\n")


async def test_other_origins_get_no_cors_headers(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM_FAST], server={"cors_origins": [APP]})
    other = {"Origin": "http://evil.example.com"}
    pre = await client.options("/v1/chat/completions", headers={**other, **PREFLIGHT})
    assert pre.status == 403
    assert "Access-Control-Allow-Origin" not in pre.headers
    resp = await client.post("/v1/chat/completions", json=BODY, headers=other)
    assert "Access-Control-Allow-Origin" not in resp.headers
    none = await gateway(models=[SIM_FAST])  # the default: no origin at all
    pre = await none.options("/v1/chat/completions", headers={"Origin": APP, **PREFLIGHT})
    assert pre.status == 403


async def test_star_allows_any_origin(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM_FAST], server={"cors_origins": ["*"]})
    resp = await client.get("/v1/models", headers={"Origin": "http://x.test"})
    assert resp.headers["Access-Control-Allow-Origin"] == "http://x.test"


async def test_vary_origin_on_every_response_cors_can_change(gateway: GatewayFactory) -> None:
    """Issue 20 row 12: /sluice.js is cacheable (public, max-age=300), so a
    cache must key it by Origin whether or not the origin was allowed, and
    also when none was sent; with no origin configured nothing varies."""
    client = await gateway(models=[SIM_FAST], server={"cors_origins": [APP]})
    for headers in ({"Origin": APP}, {"Origin": "http://evil.example.com"}, {}):
        for path in ("/sluice.js", "/v1/models", "/healthz", "/nope"):
            resp = await client.get(path, headers=headers)
            assert resp.headers.getall("Vary") == ["Origin"], (path, headers)
        pre = await client.options("/v1/chat/completions", headers={**headers, **PREFLIGHT})
        assert "Origin" in pre.headers.get("Vary", ""), headers
    js = await client.get("/sluice.js", headers={"Origin": "http://evil.example.com"})
    assert js.headers["Cache-Control"] == "public, max-age=300"
    assert "Access-Control-Allow-Origin" not in js.headers
    none = await gateway(models=[SIM_FAST])
    assert "Vary" not in (await none.get("/sluice.js", headers={"Origin": APP})).headers
