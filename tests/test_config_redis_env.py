"""``[state] redis_url_env``: the Redis URL from an environment variable (a
Kubernetes Secret), read when the file is loaded; every way it can be wrong is
a configuration error naming the variable, never echoing its value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, StateSettings, load_settings

SECRET_URL = "redis://:hunter2@redis.example:6379/0"


def load(tmp_path: Path, state: str) -> StateSettings:
    path = tmp_path / "sluice.toml"
    path.write_text(f'[[models]]\nname = "sim"\nprovider = "sim"\n[state]\n{state}\n')
    return load_settings(path).state


def test_url_comes_from_the_named_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_REDIS_URL", SECRET_URL)
    state = load(tmp_path, 'redis_url_env = "SLUICE_REDIS_URL"\nfail_open = true')
    assert state.redis_url == SECRET_URL
    assert state.redis_url_env == "SLUICE_REDIS_URL"
    assert state.fail_open is True


def test_without_it_nothing_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_REDIS_URL", SECRET_URL)
    assert load(tmp_path, "").redis_url is None
    assert load(tmp_path, 'redis_url = "redis://127.0.0.1:6379/1"').redis_url == (
        "redis://127.0.0.1:6379/1"
    )


@pytest.mark.parametrize(
    ("value", "state", "message"),
    [
        (
            None,
            'redis_url_env = "SLUICE_REDIS_URL"',
            "the environment variable SLUICE_REDIS_URL is unset or empty",
        ),
        (
            "",
            'redis_url_env = "SLUICE_REDIS_URL"',
            "the environment variable SLUICE_REDIS_URL is unset or empty",
        ),
        (
            "http://:hunter2@redis.example/0",
            'redis_url_env = "SLUICE_REDIS_URL"',
            "SLUICE_REDIS_URL should hold redis://host:port/db, rediss://... or unix://path",
        ),
        (
            SECRET_URL,
            'redis_url_env = "SLUICE_REDIS_URL"\nredis_url = "redis://127.0.0.1:6379/0"',
            "set redis_url or redis_url_env, not both",
        ),
    ],
)
def test_mistakes_are_config_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
    state: str,
    message: str,
) -> None:
    if value is None:
        monkeypatch.delenv("SLUICE_REDIS_URL", raising=False)
    else:
        monkeypatch.setenv("SLUICE_REDIS_URL", value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, state)
    assert err.value.errors == (f"state.redis_url_env: {message}",)
    assert "hunter2" not in str(err.value)


def test_empty_variable_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, 'redis_url_env = ""')
    assert err.value.errors[0].startswith("state.redis_url_env: ")
