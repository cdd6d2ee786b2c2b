"""docker-compose.yml's fleet, checked without a Docker engine: the YAML
parses; every service's command parses with the program's own argument
parser and every mounted gateway config with the gateway's own loader; every
mounted file exists; nginx accepts the compose layout (``nginx -t``, replica
hostnames rendered as 127.0.0.1 since they resolve only inside compose);
Prometheus accepts its config (``promtool``); Redis starts with its command;
names and ports line up (nginx upstreams = gateway services, Prometheus
targets = gateway services, traffic -> nginx, gateways -> redis and the
mock). That the topology runs is tests/test_fleet.py, with local processes
(:mod:`loadtest.procs.fleet`)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.__main__ import _parser as gateway_parser
from gateway.config import Settings, load_settings
from loadtest.mock import upstream as mock_upstream
from loadtest.procs import fleet as local_fleet
from loadtest.procs import free_port
from loadtest.procs.nginx import nginx_binary

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
GATEWAYS = sorted(n for n, s in SERVICES.items() if s.get("command", [])[2:3] == ["gateway"])
UPSTREAMS = REPO / "deploy" / "nginx" / "sluice-upstreams.compose.conf"


def mounts(service: str) -> dict[str, str]:
    """Container path -> host path (relative to the repository) of ``service``."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        host, container = volume.split(":")[:2]
        out[container] = host
    return out


def gateway_settings(service: str) -> tuple[Any, Settings]:
    """The parsed command line and the mounted config, loaded by the gateway."""
    cmd = SERVICES[service]["command"]
    assert cmd[:3] == ["python", "-m", "gateway"]
    args = gateway_parser().parse_args(cmd[3:])
    return args, load_settings(REPO / mounts(service)[args.config])


def upstream_servers() -> list[tuple[str, int]]:
    found = re.findall(r"^\s*server\s+([\w.-]+):(\d+)[^;]*;", UPSTREAMS.read_text(), re.M)
    return [(host, int(port)) for host, port in found]


def test_services() -> None:
    assert set(SERVICES) == {
        "nginx", "gateway-1", "gateway-2", "redis", "mock-upstream", "prometheus", "grafana",
        "traffic",
    }  # fmt: skip
    assert GATEWAYS == ["gateway-1", "gateway-2"]
    assert SERVICES["gateway-1"] == SERVICES["gateway-2"]  # one definition, two replicas


def test_every_mounted_file_exists() -> None:
    for name in SERVICES:
        for host in mounts(name).values():
            if host.startswith("./"):
                assert (REPO / host).exists(), f"{name} mounts missing {host}"


@pytest.mark.parametrize("service", ["gateway-1", "gateway-2"])
def test_gateway_commands_and_configs(service: str) -> None:
    args, settings = gateway_settings(service)
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 8080, 1)
    assert settings.auth.anonymous  # 0.0.0.0 without keys: said explicitly
    redis = urlsplit(settings.state.redis_url or "")
    assert (redis.hostname, redis.port or 6379) == ("redis", 6379)
    mock_cmd = mock_upstream.parse_args(SERVICES["mock-upstream"]["command"][3:])
    bases = {m.name: str(getattr(m, "base_url", "")) for m in settings.models}
    assert bases["mock"] == f"http://mock-upstream:{mock_cmd.port}/v1"
    assert mock_cmd.host == "0.0.0.0"
    # the grace compose gives a stopping container covers the gateway's own
    grace = int(SERVICES[service]["stop_grace_period"].removesuffix("s"))
    assert grace > settings.server.shutdown_grace_s
    deps = SERVICES[service]["depends_on"]
    assert deps["redis"]["condition"] == "service_healthy"
    assert "mock-upstream" in deps
    assert re.search(r"^HEALTHCHECK .*readyz", (REPO / "Dockerfile").read_text(), re.M | re.S)


def test_nginx_upstreams_are_the_gateway_services() -> None:
    port = {gateway_settings(g)[0].port for g in GATEWAYS}
    assert upstream_servers() == [(g, p) for g in GATEWAYS for p in port]
    nginx = SERVICES["nginx"]
    assert {"gateway-1", "gateway-2"} <= set(nginx["depends_on"])
    assert all(d["condition"] == "service_healthy" for d in nginx["depends_on"].values())
    m = mounts("nginx")
    assert m["/etc/nginx/conf.d/default.conf"] == "./deploy/nginx/sluice.conf"
    assert m["/etc/nginx/sluice-upstreams.conf"] == "./deploy/nginx/sluice-upstreams.compose.conf"
    listen = re.search(r"^\s*listen\s+(\d+)", (REPO / "deploy/nginx/sluice.conf").read_text(), re.M)
    assert listen is not None
    assert nginx["ports"] == [f"{listen.group(1)}:{listen.group(1)}"]
    traffic = SERVICES["traffic"]["command"][0]
    assert f"url=http://nginx:{listen.group(1)}/v1/chat/completions" in traffic
    assert SERVICES["traffic"]["depends_on"] == ["nginx"]


def test_nginx_accepts_the_compose_layout(tmp_path: Path) -> None:
    """The image's layout rebuilt under a prefix: nginx.conf includes
    conf.d/*.conf in http (as the official image's does), conf.d/default.conf
    is sluice.conf verbatim, sluice-upstreams.conf sits in the prefix with the
    service names rendered as 127.0.0.1 (they resolve only inside compose)."""
    try:
        nginx = nginx_binary()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    for container, host in mounts("nginx").items():
        target = tmp_path / Path(container).relative_to("/etc/nginx")
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (REPO / host).read_text()
        if host.endswith("sluice-upstreams.compose.conf"):
            text = re.sub(r"server\s+gateway-\d+:", "server 127.0.0.1:", text)
        target.write_text(text)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; include {tmp_path}/conf.d/*.conf; }}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_prometheus_scrapes_every_gateway(tmp_path: Path) -> None:
    m = mounts("prometheus")
    config = yaml.safe_load((REPO / m["/etc/prometheus/prometheus.yml"]).read_text())
    (job,) = config["scrape_configs"]
    port = {gateway_settings(g)[0].port for g in GATEWAYS}
    assert job["static_configs"][0]["targets"] == [f"{g}:{p}" for g in GATEWAYS for p in port]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: `make promtool` installs it", pytrace=False)
    for container, host in m.items():
        (tmp_path / Path(container).name).write_text((REPO / host).read_text())
    result = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_redis_starts_with_its_command(tmp_path: Path) -> None:
    """The compose command, on a free loopback port, answers PING."""
    cmd = SERVICES["redis"]["command"]
    assert cmd[0] == "redis-server"
    port = free_port()
    proc = subprocess.Popen(
        [local_fleet.redis_binary(), *cmd[1:], "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, "redis-server refused the compose command"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_local_fleet_serves_the_same_models() -> None:
    """loadtest.procs.fleet (what tests/test_fleet.py runs) has compose's models."""
    _, settings = gateway_settings("gateway-1")
    local = local_fleet.gateway_config("redis://127.0.0.1:1/0", 9000)
    assert {m.name for m in settings.models} == set(re.findall(r'^name = "(\w+)"', local, re.M))
