"""Fixtures for the Grafana / Prometheus / alerting tests.

The metric contract below is the metric contract of docs/architecture.md (plus
``sluice_build_info``, the per-key metrics of client keys and quotas, and
Prometheus's own ``up``); dashboards and alerts may
name nothing else. The PromQL helpers are a small tokenizer, enough to find
every metric selector in the queries we ship; they are exposed as fixtures.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"

_MODEL = frozenset({"model", "provider"})
_ROUTE = frozenset({"route"})
_DEPLOYMENT = frozenset({"model", "deployment"})

# name -> (type, labels), from docs/architecture.md "Metric contract".
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "sluice_requests_total": ("counter", frozenset({"route", "method", "status"})),
    "sluice_streams_active": ("gauge", _ROUTE),
    "sluice_time_to_first_token_seconds": ("histogram", _MODEL),
    "sluice_upstream_time_to_first_token_seconds": ("histogram", _MODEL),
    "sluice_inter_token_latency_seconds": ("histogram", _MODEL),
    "sluice_time_per_output_token_seconds": ("histogram", _MODEL),
    "sluice_stream_duration_seconds": ("histogram", _MODEL),
    "sluice_output_tokens_total": ("counter", _MODEL),
    "sluice_input_tokens_total": ("counter", _MODEL),
    "sluice_stream_terminations_total": ("counter", _MODEL | {"reason"}),
    "sluice_connection_write_buffer_bytes": ("histogram", _ROUTE),
    "sluice_write_buffer_bytes": ("gauge", frozenset()),
    "sluice_backpressure_waits_total": ("counter", _ROUTE),
    "sluice_backpressure_wait_seconds": ("histogram", _ROUTE),
    "sluice_upstream_cancel_seconds": ("histogram", frozenset({"provider"})),
    "sluice_upstream_retries_total": ("counter", frozenset({"provider", "reason"})),
    "sluice_admission_rejections_total": ("counter", frozenset({"reason"})),
    "sluice_key_tokens_total": ("counter", frozenset({"key", "model", "type"})),
    "sluice_key_rejections_total": ("counter", frozenset({"key", "limit"})),
    "sluice_auth_failures_total": ("counter", frozenset({"reason"})),
    "sluice_key_budget_remaining_tokens": ("gauge", frozenset({"key"})),
    "sluice_key_token_budget_tokens": ("gauge", frozenset({"key"})),
    "sluice_quota_state_errors_total": ("counter", frozenset({"action"})),
    "sluice_stream_resumes_total": ("counter", _ROUTE),
    "sluice_stream_replayed_events_total": ("counter", _ROUTE),
    "sluice_detached_streams_active": ("gauge", frozenset()),
    "sluice_detached_stream_terminations_total": ("counter", frozenset({"reason"})),
    "sluice_spend_usd_total": ("counter", frozenset({"key", "model"})),
    "sluice_estimated_spend_usd_total": ("counter", frozenset({"key", "model"})),
    # request bodies (issue 26)
    "sluice_request_body_bytes_in_flight": ("gauge", frozenset()),
    "sluice_request_bodies_in_flight": ("gauge", frozenset()),
    "sluice_request_body_budget_bytes": ("gauge", frozenset()),
    "sluice_request_body_budget_waits_total": ("counter", frozenset()),
    "sluice_request_body_budget_rejections_total": ("counter", frozenset()),
    "sluice_build_info": ("gauge", frozenset({"version"})),
    # deployments (gateway/routing)
    "sluice_deployment_streams_open": ("gauge", _DEPLOYMENT),
    "sluice_deployment_requests_total": ("counter", _DEPLOYMENT),
    "sluice_deployment_failures_total": ("counter", _DEPLOYMENT | {"reason"}),
    "sluice_deployment_upstream_time_to_first_token_seconds": ("histogram", _DEPLOYMENT),
    "sluice_deployment_inter_token_latency_seconds": ("histogram", _DEPLOYMENT),
    "sluice_deployment_cooling_down": ("gauge", _DEPLOYMENT),
    "sluice_deployment_cooldowns_total": ("counter", _DEPLOYMENT),
    "sluice_deployment_latency_estimate_seconds": ("gauge", _DEPLOYMENT),
    "sluice_deployment_queue_length": ("gauge", frozenset({"model"})),
    "sluice_deployment_queue_wait_seconds": ("histogram", frozenset({"model"})),
    "sluice_deployment_queue_rejections_total": ("counter", frozenset({"model", "reason"})),
    "up": ("gauge", frozenset()),
}
TARGET_LABELS = frozenset({"job", "instance"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def series_to_family(series: str) -> str | None:
    """The contract family a series name belongs to (``x_bucket`` -> ``x``), or None."""
    if series in CONTRACT and CONTRACT[series][0] != "histogram":
        return series
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and CONTRACT.get(base, ("", None))[0] == "histogram":
            return base
    return None


def series_labels(series: str) -> frozenset[str]:
    """Labels a contract series may carry (target labels, and ``le`` on buckets)."""
    family = series_to_family(series)
    assert family is not None, series
    extra = {"le"} if series.endswith("_bucket") else set()
    return CONTRACT[family][1] | TARGET_LABELS | extra


# --------------------------------------------------------------------- PromQL

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<punct>[{}()])
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,])
    """,
    re.VERBOSE,
)
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_AGGREGATORS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile"}
)
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Selector:
    """One instant/range vector selector: ``name{matchers}``."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)

    def promql(self) -> str:
        inner = ", ".join(f"{label}{op}{json.dumps(value)}" for label, op, value in self.matchers)
        return f"{self.name}{{{inner}}}" if inner else self.name


def tokenize(expr: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot tokenize {expr[pos : pos + 20]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            out.append(Token(kind, m.group()))
    return out


def _unquote(s: str) -> str:
    if s.startswith("`"):
        return s[1:-1]
    return json.loads('"' + s[1:-1].replace('\\"', '"').replace('"', '\\"') + '"')


def parse_query(expr: str) -> tuple[list[Selector], set[str]]:
    """Metric selectors in ``expr``, and every label named in a by/without/on clause.

    Raises ValueError for anything this small parser does not understand, so a
    query it cannot read fails the test instead of passing unchecked.
    """
    toks = tokenize(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()
    i = 0
    depth = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        if t.kind != "ident":
            if t.text == "{":
                raise ValueError(f"selector without a metric name in {expr!r}")
            i += 1
            continue
        if t.text in _GROUPING:
            if nxt is None or nxt.text != "(":
                if t.text.startswith("group_"):  # the label list is optional there
                    i += 1
                    continue
                raise ValueError(f"{t.text} without a label list in {expr!r}")
            j = i + 2
            while toks[j].text != ")":
                if toks[j].kind == "ident":
                    grouping.add(toks[j].text)
                elif toks[j].text != ",":
                    raise ValueError(f"bad label list in {expr!r}")
                j += 1
            i = j + 1
            continue
        if t.text in _KEYWORDS:
            i += 1
            continue
        if (nxt is not None and nxt.text == "(") or t.text in _AGGREGATORS:
            i += 1  # a function or aggregation operator
            continue
        matchers: list[tuple[str, str, str]] = []
        j = i + 1
        if nxt is not None and nxt.text == "{":
            j = i + 2
            while toks[j].text != "}":
                label, op, value = toks[j], toks[j + 1], toks[j + 2]
                if label.kind != "ident" or op.text not in ("=", "!=", "=~", "!~"):
                    raise ValueError(f"bad matcher in {expr!r}")
                if value.kind != "string":
                    raise ValueError(f"bad matcher value in {expr!r}")
                matchers.append((label.text, op.text, _unquote(value.text)))
                j += 3
                if toks[j].text == ",":
                    j += 1
            j += 1
        selectors.append(Selector(t.text, tuple(matchers)))
        i = j
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in {expr!r}")
    return selectors, grouping


def substitute(expr: str, rate_interval: str = "1m") -> str:
    """Grafana's template variables as the dashboard's "All" selection expands them."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("${model}", ".*")
        .replace("$model", ".*")
        .replace("${provider}", ".*")
        .replace("$provider", ".*")
    )


def split_threshold(expr: str) -> tuple[str, str | None]:
    """``signal > 5`` -> (``signal``, ``> 5``): the alert's signal without its threshold."""
    m = re.fullmatch(r"(?s)(.*?)\s*((?:>|<|>=|<=|==|!=)\s*[0-9.eE+-]+)\s*", expr)
    if m is None:
        return expr.strip(), None
    return m.group(1).strip(), m.group(2)


# --------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class Panel:
    id: int
    title: str
    row: str
    raw: dict[str, Any]

    @property
    def exprs(self) -> list[str]:
        return [t["expr"] for t in self.raw.get("targets", [])]


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and panels nested in collapsed rows."""
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def dashboard_panels(dashboard: dict[str, Any]) -> list[Panel]:
    """Non-row panels with the title of the row they sit under."""
    out: list[Panel] = []
    row = ""
    for p in dashboard["panels"]:
        if p["type"] == "row":
            row = p["title"]
            for nested in p.get("panels", []):
                out.append(Panel(nested["id"], nested["title"], row, nested))
            continue
        out.append(Panel(p["id"], p["title"], row, p))
    return out


def load_dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "dashboards" / "sluice.json").read_text())


def load_alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((GRAFANA / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


class GrafanaKit:
    """Paths, the metric contract and the PromQL helpers, for the test modules."""

    repo = REPO
    grafana = GRAFANA
    contract = CONTRACT
    target_labels = TARGET_LABELS
    series_to_family = staticmethod(series_to_family)
    series_labels = staticmethod(series_labels)
    parse_query = staticmethod(parse_query)
    substitute = staticmethod(substitute)
    split_threshold = staticmethod(split_threshold)
    iter_panels = staticmethod(iter_panels)
    dashboard_panels = staticmethod(dashboard_panels)
    load_dashboard = staticmethod(load_dashboard)
    load_alert_rules = staticmethod(load_alert_rules)


@pytest.fixture(scope="session")
def kit() -> type[GrafanaKit]:
    return GrafanaKit


@pytest.fixture(scope="session")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="session")
def alert_rules() -> list[dict[str, Any]]:
    return load_alert_rules()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``panel`` and ``alert_rule`` arguments run once per dashboard panel / alert."""
    if "panel" in metafunc.fixturenames:
        panels = dashboard_panels(load_dashboard())
        metafunc.parametrize("panel", panels, ids=[f"{p.id}-{p.title}" for p in panels])
    if "alert_rule" in metafunc.fixturenames:
        rules = load_alert_rules()
        metafunc.parametrize("alert_rule", rules, ids=[r["alert"] for r in rules])


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(
            f"{name} not found: install Debian's prometheus package (`make promtool`)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _binary("prometheus")
