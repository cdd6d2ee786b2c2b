"""Where upstream keys would go, warned about at start-up (issue 20's sweep:
a custom ``base_url`` without ``api_key_env`` got the provider's usual key,
and keys went over plain HTTP to hosts beyond this machine, silently)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.key_exposure import key_exposures
from tests.helpers import GatewayFactory, settings_from


def _events(**model: Any) -> list[tuple[str, str]]:
    settings = settings_from(models=[{"name": "m", "provider": "openai", **model}])
    return [(e["event"], e["host"]) for e in key_exposures(settings)]


def test_a_custom_host_without_its_own_key_variable_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("VLLM_KEY", "k")
    assert _events(base_url="https://proxy.example.com/v1") == [
        ("upstream_default_key_to_custom_host", "proxy.example.com")
    ]
    assert _events(base_url="https://proxy.example.com/v1", api_key_env="VLLM_KEY") == []
    assert _events(base_url="https://proxy.example.com/v1", api_key_env="") == []
    assert _events() == []  # the provider's own host


def test_a_key_over_plain_http_beyond_loopback_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_KEY", "k")
    assert _events(base_url="http://10.1.2.3:8000/v1", api_key_env="VLLM_KEY") == [
        ("upstream_key_over_plain_http", "10.1.2.3")
    ]
    assert _events(base_url="http://127.0.0.1:8000/v1", api_key_env="VLLM_KEY") == []
    assert _events(base_url="http://10.1.2.3:8000/v1", api_key_env="") == []  # no key sent
    monkeypatch.delenv("VLLM_KEY")
    assert _events(base_url="http://10.1.2.3:8000/v1", api_key_env="VLLM_KEY") == []


async def test_the_gateway_says_so_when_it_starts(
    gateway: GatewayFactory, log_lines: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    await gateway(models=[{"name": "m", "provider": "openai", "base_url": "https://p.example/v1"}])
    warned = [
        line for line in log_lines() if line.get("event") == "upstream_default_key_to_custom_host"
    ]
    assert [(w["model"], w["host"], w["key_env"]) for w in warned] == [
        ("m", "p.example", "OPENAI_API_KEY")
    ]
    assert all("sk-test-secret" not in str(line) for line in log_lines())
