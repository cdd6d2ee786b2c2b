"""Every load-test command documents every option and shows its default;
``python -m loadtest`` dispatches to every command and lists them all."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

import pytest

from loadtest.__main__ import main as dispatch
from loadtest.__main__ import usage
from loadtest.mock import upstream
from loadtest.procs import llama
from loadtest.relays import baseline, floor
from loadtest.scenarios import (
    COMMANDS,
    auth_overhead,
    bench,
    cancel_trace,
    event_cost,
    fleet,
    headofline,
    hotpath,
    otel_cost,
    real_model,
    relay_cpu,
    routing,
    runner,
    setup_cost,
    state_burst,
    summary,
)

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "loadtest": runner.build_parser,
    "loadtest bench": bench.build_parser,
    "loadtest relay_cpu": relay_cpu.build_parser,
    "loadtest hotpath": hotpath.build_parser,
    "loadtest headofline": headofline.build_parser,
    "loadtest fleet": fleet.build_parser,
    "loadtest real_model": real_model.build_parser,
    "loadtest auth_overhead": auth_overhead.build_parser,
    "loadtest state_burst": state_burst.build_parser,
    "loadtest.mock.upstream": upstream.build_parser,
    "loadtest.procs.llama": llama.build_parser,
    "loadtest.relays.floor": floor.build_parser,
    "loadtest.relays.baseline": baseline.build_parser,
    "loadtest setup_cost": setup_cost.build_parser,
    "loadtest event_cost": event_cost.build_parser,
    "loadtest cancel_trace": cancel_trace.build_parser,
    "loadtest routing": routing.build_parser,
    "loadtest otel_cost": otel_cost.build_parser,
}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_a_description_and_its_default(name: str) -> None:
    parser = PARSERS[name]()
    assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter
    options = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert options
    for action in options:
        assert action.help and action.help.strip(), f"{name} {action.option_strings}"
    text = parser.format_help()
    assert text.count("(default:") == len(options), text


def test_every_command_has_a_parser_here_and_a_line_in_help() -> None:
    """No command is left out of the option check above, and ``help`` gives
    each one a sentence of its own (from its docstring)."""
    commands = {name.removeprefix("loadtest ") for name in PARSERS if " " in name}
    assert commands | {"runner"} == set(COMMANDS)
    text = usage()
    for name in COMMANDS:
        line = next(x for x in text.splitlines() if x.split()[:1] == [name])
        sentence = summary(name)
        assert sentence in line and sentence.endswith(".") and "python -m" not in sentence
        assert len(sentence) < 110, sentence


def test_dispatch_runs_the_named_command_and_runner_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[tuple[str, list[str]]] = []
    for name in ("runner", "hotpath", "auth_overhead"):
        module = importlib.import_module(f"loadtest.scenarios.{name}")
        monkeypatch.setattr(module, "main", lambda argv, name=name: ran.append((name, argv)))
    assert dispatch(["hotpath", "--quick"]) == 0
    assert dispatch([]) == 0
    assert dispatch(["--quick"]) == 0
    assert dispatch(["auth_overhead"]) == 0
    assert ran == [
        ("hotpath", ["--quick"]),
        ("runner", []),
        ("runner", ["--quick"]),
        ("auth_overhead", []),
    ]
    assert dispatch(["nosuch"]) == 2
    assert "no command 'nosuch'" in capsys.readouterr().err
    assert dispatch(["--help"]) == 0
    assert "cancel_trace" in capsys.readouterr().out


def test_every_measuring_command_has_quick_and_an_explicit_option_wins() -> None:
    """``--quick`` on every command that measures (fleet serves, it does not
    measure); an option given on the command line keeps its value."""
    for name, build in PARSERS.items():
        if name.startswith("loadtest ") and name != "loadtest fleet":
            assert any("--quick" in a.option_strings for a in build()._actions), name
    p = relay_cpu.build_parser()
    assert (p.parse_args(["--quick"]).streams, p.parse_args(["--quick"]).rounds) == (2, 1)
    assert p.parse_args(["--streams", "5", "--quick"]).streams == 5
    assert p.parse_args(["--quick", "--streams", "5"]).streams == 5
    assert p.parse_args([]).streams == 10
