"""Every load-test command documents every option and shows its default."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from loadtest import (
    auth_overhead,
    bench,
    cancel_trace,
    event_cost,
    fleet,
    headofline,
    hotpath,
    real_model,
    relay_cpu,
    runner,
    setup_cost,
    state_burst,
)
from loadtest.mock import upstream
from loadtest.procs import llama
from loadtest.relays import baseline, floor

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "loadtest": runner.build_parser,
    "loadtest.bench": bench.build_parser,
    "loadtest.relay_cpu": relay_cpu.build_parser,
    "loadtest.hotpath": hotpath.build_parser,
    "loadtest.headofline": headofline.build_parser,
    "loadtest.fleet": fleet.build_parser,
    "loadtest.real_model": real_model.build_parser,
    "loadtest.auth_overhead": auth_overhead.build_parser,
    "loadtest.state_burst": state_burst.build_parser,
    "loadtest.mock.upstream": upstream.build_parser,
    "loadtest.procs.llama": llama.build_parser,
    "loadtest.relays.floor": floor.build_parser,
    "loadtest.relays.baseline": baseline.build_parser,
    "loadtest.setup_cost": setup_cost.build_parser,
    "loadtest.event_cost": event_cost.build_parser,
    "loadtest.cancel_trace": cancel_trace.build_parser,
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
