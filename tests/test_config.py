"""Config: TOML validated with errors that name the bad key; the CLI refuses bad files."""

from __future__ import annotations

import socket
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
         "models[1].name: duplicate model name 'a'"),
        ("[server]\n", "models"),
        ("not = [toml", "not valid TOML"),
    ],
)  # fmt: skip
def test_errors_name_the_bad_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[[models]]\nname="s"\nprovider="ollama"',
         "models[0].provider: unknown provider 'ollama'; expected one of: openai, anthropic, "
         "azure, bedrock, gemini, sim"
         ' (use provider = "openai" with base_url for Ollama, vLLM and other OpenAI-compatible'
         " servers)"),
        ('[[models]]\nname="s"\nprovider="sim"\nitl_msx=5',
         "models[0].itl_msx: unknown key; did you mean 'itl_ms'?"),
        ('[[models]]\nname="s"\nprovider="sim"\n[models.stream]\nttft_timout_s=3',
         "models[0].stream.ttft_timout_s: unknown key; did you mean 'ttft_timeout_s'?"),
        ('[sever]\nport=1\n[[models]]\nname="s"\nprovider="sim"',
         "sever: unknown key; did you mean 'server'?"),
        ('[[model]]\nname="s"\nprovider="sim"', "model: unknown key; did you mean 'models'?"),
        ('[[models]]\nname="s"\nprovder="sim"',
         "models[0].provder: unknown key; did you mean 'provider'?"),
        ('[[models]]\nname="s"', "models[0].provider: required; expected one of: openai, "
         "anthropic, azure, bedrock, gemini, sim"),
        ('[[models]]\nname="a"\nprovider="sim"\n[[models]]\nname="b"\nprovider="sim"\n'
         '[[models]]\nname="a"\nprovider="sim"',
         "models[2].name: duplicate model name 'a' (models[0] has it too)"),
        ('[[models]]\nname="a"\nprovider="sim"\nfallbacks=["b"]',
         "models[0].fallbacks: 'b' is not another configured model"),
    ],
    ids=["unknown-provider", "typo", "nested-typo", "section-typo", "models-typo",
         "provider-typo", "no-provider", "duplicate", "fallback"],
)  # fmt: skip
def test_one_error_per_mistake_in_the_files_terms(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert info.value.errors == (error,)
    assert str(info.value) == f"invalid configuration: {error}"


def test_two_mistakes_are_two_errors(tmp_path: Path) -> None:
    text = '[[models]]\nname="s"\nprovider="sim"\nitl_msx=5\n[[models]]\nname="t"\nprovider="x"'
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert [e.split(":")[0] for e in info.value.errors] == [
        "models[0].itl_msx",
        "models[1].provider",
    ]


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


@pytest.mark.parametrize("workers", [1, 2])
def test_port_in_use_is_one_line_and_exit_2(workers: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "gateway", "--port", str(port), "--workers", str(workers)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 2
    lines = set(proc.stderr.splitlines())  # each worker says the same line
    assert lines == {f"sluice: cannot listen on 127.0.0.1:{port}: address already in use "
                     "(--port picks another)"}  # fmt: skip
    assert "Traceback" not in proc.stdout + proc.stderr


def test_shipped_example_loads_and_is_the_readmes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    root = Path(__file__).parent.parent
    example = root / "examples" / "sluice.toml"
    settings = load_settings(example)
    keys = {m.name: (m.provider, m.missing_key_env()) for m in settings.models}
    assert keys == {
        "gpt-4o-mini": ("openai", None),
        "claude-sonnet-4-5": ("anthropic", None),
        "claude-haiku-bedrock": ("bedrock", None),
        "gemini-2.5-flash": ("gemini", None),
        "llama3.2": ("openai", None),
        "gpt-4o-azure": ("azure", "AZURE_OPENAI_ENDPOINT"),
        "sim": ("sim", None),
    }  # the test environment sets the key variables (not Azure's)
    local = settings.model("llama3.2")
    assert isinstance(local, OpenAIModel)
    assert (local.base_url, local.key_env, local.api_key()) == ("http://127.0.0.1:11434/v1", "", "")
    readme = (root / "README.md").read_text()
    first_screen = readme[: readme.index("## Try it")]
    assert f"```toml\n{example.read_text()}```" in first_screen


def test_key_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(Path(__file__).parent.parent / "examples" / "sluice.toml")
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    missing = {m.name: m.missing_key_env() for m in settings.models}
    assert missing == {
        "gpt-4o-mini": "OPENAI_API_KEY",
        "claude-sonnet-4-5": "ANTHROPIC_API_KEY",
        "claude-haiku-bedrock": None,  # SigV4: the AWS chain, checked at start-up
        "gemini-2.5-flash": None,
        "llama3.2": None,
        "gpt-4o-azure": "AZURE_OPENAI_API_KEY",
        "sim": None,
    }
