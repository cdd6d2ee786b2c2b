"""The gateway as a process (``python -m gateway --config ...``), for tests
that need several of them, a restart, or signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from loadtest.procs import free_port
from tests.helpers import wait_listening


class GatewayProc:
    """One gateway process; its stdout and stderr go to files under ``workdir``."""

    def __init__(self, config: Path, workdir: Path, name: str, *args: str) -> None:
        self.config, self.workdir, self.name, self.args = config, workdir, name, args
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> GatewayProc:
        env = {**os.environ}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with self.out.open("ab") as out, self.err.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "--config", str(self.config),
                "--port", str(self.port), *self.args, stdout=out, stderr=err, env=env,
            )  # fmt: skip
        await wait_listening(self.port)
        return self

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def stop(self) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await self.proc.wait()
        return code

    def logs(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    async def __aenter__(self) -> GatewayProc:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


def config_text(keys: list[dict[str, Any]], *, redis_url: str | None = None,
                extra: str = "") -> str:  # fmt: skip
    """A TOML config: the fast simulator, ``keys``, optionally Redis."""
    lines = [
        "[[models]]", 'name = "sim"', 'provider = "sim"', "ttft_ms = 5", "itl_ms = 1",
        "output_tokens = 8", "",
    ]  # fmt: skip
    if redis_url:
        lines += ["[state]", f'redis_url = "{redis_url}"', ""]
    for key in keys:
        lines.append("[[auth.keys]]")
        for name, value in key.items():
            if isinstance(value, str):
                lines.append(f'{name} = "{value}"')
            elif isinstance(value, list):
                lines.append(f"{name} = [{', '.join(repr(v) for v in value)}]".replace("'", '"'))
            else:
                lines.append(f"{name} = {value}")
        lines.append("")
    return "\n".join(lines) + extra


def replicas_config(path: Path, redis_url: str, upstream_url: str, extra: str = "") -> Path:
    """Write (to ``path``) the config two gateway processes share for
    cross-replica tests: Redis, and model ``up`` on an OpenAI-compatible fake
    at ``upstream_url`` (no key); ``extra`` TOML appended. Returns ``path``."""
    path.write_text(
        f"""
[state]
redis_url = "{redis_url}"
[[models]]
name = "up"
provider = "openai"
base_url = "{upstream_url}"
api_key_env = ""
{extra}"""
    )
    return path
