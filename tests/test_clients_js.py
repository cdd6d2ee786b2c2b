"""The Node clients (tests/js/clients.test.mjs): the ``openai`` SDK, the Vercel
AI SDK's default ``createOpenAI`` provider and ``createAnthropic``, and
``@anthropic-ai/sdk``, installed from tests/js/package-lock.json (``make
node-clients``: ``npm ci``), streaming text and tool calls through a gateway
process on the simulator.

``node --test`` runs once per module (:func:`run_node_clients`); each of its
tests is one pytest test here (ids from the ``test("...")`` names in the
file), so a Node failure shows in the pytest count with Node's message.
:func:`run_node_clients` takes any gateway origin, model and expected text
(``None``: any non-empty text), so the same file can run against a gateway in
front of a real model.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
    origin: str, model: str, text: str | None, *, tools: bool = True
) -> dict[str, NodeResult]:
    """``node --test`` on clients.test.mjs against the gateway at ``origin``
    (``http://host:port``), asking ``model``; ``text``: the exact text every
    client must receive (``None``: any non-empty text); ``tools=False`` skips
    the tool-call tests (a model that may not call the tool)."""
    assert NODE is not None
    env = {**os.environ, "SLUICE_BASE_URL": origin, "SLUICE_MODEL": model}
    env["SLUICE_TOOLS"] = "1" if tools else "0"
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


@pytest.fixture(scope="module")
def node_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeResult]]:
    """The Node clients' results against a gateway process on the simulator."""
    workdir = tmp_path_factory.mktemp("clients-js")
    config = workdir / "sluice.toml"
    config.write_text(
        '[[models]]\nname = "sim"\nprovider = "sim"\n'
        f"ttft_ms = 5\nitl_ms = 1\noutput_tokens = {OUTPUT_TOKENS}\n"
    )
    port = free_port()
    with (workdir / "gateway.log").open("wb") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            asyncio.run(wait_port(port))
            yield run_node_clients(f"http://127.0.0.1:{port}", "sim", SIM_TEXT)
        finally:
            terminate(gateway)


def test_every_node_test_is_collected() -> None:
    assert len(NAMES) >= 8 and len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_node_client(node_results: dict[str, NodeResult], name: str) -> None:
    result = node_results.get(name)
    assert result is not None, f"node did not report {name!r}: {sorted(node_results)}"
    assert not result.skipped, name
    assert result.ok, f"{name}:\n{result.detail}"
