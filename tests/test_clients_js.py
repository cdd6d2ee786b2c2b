"""The Node clients (tests/js/clients.test.mjs): the ``openai`` SDK, the Vercel
AI SDK's default ``createOpenAI`` provider and ``createAnthropic``, and
``@anthropic-ai/sdk``, installed from tests/js/package-lock.json (``make
node-clients``: ``npm ci``), streaming text and tool calls through a gateway
process on the simulator, and through one in front of the real model
(llama.cpp's server with SmolLM2-135M-Instruct: the ``real_model`` fixture).

``node --test`` runs once per module and target (:func:`run_node_clients`);
each of its tests is one pytest test here (ids from the ``test("...")``
names in the file, per target), so a Node failure shows in the pytest count
with Node's message.

Against the real model every request is greedy (temperature 0), so each
client's text for "hi" must equal the server's own answer to it. The model
calls a tool only when ``tool_choice`` names it (llama-cpp-python's server then
constrains its output with a grammar from the tool's schema; it ignores
``"required"``), so the tool tests force it by name (``SLUICE_FORCE_TOOL``)
and check the call's shape (the named tool, a string ``city``), the SDK's
round trip, and a non-empty answer, not the model's judgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.providers.sim import sim_token
from loadtest.procs import free_port, terminate, wait_port

JS_DIR = Path(__file__).parent / "js"
SCRIPT = JS_DIR / "clients.test.mjs"
NODE = shutil.which("node")
MIN_NODE = 20
OUTPUT_TOKENS = 12
SIM_TEXT = "".join(sim_token(i) for i in range(OUTPUT_TOKENS))
NAMES = re.findall(r'^test\(\s*"([^"]+)"', SCRIPT.read_text(), re.MULTILINE)


def _skip_reason() -> str | None:
    if NODE is None:
        return "node is not installed"
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE:
        return f"node {version.strip()} is older than {MIN_NODE}"
    if not (JS_DIR / "node_modules" / ".package-lock.json").exists():
        return "tests/js/node_modules is missing: run `make node-clients` (npm ci)"
    return None


SKIP = _skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


@dataclass(frozen=True, slots=True)
class NodeResult:
    ok: bool
    skipped: bool
    detail: str


def _tap(output: str) -> dict[str, NodeResult]:
    """Top-level ``ok N - name`` / ``not ok N - name`` lines of a TAP report,
    each with the indented block after it (Node's diagnostics)."""
    results: dict[str, NodeResult] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(not ok|ok) \d+ - (.*?)(\s+# SKIP.*)?$", line)
        if match is None:
            continue
        detail = []
        for follow in lines[i + 1 :]:
            if not follow.startswith(" "):
                break
            detail.append(follow)
        results[match[2]] = NodeResult(match[1] == "ok", match[3] is not None, "\n".join(detail))
    return results


def run_node_clients(
    origin: str, model: str, text: str | None, *, tools: bool = True, force_tool: bool = False
) -> dict[str, NodeResult]:
    """``node --test`` on clients.test.mjs against the gateway at ``origin``
    (``http://host:port``), asking ``model``; ``text``: the exact text every
    client must receive for "hi" (``None``: any non-empty text); ``tools=False``
    skips the tool-call tests; ``force_tool`` names the tool in ``tool_choice``
    (a model that calls none unasked)."""
    assert NODE is not None
    env = {**os.environ, "SLUICE_BASE_URL": origin, "SLUICE_MODEL": model}
    env["SLUICE_TOOLS"] = "1" if tools else "0"
    env["SLUICE_FORCE_TOOL"] = "1" if force_tool else "0"
    env.pop("SLUICE_TEXT", None)
    if text is not None:
        env["SLUICE_TEXT"] = text
    proc = subprocess.run(
        [NODE, "--test", "--test-reporter=tap", str(SCRIPT)],
        cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    results = _tap(proc.stdout)
    assert results, f"no TAP results from node (exit {proc.returncode}):\n{proc.stderr}"
    return results


def _toml_model(model: dict[str, Any]) -> str:
    """One ``[[models]]`` table (string and number values)."""
    return "[[models]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in model.items())


@contextlib.contextmanager
def _gateway_process(workdir: Path, model: dict[str, Any]) -> Iterator[str]:
    """A gateway process serving ``model``; yields its origin."""
    config = workdir / "sluice.toml"
    config.write_text(_toml_model(model))
    port = free_port()
    with (workdir / "gateway.log").open("wb") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            asyncio.run(wait_port(port))
            yield f"http://127.0.0.1:{port}"
        finally:
            terminate(gateway)


@pytest.fixture(scope="module")
def node_results_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeResult]]:
    """The Node clients' results against a gateway process on the simulator."""
    sim = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 1}
    with _gateway_process(
        tmp_path_factory.mktemp("clients-js"), {**sim, "output_tokens": OUTPUT_TOKENS}
    ) as origin:
        yield run_node_clients(origin, "sim", SIM_TEXT)


@pytest.fixture(scope="module")
def node_results_real(
    tmp_path_factory: pytest.TempPathFactory, real_model: Any
) -> Iterator[dict[str, NodeResult]]:
    """The Node clients' results against a gateway process in front of the
    real model; the text for "hi" is the server's own greedy answer."""
    answer = real_model.post(
        "/v1/chat/completions",
        {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "temperature": 0},
    )
    text = answer["choices"][0]["message"]["content"]
    assert text.strip(), "the server said nothing"
    with _gateway_process(
        tmp_path_factory.mktemp("clients-js-real"), real_model.gateway_model()
    ) as origin:
        yield run_node_clients(origin, "smollm2", text, force_tool=True)


def test_every_node_test_is_collected() -> None:
    assert len(NAMES) >= 8 and len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("target", ["sim", "real"])
def test_node_client(request: pytest.FixtureRequest, target: str, name: str) -> None:
    node_results: dict[str, NodeResult] = request.getfixturevalue(f"node_results_{target}")
    result = node_results.get(name)
    assert result is not None, f"node did not report {name!r}: {sorted(node_results)}"
    assert not result.skipped, name
    assert result.ok, f"{name}:\n{result.detail}"
