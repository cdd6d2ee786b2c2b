"""The hot-path benchmark in its ``--quick`` form: mock, floor relay and gateway
as subprocesses, every scenario once, the report complete and computed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from loadtest.report.hotpath import FIGURES, GOALS, SLUICE_ONLY
from loadtest.scenarios.hotpath import SCENARIOS, parse_args, run


def _finite(stat: dict[str, Any] | None) -> bool:
    return stat is not None and all(math.isfinite(stat[k]) for k in ("median", "lo", "hi"))


async def test_quick_hotpath_report(tmp_path: Path) -> None:
    # --harness-nice 0: the load generator is this process, the test suite's.
    report = await run(parse_args(["--quick", "--out", str(tmp_path), "--harness-nice", "0"]))
    assert report == tmp_path / "hotpath.md"
    result: dict[str, Any] = json.loads((tmp_path / "hotpath.json").read_text())
    rows = {(r["scenario"], r["key"]): r for r in result["rows"]}
    expected = {(sc, f.key) for f in FIGURES for sc in f.scenarios if sc in SCENARIOS}
    assert set(rows) == expected
    for key, row in rows.items():
        assert _finite(row["sluice"]), key
        assert _finite(row["floor"]) or key[1] in SLUICE_ONLY, key
        assert row["ratio"] is None or math.isfinite(row["ratio"]), key
        if key in GOALS:
            assert row["verdict"] in ("met", "missed"), key
        else:
            assert row["verdict"] == "report", key
    for sc in ("paced200", "ttft_c1"):  # every client got its whole stream
        assert rows[(sc, "errors")]["sluice"]["median"] == 0
        assert rows[(sc, "errors")]["floor"]["median"] == 0
    assert set(result["saturation"]) == {"floor", "sluice"}
    text = report.read_text()
    assert "| paced200 | relay CPU per 1,000 events, ms |" in text
    assert "- `paced200`: 20 concurrent streams" in text
    assert (tmp_path / "hotpath_cpu.png").stat().st_size > 0
    assert (tmp_path / "hotpath_ttft.png").stat().st_size > 0


def test_ttft_split_reads_the_phase_s_summary_lines(tmp_path: Path) -> None:
    """Sluice's own part of each TTFT comes from its summary lines written
    during the phase (after ``start``), nothing before, nothing unparsable."""
    from loadtest.measure.hotpath import gateway_ttft_parts

    log = tmp_path / "gateway.log"
    before = b'{"event":"request","ttft_ms":99.0,"upstream_ttft_ms":1.0}\n'
    log.write_bytes(
        before
        + b'{"event":"request","ttft_ms":25.5,"upstream_ttft_ms":21.0}\n'
        + b'{"event":"request","ttft_ms":null,"upstream_ttft_ms":null}\n'
        + b'{"event":"started"}\n'
        + b'not json "upstream_ttft_ms"\n'
        + b'{"event":"request","ttft_ms":40,"upstream_ttft_ms":30.0,"upstream_headers_ms":2.5}\n'
    )
    own, upstream, headers = gateway_ttft_parts(log, len(before))
    assert own == (4.5, 10.0)
    assert upstream == (21.0, 30.0)
    assert headers == (2.5,)


def test_slowest_legs_split_the_slowest_first_tokens() -> None:
    """The slowest 1% (here one of 3 streams) by TTFT, its time to the mock,
    in it and back; streams without a record are left out."""
    from loadtest.client.sse import StreamResult
    from loadtest.measure.hotpath import slowest_legs

    def res(cid: str, start: float, first: float) -> StreamResult:
        return StreamResult(cid, "normal", "openai", 1, 0.0, start, first_token_at=first)

    results = [res("a", 0.0, 0.030), res("b", 1.0, 1.200), res("c", 2.0, 2.025), res("x", 0, 9)]
    records = [
        {"client_id": "a", "started_mono": 0.002, "first_token_mono": 0.025},
        {"client_id": "b", "started_mono": 1.150, "first_token_mono": 1.170},
        {"client_id": "c", "started_mono": 2.001, "first_token_mono": 2.021},
    ]
    legs = slowest_legs(results, records)
    assert legs is not None
    assert [round(v, 3) for v in legs] == [150.0, 20.0, 30.0]
    assert slowest_legs(results, []) is None
