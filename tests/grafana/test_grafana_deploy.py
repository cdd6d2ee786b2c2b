"""The ways to run the monitoring stack: docker-compose.yml with Grafana
provisioning (checked statically: docker does not run in CI), and
grafana/run-prometheus.sh (`make prometheus`), run for real."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


GATEWAYS = ("gateway-1", "gateway-2")  # the fleet's replicas (tests/test_compose.py)


def test_compose_services_and_mounts(kit: Any) -> None:
    compose = load_yaml(kit.repo / "docker-compose.yml")
    services = compose["services"]
    assert {*GATEWAYS, "mock-upstream", "prometheus", "grafana"} <= set(services)

    for svc in services.values():
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("./"):
                assert (kit.repo / host).exists(), f"compose mounts missing {host}"
        build = svc.get("build")
        if build is not None:
            assert (kit.repo / build / "Dockerfile").is_file()

    ports = set()
    for name in GATEWAYS:
        cmd = services[name]["command"]
        assert cmd[:3] == ["python", "-m", "gateway"]
        assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
        ports.add(cmd[cmd.index("--port") + 1])
    (port,) = ports

    # Prometheus scrapes every gateway service at the port it listens on, with
    # the rule file next to the config where rule_files expects it.
    prom = load_yaml(kit.grafana / "prometheus.fleet.yml")
    (job,) = prom["scrape_configs"]
    assert job["job_name"] == "sluice"
    assert job["static_configs"][0]["targets"] == [f"{name}:{port}" for name in GATEWAYS]
    prom_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    assert prom_mounts["./grafana/prometheus.fleet.yml"] == "/etc/prometheus/prometheus.yml"
    # prometheus.yml (one gateway: make prometheus, the e2e test) is the same
    # but for its one target
    single = load_yaml(kit.grafana / "prometheus.yml")
    single["scrape_configs"][0]["static_configs"][0]["targets"] = job["static_configs"][0][
        "targets"
    ]
    assert single == prom
    for rule_file in prom["rule_files"]:
        assert prom_mounts[f"./grafana/{rule_file}"] == f"/etc/prometheus/{rule_file}"

    mock_cmd = " ".join(services["mock-upstream"]["command"])
    assert "loadtest.mock.upstream" in mock_cmd and "--host 0.0.0.0" in mock_cmd


def test_compose_gateway_config_routes_to_the_mock_upstream(kit: Any) -> None:
    compose = load_yaml(kit.repo / "docker-compose.yml")
    gateway = compose["services"][GATEWAYS[0]]
    mounts = dict(v.split(":")[:2] for v in gateway["volumes"])
    cmd = gateway["command"]
    config_path = cmd[cmd.index("--config") + 1]
    host_file = next(h for h, c in mounts.items() if c == config_path)
    config = tomllib.loads((kit.repo / host_file).read_text())
    models = {m["name"]: m for m in config["models"]}
    assert models["sim"]["provider"] == "sim"
    mock = models["mock"]
    assert mock["provider"] == "openai"
    mock_cmd = compose["services"]["mock-upstream"]["command"]
    mock_port = mock_cmd[mock_cmd.index("--port") + 1]
    assert mock["base_url"] == f"http://mock-upstream:{mock_port}/v1"
    assert mock["api_key_env"] in gateway["environment"]
    # the traffic loop asks for models the gateway has
    traffic = compose["services"]["traffic"]["command"][0]
    asked = set(re.findall(r"for m in ([\w ]+);", traffic)[0].split())
    assert asked <= set(models)


def test_compose_gateway_config_is_valid(kit: Any) -> None:
    # the gateway's own loader: unknown keys and bad values are errors there
    from gateway.config import load_settings

    settings = load_settings(kit.grafana / "compose-gateway.toml")
    assert {m.name for m in settings.models} == {"sim", "mock"}
    assert settings.stream.downstream_buffer_bytes == 65536  # what the alert threshold assumes


def test_grafana_provisioning_matches_compose(kit: Any, dashboard: dict[str, Any]) -> None:
    compose = load_yaml(kit.repo / "docker-compose.yml")
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"

    ds_doc = load_yaml(kit.grafana / "provisioning" / "datasources" / "prometheus.yml")
    (ds,) = ds_doc["datasources"]
    assert ds["type"] == "prometheus"
    prom_port = compose["services"]["prometheus"]["ports"][0].split(":")[-1]
    assert ds["url"] == f"http://prometheus:{prom_port}"
    assert ds["isDefault"] is True
    prom = load_yaml(kit.grafana / "prometheus.yml")
    assert ds["jsonData"]["timeInterval"] == prom["global"]["scrape_interval"]

    dash_doc = load_yaml(kit.grafana / "provisioning" / "dashboards" / "sluice.yml")
    (provider,) = dash_doc["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    host_dir = next(h for h, c in mounts.items() if c == path)
    assert (kit.repo / host_dir / "sluice.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/sluice.json"


def test_dockerfile_runs_the_gateway(kit: Any) -> None:
    text = (kit.repo / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert "uv sync --frozen --no-dev" in text
    for copied in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in copied.split():
            assert (kit.repo / path).exists(), f"Dockerfile copies missing {path}"
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert cmd[:3] == ["python", "-m", "gateway"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read())


def test_run_prometheus_script_scrapes_target_and_stops_on_ctrl_c(
    kit: Any, prometheus_bin: str, tmp_path: Path
) -> None:
    port = free_port()
    target = f"127.0.0.1:{free_port()}"  # nothing listens there; the target is just down
    env = dict(
        os.environ,
        PROMETHEUS=prometheus_bin,
        SLUICE_TARGET=target,
        PROM_LISTEN=f"127.0.0.1:{port}",
        SCRAPE_INTERVAL="1s",
        TMPDIR=str(tmp_path),
    )
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [str(kit.grafana / "run-prometheus.sh")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not targets:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            with contextlib.suppress(OSError):
                targets = get_json(f"http://127.0.0.1:{port}/api/v1/targets")["data"][
                    "activeTargets"
                ]
            time.sleep(0.2)
        assert [t["scrapeUrl"] for t in targets] == [f"http://{target}/metrics"]
        assert targets[0]["labels"]["job"] == "sluice"
        groups = get_json(f"http://127.0.0.1:{port}/api/v1/rules")["data"]["groups"]
        loaded = {r["name"] for g in groups for r in g["rules"]}
        assert loaded == {r["alert"] for r in kit.load_alert_rules()}
        workdirs = list(tmp_path.glob("sluice-prometheus.*"))
        assert len(workdirs) == 1 and (workdirs[0] / "data").is_dir()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "prometheus is not running under the script"

        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the script
        assert proc.wait(timeout=20) == 0
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, "prometheus outlived the script"
        assert not workdirs[0].exists(), "temporary storage left behind"
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait(timeout=10)
        log.close()
