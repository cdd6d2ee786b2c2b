"""A few seconds of the real pipeline: mock upstream and gateway as subprocesses,
the load generator through both, the JSON / Markdown / PNG outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadtest.scenarios.runner import parse_args, run


async def test_quick_run_through_gateway(tmp_path: Path) -> None:
    report = await run(parse_args(["--quick", "--no-baseline", "--out", str(tmp_path)]))
    assert report == tmp_path / "report.md"
    result: dict[str, Any] = json.loads((tmp_path / "result.json").read_text())
    assert "gateway_error" not in result["meta"], result["meta"].get("gateway_error")
    phases = result["phases"]
    assert set(phases) == {"direct", "gateway", "slow"}
    for name in ("direct", "gateway"):
        ph = phases[name]
        assert ph["requests"] > 0
        normal = ph["profiles"]["normal"]
        assert normal["completed"] == normal["requests"]
        assert normal["errors"] == {}
        assert ph["frames_received"] == ph["frames_expected"] > 0
        assert ph["frames_lost"] == 0
        assert ph["normal"]["ttft_ms"]["p50"] > 0
        assert ph["normal"]["itl_ms"]["n"] > 0
    slow = phases["slow"]
    assert slow["profiles"]["disconnect_mid"]["disconnected_on_purpose"] > 0
    assert slow["cancel"]["latency_ms"] is not None
    assert slow["samples"] and slow["samples"][0]["rss_bytes"] > 0
    cmp_ = result["comparison"]
    assert cmp_["throughput_ratio"] > 0
    assert cmp_["added_ttft_ms"]["p50"] is not None
    assert (tmp_path / "latency_percentiles.png").stat().st_size > 0
    assert "## Targets" in report.read_text()
