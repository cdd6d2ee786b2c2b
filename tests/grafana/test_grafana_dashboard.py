"""Structure of grafana/dashboards/sluice.json: what Grafana needs to load it with
no clicks, and what an operator needs to read it (units, descriptions, rows),
with every query naming only metrics and labels of the docs/architecture.md contract."""

from __future__ import annotations

import re
from typing import Any

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
ROWS = [
    "Traffic",
    "Latency",
    "Backpressure",
    "Upstream health",
    "Admission",
    "Keys",
    "Resumable and background streams",
    "Spend",
    "Deployments",
    "Request bodies",
]
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "heatmap"}
# Grafana unit ids used by this dashboard family; anything else is likely a typo
# that Grafana would silently render as a plain number.
UNITS = {"s", "ms", "bytes", "decbytes", "reqps", "ops", "percentunit", "short", "none"}
UNITS.add("currencyUSD")  # the Spend row (US dollars)
VARIABLE_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__range_s", "__all"}
QUANTILE = re.compile(
    r"histogram_quantile\(\s*(0?\.\d+|1(?:\.0)?)\s*,\s*sum by \(([^)]*)\)\s*\(\s*rate\("
    r"(\w+)_bucket(?:\{[^}]*\})?\[\$__rate_interval\]\)\s*\)\s*\)"
)


def test_dashboard_metadata(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "sluice-gateway"
    assert dashboard["title"]
    # Grafana 11/12 classic model; older schemas are migrated on load, newer
    # ones would be rejected by the Grafana pinned in docker-compose.yml.
    assert 39 <= dashboard["schemaVersion"] <= 41
    assert dashboard["id"] is None, "provisioned dashboards must not carry a database id"
    assert dashboard["time"]["from"].startswith("now-")


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"DS_PROMETHEUS", "model", "provider"}

    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"

    for name, label in [("model", "model"), ("provider", "provider")]:
        var = variables[name]
        assert var["type"] == "query"
        assert var["datasource"] == DS
        assert var["includeAll"] is True
        # "All" must become a regex that matches every value, not Grafana's
        # default alternation of the values it happened to load.
        assert var["allValue"] == ".*"
        m = re.fullmatch(r"label_values\((\w+)(\{[^}]*\})?,\s*(\w+)\)", var["definition"])
        assert m, var["definition"]
        assert m.group(3) == label
        # Grafana rebuilds a label-values query from these fields, not from
        # "query": check they say the same thing as the definition.
        q = var["query"]
        assert q["query"] == var["definition"]
        assert q["qryType"] == 1
        assert (q["metric"], q["label"]) == (m.group(1), m.group(3))
        filters = ", ".join(f'{f["label"]}{f["op"]}"{f["value"]}"' for f in q["labelFilters"])
        assert (m.group(2) or "") == (f"{{{filters}}}" if filters else "")
    # provider choices follow the chosen model
    assert '$model"' in variables["provider"]["definition"]


def test_panel_ids_unique_and_layout_sane(kit: Any, dashboard: dict[str, Any]) -> None:
    panels = list(kit.iter_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), "duplicate panel ids"

    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))


def test_rows_in_order_and_not_empty(kit: Any, dashboard: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ROWS
    by_row: dict[str, int] = {}
    for panel in kit.dashboard_panels(dashboard):
        by_row[panel.row] = by_row.get(panel.row, 0) + 1
    assert set(by_row) == set(ROWS), "every panel sits under a row, every row has panels"


def test_panel_titles_unique(kit: Any, dashboard: dict[str, Any]) -> None:
    titles = [p.title for p in kit.dashboard_panels(dashboard)]
    assert len(titles) == len(set(titles))


def test_every_contract_metric_is_on_the_dashboard(kit: Any, dashboard: dict[str, Any]) -> None:
    used: set[str] = set()
    for panel in kit.dashboard_panels(dashboard):
        for expr in panel.exprs:
            selectors, _ = kit.parse_query(expr)
            used |= {kit.series_to_family(s.name) for s in selectors}
    assert set(kit.contract) - used == set()


def test_panel_has_datasource_unit_and_description(panel: Any) -> None:
    raw = panel.raw
    assert raw["type"] in PANEL_TYPES
    assert raw["datasource"] == DS
    unit = raw["fieldConfig"]["defaults"].get("unit")
    assert unit in UNITS, f"unit {unit!r}"
    desc = raw.get("description", "")
    assert desc and "\n" not in desc and desc.endswith("."), "one-line description"
    assert len(desc) <= 220
    assert raw["targets"], "a panel without queries"
    assert len({t["refId"] for t in raw["targets"]}) == len(raw["targets"])
    for target in raw["targets"]:
        assert target["datasource"] == DS
        assert target["expr"].strip()


def test_panel_queries_use_contract_metrics_and_labels(kit: Any, panel: Any) -> None:
    for target in panel.raw["targets"]:
        expr = target["expr"]
        selectors, grouping = kit.parse_query(expr)
        assert selectors, f"no metric in {expr!r}"
        allowed_grouping = set(kit.target_labels)
        for sel in selectors:
            assert kit.series_to_family(sel.name), f"{sel.name} is not in the metric contract"
            labels = kit.series_labels(sel.name)
            allowed_grouping |= labels
            for label, _, _ in sel.matchers:
                assert label in labels, f"{sel.name} has no label {label!r}"
            family_labels = kit.contract[kit.series_to_family(sel.name)][1]
            # The model/provider variables must actually filter every series
            # that carries those labels.
            present = {label: (op, value) for label, op, value in sel.matchers}
            for var in ("model", "provider"):
                if var in family_labels:
                    assert present.get(var) == ("=~", f"${var}"), f"{sel.name} ignores ${var}"
        assert grouping <= allowed_grouping, f"grouping by unknown labels in {expr!r}"
        legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
        assert legend_labels <= grouping | kit.target_labels, (
            f"legend {target['legendFormat']!r} names labels the query aggregates away"
        )


def test_panel_queries_rate_over_rate_interval(panel: Any) -> None:
    for expr in panel.exprs:
        windows = re.findall(r"\[([^\]]*)\]", expr)
        assert all(w == "$__rate_interval" for w in windows), expr
        for fn in re.findall(r"\b(rate|increase|irate)\(", expr):
            assert fn == "rate", expr


def test_percentiles_are_histogram_quantile_of_summed_rates(panel: Any) -> None:
    for expr in panel.exprs:
        n_quantiles = expr.count("histogram_quantile(")
        matches = QUANTILE.findall(expr)
        assert len(matches) == n_quantiles, f"unexpected histogram_quantile shape: {expr}"
        for q, by, _metric in matches:
            assert 0 < float(q) < 1
            assert "le" in [label.strip() for label in by.split(",")], expr


def test_variables_referenced_are_defined(dashboard: dict[str, Any]) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]} | GRAFANA_BUILTINS
    text = str(dashboard["panels"]) + str(dashboard["templating"])
    assert set(VARIABLE_REF.findall(text)) <= defined


def test_latency_panels_show_p50_p90_p99(kit: Any, dashboard: dict[str, Any]) -> None:
    want = {
        "sluice_time_to_first_token_seconds",
        "sluice_upstream_time_to_first_token_seconds",
        "sluice_inter_token_latency_seconds",
        "sluice_time_per_output_token_seconds",
        "sluice_stream_duration_seconds",
    }
    seen: dict[str, set[float]] = {m: set() for m in want}
    for panel in kit.dashboard_panels(dashboard):
        for expr in panel.exprs:
            for q, _by, metric in QUANTILE.findall(expr):
                if metric in seen:
                    seen[metric].add(float(q))
    for metric, qs in seen.items():
        assert {0.5, 0.9, 0.99} <= qs, metric


def test_parser_rejects_unknown_metrics(kit: Any) -> None:
    # The checks above are only as good as the parser: make sure it finds
    # metric names in the places queries hide them.
    selectors, grouping = kit.parse_query(
        'sum by (model) (rate(sluice_nope_total{model=~"$model"}[5m])) / on (model) group_left '
        "sum by (model) (other_metric) or vector(0)"
    )
    assert [s.name for s in selectors] == ["sluice_nope_total", "other_metric"]
    assert grouping == {"model"}
    assert kit.series_to_family("sluice_nope_total") is None
    assert kit.series_to_family("sluice_stream_duration_seconds_bucket")
    # a histogram is only queryable through its _bucket/_sum/_count series
    assert kit.series_to_family("sluice_stream_duration_seconds") is None
