"""promtool on the shipped Prometheus config and alert rules, the rules' unit
tests (grafana/alerts.test.yml), and what an on-call person needs in each rule."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REQUIRED_ALERTS = {
    "SluiceTimeToFirstTokenHigh",
    "SluiceInterTokenLatencyHigh",
    "SluiceUpstreamErrorRatioHigh",
    "SluiceSlowClientDrops",
    "SluiceWriteBufferNearBound",
    "SluiceAdmissionRejections",
    "SluiceGatewayDown",
    "SluiceKeyBudgetNearlySpent",
}
DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    parts = DURATION.findall(duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * UNIT_S[u] for n, u in parts)


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_config(promtool: str, kit: Any) -> None:
    # also checks the rule files the config names
    result = run([promtool, "check", "config", "prometheus.yml"], kit.grafana)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules(promtool: str, kit: Any) -> None:
    result = run([promtool, "check", "rules", "alerts.yml"], kit.grafana)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(kit.load_alert_rules())} rules found" in result.stdout


def test_promtool_test_rules(promtool: str, kit: Any) -> None:
    result = run([promtool, "test", "rules", "alerts.test.yml"], kit.grafana)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules_catches_a_wrong_threshold(
    promtool: str, kit: Any, tmp_path: Path
) -> None:
    # The unit tests must be able to fail: loosen every threshold by 10x and
    # tighten it by 10x; both must break at least one case per latency alert.
    shutil.copy(kit.grafana / "alerts.test.yml", tmp_path / "alerts.test.yml")
    original = (kit.grafana / "alerts.yml").read_text()
    for factor in (10.0, 0.1):

        def scale(m: re.Match[str], factor: float = factor) -> str:
            return f"{m.group(1)} {float(m.group(2)) * factor:g}"

        mutated = re.sub(r"(\)\s*>)\s*([0-9.]+)\n", lambda m: scale(m) + "\n", original)
        assert mutated != original
        (tmp_path / "alerts.yml").write_text(mutated)
        result = run([promtool, "test", "rules", "alerts.test.yml"], tmp_path)
        assert result.returncode != 0, f"thresholds x{factor} still pass the unit tests"
        failed = set(re.findall(r"alertname: (\w+)", result.stdout + result.stderr))
        assert {"SluiceTimeToFirstTokenHigh", "SluiceInterTokenLatencyHigh"} <= failed


def test_required_alerts_exist(alert_rules: list[dict[str, Any]]) -> None:
    names = [r["alert"] for r in alert_rules]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS


def test_alert_rule_is_actionable(alert_rule: dict[str, Any], kit: Any) -> None:
    assert seconds(alert_rule["for"]) >= 60, "every alert waits at least a minute"
    assert alert_rule["labels"]["severity"] in {"warning", "critical"}
    summary = alert_rule["annotations"]["summary"]
    description = alert_rule["annotations"]["description"]
    assert summary and "\n" not in summary
    assert "Check first" in description, "the description says what to check first"
    selectors, grouping = kit.parse_query(alert_rule["expr"])
    assert selectors
    allowed = set(kit.target_labels)
    for sel in selectors:
        assert kit.series_to_family(sel.name), f"{sel.name} is not in the metric contract"
        labels = kit.series_labels(sel.name)
        allowed |= labels
        for label, _, _ in sel.matchers:
            assert label in labels, f"{sel.name} has no label {label!r}"
    assert grouping <= allowed
    used = set(re.findall(r"\$labels\.(\w+)", summary + description))
    assert used <= grouping | {s for sel in selectors for s, _, _ in sel.matchers} | {"instance"}


def test_every_alert_unit_tested_firing_and_quiet(alert_rules: list[dict[str, Any]]) -> None:
    doc = yaml.safe_load((Path(__file__).parents[2] / "grafana" / "alerts.test.yml").read_text())
    wait = {r["alert"]: seconds(r["for"]) for r in alert_rules}
    fires: set[str] = set()
    quiet_after_for: set[str] = set()
    pending_checked: set[str] = set()
    for case in doc["tests"]:
        fired_here = {
            c["alertname"] for c in case.get("alert_rule_test", []) if c.get("exp_alerts")
        }
        for check in case.get("alert_rule_test", []):
            name = check["alertname"]
            assert name in wait, f"unknown alert {name} in alerts.test.yml"
            t = seconds(check["eval_time"])
            if check.get("exp_alerts"):
                assert t >= wait[name]
                fires.add(name)
            elif name in fired_here:
                pending_checked.add(name)  # the same series, before `for:` elapsed
            elif t > wait[name]:
                quiet_after_for.add(name)
    assert fires == set(wait), "alerts never shown to fire"
    assert quiet_after_for == set(wait), "alerts never shown to stay quiet"
    assert pending_checked == set(wait), "alerts never checked to wait for their `for:`"


@pytest.mark.parametrize(
    ("expr", "signal", "threshold"),
    [
        ("up == 0", "up", "== 0"),
        ("(\n  a\n/\n  b\n) > 0.05\n", "(\n  a\n/\n  b\n)", "> 0.05"),
        ("absent(up)", "absent(up)", None),
    ],
)
def test_split_threshold(kit: Any, expr: str, signal: str, threshold: str | None) -> None:
    assert kit.split_threshold(expr) == (signal, threshold)


def test_alert_descriptions_name_real_panels(
    alert_rule: dict[str, Any], kit: Any, dashboard: dict[str, Any]
) -> None:
    # "Check first the X panel" is useless if X was renamed.
    titles = {p.title for p in kit.dashboard_panels(dashboard)}
    quoted = re.findall(r'"([^"]+)"', alert_rule["annotations"]["description"])
    assert set(quoted) <= titles


def test_write_buffer_alert_tracks_the_default_bound(alert_rules: list[dict[str, Any]]) -> None:
    from gateway.config import StreamSettings

    (rule,) = [r for r in alert_rules if r["alert"] == "SluiceWriteBufferNearBound"]
    threshold = float(re.search(r">\s*([0-9.]+)\s*$", rule["expr"]).group(1))
    assert threshold == pytest.approx(0.8 * StreamSettings().downstream_buffer_bytes)
