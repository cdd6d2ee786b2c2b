"""``sluice.js`` and the playground in a real headless Chromium (tests/browser.py),
against the gateway on a real socket: CORS as the browser enforces it, the
playground streaming with its figures and per-frame rendering, Stop closing
the upstream, and a stream resumed after its connection is cut.

Chromium starts once for the module; each test opens its pages in its one tab
and leaves it on ``about:blank``. Everything waits by polling the page, never
a fixed sleep."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.keys import Keys

from gateway.metrics import Metrics
from gateway.providers.sim import sim_token
from tests.browser import Page, start_chromium
from tests.cutting_proxy import CuttingProxy
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model
from tests.keyhelp import make_key

SIM = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 2, "output_tokens": 40}
TEXT = "".join(sim_token(i) for i in range(40))


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = start_chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


@pytest.fixture
def page(chromium: WebDriver, gateway: GatewayFactory) -> Iterator[Page]:
    """The tab; set up after ``gateway`` so that it leaves (closing its
    connections) before the gateway shuts down."""
    yield Page(chromium)
    chromium.get("about:blank")


def total(metrics: Metrics, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def uninterrupted_text(client: TestClient[Any, Any], model: str) -> str:
    """The answer's text read by a plain HTTP client (no browser, no proxy)."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    text = ""
    for line in (await resp.text()).splitlines():
        if line.startswith("data: {"):
            text += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
    return text


# A page on another origin: it imports sluice.js from ?module= and streams
# from ?api=, then writes what happened into #result as JSON.
OTHER_ORIGIN_PAGE = """<!doctype html>
<meta charset="utf-8"><title>another origin</title><pre id="result"></pre>
<script type="module">
const query = new URLSearchParams(location.search);
const report = (what) => { document.getElementById("result").textContent = JSON.stringify(what); };
let sluice = null;
try {
  sluice = await import(query.get("module"));
} catch (err) {
  report({ stage: "import", name: err.name, message: err.message });
}
if (sluice) {
  let text = "";
  try {
    for await (const chunk of sluice.streamChat({
      baseUrl: query.get("api"),
      body: { model: "sim", messages: [{ role: "user", content: "hi" }] },
    })) text += chunk.choices[0]?.delta?.content ?? "";
    report({ text });
  } catch (err) {
    report({ stage: "fetch", name: err.name, message: err.message,
             sluiceError: err instanceof sluice.SluiceError });
  }
}
</script>
"""


async def other_origin(aiohttp_server: Any, sluice_js: bytes) -> TestServer:
    """A second local server (another port: another origin) serving the page,
    and its own copy of sluice.js."""
    app = web.Application()

    async def serve_page(request: web.Request) -> web.Response:
        return web.Response(text=OTHER_ORIGIN_PAGE, content_type="text/html")

    async def serve_module(request: web.Request) -> web.Response:
        return web.Response(body=sluice_js, content_type="text/javascript")

    app.router.add_get("/page", serve_page)
    app.router.add_get("/sluice.js", serve_module)
    server: TestServer = await aiohttp_server(app)
    return server


async def run_other_origin(page: Page, origin: TestServer, module: str, api: str) -> Any:
    url = origin.make_url("/page").with_query(module=module, api=api)
    await page.open(str(url))
    return await page.until(
        "const r = document.getElementById('result').textContent; return r && JSON.parse(r)"
    )


async def test_another_origin_streams_only_when_listed(
    page: Page, gateway: GatewayFactory, aiohttp_server: Any, metrics: Metrics
) -> None:
    probe = await gateway(models=[SIM])
    origin = await other_origin(aiohttp_server, await (await probe.get("/sluice.js")).read())
    page_origin = f"http://127.0.0.1:{origin.port}"  # what Chromium sends as Origin

    listed = await gateway(models=[SIM], server={"cors_origins": [page_origin]})
    gw = f"http://127.0.0.1:{listed.server.port}/"
    result = await run_other_origin(page, origin, f"{gw}sluice.js", f"{gw}v1")
    assert result == {"text": TEXT}

    unlisted = await gateway(models=[SIM], server={"cors_origins": ["http://app.example.com"]})
    gw = f"http://127.0.0.1:{unlisted.server.port}/"
    # The module itself is refused: a cross-origin module script needs CORS too.
    result = await run_other_origin(page, origin, f"{gw}sluice.js", f"{gw}v1")
    assert (result["stage"], result["name"]) == ("import", "TypeError")
    # With sluice.js from the page's own origin, the API call is what fails:
    # fetch rejects with a TypeError (the browser hides why), not a SluiceError.
    result = await run_other_origin(page, origin, f"{page_origin}/sluice.js", f"{gw}v1")
    assert result["stage"] == "fetch" and result["name"] == "TypeError"
    assert not result["sluiceError"]
    # Because the gateway allowed nothing: its preflight answer was 403 without
    # Access-Control-Allow-Origin, and the browser never sent the POST.
    asked = {"Origin": page_origin, "Access-Control-Request-Method": "POST"}
    preflight = await unlisted.options("/v1/chat/completions", headers=asked)
    assert preflight.status == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    module = await unlisted.get("/sluice.js", headers={"Origin": page_origin})
    assert "Access-Control-Allow-Origin" not in module.headers
    # The metrics registry is shared by the three gateways: the browser's
    # preflight got that 403, and the listed run's POST is the only POST.
    refused = total(metrics, "sluice_requests_total", method="OPTIONS", status="403")
    assert refused == 2  # the browser's, and ours just above
    posts = total(metrics, "sluice_requests_total", route="/v1/chat/completions", method="POST")
    assert posts == 1


# Counts, in the page, the animation frames and the answer's renders (text
# appended to the answer: one characterData record each) from now on.
COUNT_RENDERS = """
window.counted = { frames: 0, renders: 0 };
const tick = () => { window.counted.frames += 1; requestAnimationFrame(tick); };
requestAnimationFrame(tick);
new MutationObserver((records) => {
  window.counted.renders += records.filter((r) => r.type === "characterData").length;
}).observe(document.getElementById("answer"), { subtree: true, characterData: true });
"""


async def open_playground(page: Page, base: str, model: str) -> None:
    await page.open(f"{base}/playground")
    has_model = "return [...document.getElementById('model').options].map((o) => o.value)"
    await page.until(f"{has_model}.includes(arguments[0])", model)
    await page.js("document.getElementById('model').value = arguments[0]", model)


async def test_playground_streams_with_figures_and_one_render_per_frame(
    page: Page, gateway: GatewayFactory
) -> None:
    tokens = 400  # ~1000 tokens/s: many tokens per animation frame
    fast = {"name": "fast", "provider": "sim", "ttft_ms": 20, "itl_ms": 1, "output_tokens": tokens}
    client = await gateway(models=[SIM, fast])
    expected = await uninterrupted_text(client, "fast")
    await open_playground(page, f"http://127.0.0.1:{client.server.port}", "fast")
    await page.js(COUNT_RENDERS)
    await page.click("send")
    await page.until("return document.getElementById('status').textContent.startsWith('Done')")
    assert await page.text("answer") == expected
    assert await page.text("error") == ""
    assert float(await page.text("ttft")) > 0
    assert float(await page.text("tps")) > 0
    assert float(await page.text("itl")) >= 0
    assert int(await page.text("tokens")) == tokens
    counted = await page.js("return window.counted")
    # At most one render per animation frame (+1: the flush at the end),
    # so far fewer renders than tokens.
    assert 1 <= counted["renders"] <= counted["frames"] + 1
    assert counted["renders"] < tokens / 2
    print(
        f"\nplayground: {tokens} tokens, {counted['renders']} renders, {counted['frames']} frames"
    )


async def test_key_keyboard_and_errors(
    page: Page, gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    secret, entry = make_key("browser")
    fake_openai.script = Script(events=[sse(chunk("partial "))], then="close")
    client = await gateway(models=[SIM, openai_model(fake_openai)], auth={"keys": [entry]})
    await page.open(f"http://127.0.0.1:{client.server.port}/playground")
    # No key yet: listing the models fails with the gateway's message.
    await page.until("return document.getElementById('error').textContent.includes('HTTP 401')")
    await page.keys("key", secret, Keys.TAB)  # typed, then focus leaves: "change"
    await page.until("return document.getElementById('model').options.length === 2")
    assert await page.text("error") == ""
    assert await page.js("return sessionStorage.getItem('sluice.playground.key')") == secret
    # Ctrl+Enter in the prompt sends; the upstream breaks after one chunk.
    await page.js("document.getElementById('model').value = 'up'")
    await page.keys("prompt", Keys.CONTROL, Keys.ENTER)
    await page.until("return document.getElementById('status').textContent === 'Failed.'")
    assert await page.text("answer") == "partial "
    assert "upstream" in (await page.text("error")).lower()
    assert await page.js("return document.getElementById('send').disabled") is False


async def test_stop_closes_the_upstream(
    page: Page, gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics
) -> None:
    fake_openai.script = Script(events=[sse(chunk(f"t{i} ")) for i in range(500)], itl_s=0.02)
    client = await gateway(models=[SIM, openai_model(fake_openai)])
    await open_playground(page, f"http://127.0.0.1:{client.server.port}", "up")

    async def stream_then_stop() -> None:
        await page.click("send")
        await page.until("return Number(document.getElementById('tokens').textContent) >= 3")
        await page.click("stop")
        await page.until(
            "return document.getElementById('status').textContent.startsWith('Stopped')"
        )

    # Not resumable: Stop aborts the fetch; the gateway sees its client leave.
    await page.click("resumable")
    assert not await page.js("return document.getElementById('resumable').checked")
    await stream_then_stop()
    async with asyncio.timeout(10):
        while fake_openai.records[0].closed_at is None:
            await asyncio.sleep(0.02)
    reason = "sluice_stream_terminations_total"
    assert total(metrics, reason, model="up", reason="client_disconnected") == 1
    assert not fake_openai.records[0].completed

    # Resumable (the default): the generation outlives the connection, so
    # Stop also cancels it (DELETE /v1/streams/{id}).
    await page.click("resumable")
    await stream_then_stop()
    async with asyncio.timeout(10):
        while len(fake_openai.records) < 2 or fake_openai.records[1].closed_at is None:
            await asyncio.sleep(0.02)
        while total(metrics, reason, model="up", reason="cancelled") < 1:
            await asyncio.sleep(0.02)
    deleted = total(metrics, "sluice_requests_total", route="/v1/streams/{stream_id}",
                    method="DELETE", status="200")  # fmt: skip
    assert deleted == 1


async def test_a_cut_connection_resumes_to_the_same_text(
    page: Page, gateway: GatewayFactory, metrics: Metrics
) -> None:
    tokens = 200
    slow = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 3, "output_tokens": tokens}
    client = await gateway(models=[slow])
    expected = await uninterrupted_text(client, "sim")
    # The page, its scripts and /v1/models pass whole; the stream's
    # connection is cut after 4000 bytes of its response.
    proxy = CuttingProxy(client.server.port or 0, 4000, when=b"POST /v1/chat/completions")
    port = await proxy.start()
    try:
        await open_playground(page, f"http://127.0.0.1:{port}", "sim")
        assert await page.js("return document.getElementById('resumable').checked")
        await page.click("send")
        await page.until("return document.getElementById('status').textContent.startsWith('Done')")
    finally:
        await proxy.close()
    assert proxy.cuts == 1
    assert await page.text("answer") == expected
    assert await page.text("error") == ""
    assert int(await page.text("tokens")) == tokens
    # Exactly one resume (a GET /v1/streams/{id} with Last-Event-ID), which
    # replayed what the generation had stored past the cut, if anything.
    route = "/v1/streams/{stream_id}"
    assert total(metrics, "sluice_stream_resumes_total", route=route) == 1
    assert total(metrics, "sluice_requests_total", route=route, method="GET") == 1


IN_VIEW = """
const r = document.getElementById(arguments[0]).getBoundingClientRect();
return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
        width: innerWidth, height: innerHeight, scrollY: scrollY};
"""


def in_viewport(rect: dict[str, float]) -> bool:
    return (
        rect["scrollY"] == 0
        and 0 <= rect["top"] < rect["bottom"] <= rect["height"]
        and 0 <= rect["left"] < rect["right"] <= rect["width"]
    )


async def test_playground_fits_1280x900_and_keeps_the_conversation(
    page: Page, gateway: GatewayFactory, fake_openai: FakeOpenAI, tmp_path: Any
) -> None:
    fake_openai.queue = [
        Script(events=[sse(chunk("Hello ")), sse(chunk("there")), sse("[DONE]")]),
        Script(events=[sse(chunk("Second")), sse("[DONE]")]),
        Script(events=[sse(chunk("Fresh")), sse("[DONE]")]),
    ]
    client = await gateway(models=[SIM, openai_model(fake_openai)])
    size = await asyncio.to_thread(page.driver.get_window_size)
    await asyncio.to_thread(page.driver.set_window_size, 1280, 900)
    try:
        await open_playground(page, f"http://127.0.0.1:{client.server.port}", "up")
        assert (await page.js("return [innerWidth, innerHeight]"))[0] == 1280
        await page.js("document.getElementById('system').value = 'Be brief.'")
        await page.js("document.getElementById('temperature').value = '0.3'")
        await page.js("document.getElementById('max-tokens').value = '50'")
        await page.js("document.getElementById('prompt').value = 'First question'")
        await page.click("send")
        # Pressing Send shows the answer where the user looks: no scrolling.
        rect = await page.js(IN_VIEW, "answer")
        assert in_viewport(rect), rect
        await page.until("return document.getElementById('status').textContent.startsWith('Done')")
        assert await page.text("answer") == "Hello there"
        first = fake_openai.records[0].body
        assert first["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "First question"},
        ]
        assert first["temperature"] == 0.3 and first["max_tokens"] == 50

        await page.js("document.getElementById('prompt').value = 'Second question'")
        await page.click("send")
        await page.until("return document.getElementById('status').textContent.startsWith('Done')")
        assert await page.text("answer") == "Second"
        assert fake_openai.records[1].body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "Hello there"},
            {"role": "user", "content": "Second question"},
        ]
        turns = await page.js(
            "return [...document.querySelectorAll('#transcript li')].map((li) => li.textContent)"
        )
        assert turns == ["First question", "Hello there"]
        rect = await page.js(IN_VIEW, "answer")
        assert in_viewport(rect), rect
        await asyncio.to_thread(page.driver.save_screenshot, str(tmp_path / "playground.png"))
        print(f"\nscreenshot: {tmp_path / 'playground.png'}")

        # Clear: a new conversation, only the system prompt and the new question.
        await page.click("clear")
        assert await page.text("transcript") == "" and await page.text("answer") == ""
        await page.js("document.getElementById('prompt').value = 'Third'")
        await page.click("send")
        await page.until("return document.getElementById('status').textContent.startsWith('Done')")
        assert fake_openai.records[2].body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Third"},
        ]
    finally:
        await asyncio.to_thread(page.driver.set_window_size, size["width"], size["height"])
