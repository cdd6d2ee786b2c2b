"""The real model for tests: llama.cpp's OpenAI-compatible server serving
SmolLM2-135M-Instruct (:mod:`loadtest.procs.llama`), started once per test session
on a free loopback port (the ``real_model`` fixture in conftest.py). Tests
put an in-process gateway in front of it with :meth:`RealModel.gateway_model`.

Its own tokenizer answers ``POST /extras/tokenize`` (llama-cpp-python's
server), which is what the usage estimate is measured against.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest import procs
from loadtest.procs import llama


@dataclass(frozen=True, slots=True)
class RealModel:
    """A running llama.cpp server: ``url`` is its ``/v1`` base."""

    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{procs.HOST}:{self.port}/v1"

    def gateway_model(self, **extra: Any) -> dict[str, Any]:
        """A ``[[models]]`` entry for it, named ``smollm2``, no API key."""
        return llama.gateway_model(self.port, **extra)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """``POST path`` (from the server's root) with a JSON body; the JSON answer."""
        req = urllib.request.Request(
            f"http://{procs.HOST}:{self.port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer (no BOS)."""
        return len(self.post("/extras/tokenize", {"input": text, "add_bos": False})["tokens"])

    @classmethod
    @contextlib.contextmanager
    def started(cls) -> Iterator[RealModel]:
        """Start the server, poll ``GET /v1/models`` until the model is loaded,
        and stop it (SIGTERM, then SIGKILL) on the way out."""
        with tempfile.TemporaryDirectory(prefix="sluice-llama-") as tmp:
            server = llama.start_llama(Path(tmp))
            try:
                _wait(server)
                yield cls(server.port, Path(server.log.name))
            finally:
                procs.stop(server)


def _wait(server: procs.Managed, timeout_s: float = llama.READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            log = Path(server.log.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"llama.cpp server exited ({server.proc.returncode}):\n{log}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(f"{server.url}/v1/models", timeout=2) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"llama.cpp server not ready after {timeout_s:.0f}s; see {server.log.name}")
