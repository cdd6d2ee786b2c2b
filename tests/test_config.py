"""Config: TOML validated with errors that name the bad key; the CLI refuses bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, OpenAIModel, SimModel, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sluice.toml"
    path.write_text(text)
    return path


def test_default_is_the_simulator() -> None:
    settings = load_settings(None)
    assert [m.name for m in settings.models] == ["sim"]
    assert isinstance(settings.models[0], SimModel)
    assert settings.server.port == 8080


def test_full_example(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            """
[server]
host = "0.0.0.0"
port = 9090
[stream]
downstream_buffer_bytes = 32768
send_timeout_s = 5
[[models]]
name = "gpt-4o-mini"
provider = "openai"
base_url = "http://127.0.0.1:9000/v1"
api_key_env = "MY_KEY"
[[models]]
name = "sim"
provider = "sim"
ttft_ms = 10
""",
        )
    )
    assert settings.server.port == 9090
    assert settings.stream.downstream_buffer_bytes == 32768
    model = settings.model("gpt-4o-mini")
    assert isinstance(model, OpenAIModel)
    assert model.target_model == "gpt-4o-mini"
    assert settings.model("missing") is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[server]\nprot = 1\n[[models]]\nname="s"\nprovider="sim"', "server.prot"),
        ('[stream]\nsend_timeout_s = -1\n[[models]]\nname="s"\nprovider="sim"',
         "stream.send_timeout_s"),
        ('[[models]]\nname="s"\nprovider="sim"\nitl_ms=-5', "models[0].itl_ms"),
        ('[[models]]\nname="s"\nprovider="openai"\nttft_ms=5', "models[0].ttft_ms"),
        ('[[models]]\nname="s"\nprovider="bogus"', "models[0]"),
        ('[[models]]\nname="a"\nprovider="sim"\n[[models]]\nname="a"\nprovider="sim"',
         "duplicate model names: a"),
        ("[server]\n", "models"),
        ("not = [toml", "not valid TOML"),
    ],
)  # fmt: skip
def test_errors_name_the_bad_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, text))


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings("/nonexistent/sluice.toml")


def test_cli_exits_2_naming_the_bad_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[[models]]\nname="s"\nprovider="sim"\noutput_tokens=0')
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "models[0].output_tokens" in proc.stderr


def test_readme_config_example_is_valid() -> None:
    import re
    import tomllib

    from gateway.config import parse_settings

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert blocks
    for block in blocks:
        assert parse_settings(tomllib.loads(block)).models
