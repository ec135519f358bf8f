"""deploy/grafana/modelyard.json queries only series modelyard exports: the names are read from
what serving's ``Metrics`` and health's ``to_prometheus`` really write, not from a copy."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy import files

DASHBOARD = files.DEPLOY / "grafana" / "modelyard.json"
# A metric name in PromQL: modelyard_... not followed by ( (no function is named so).
_NAME = re.compile(r"\bmodelyard_[a-zA-Z0-9_]+\b")


def _series_names(exposition: str) -> set[str]:
    """Every sample name an exposition text holds (counters' _total, histograms' _bucket...)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {sample.name for family in text_string_to_metric_families(exposition)
            for sample in family.samples}


def serving_series() -> set[str]:
    """What `modelyard serve`'s /metrics writes once every series has a value."""
    from modelyard.serving.metrics import Metrics

    metrics = Metrics("churn")
    bound = metrics.bind("3", "1.2.0", "production", "onnx")
    bound.observe(latency=0.004, rows=2, confidence=[0.9, 0.7])
    bound.batch(2)
    bound.error("invalid_input", latency=0.001)
    bound.serving("production", True)
    metrics.reload_failures.labels("churn", "production", "4", "IntegrityError").inc()
    metrics.shadow_dropped.labels("churn").inc()
    text, _ = metrics.render()
    return _series_names(text.decode())


def health_series() -> set[str]:
    """What `modelyard health --prometheus` writes when checks carry a latency and a figure."""
    from modelyard.incidents.health import HealthCheck, HealthReport

    report = HealthReport("degraded", 1, [
        HealthCheck("registry", "tracking server", "ok", "answers", seconds=0.02),
        HealthCheck("backup age", "churn", "degraded", "3 days", value=259200.0),
    ])
    return _series_names(report.to_prometheus())


def _queries(node: Any) -> list[str]:
    """Every PromQL text in the dashboard: panel targets and template variable queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            elif key == "query" and isinstance(value, dict) and "query" in value:
                found.append(value["query"])
            else:
                found += _queries(value)
    elif isinstance(node, list):
        for value in node:
            found += _queries(value)
    return found


def test_every_metric_the_dashboard_queries_is_one_modelyard_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _queries(dashboard)
    assert len(queries) >= 15
    queried = {name for query in queries for name in _NAME.findall(query)}
    exported = serving_series() | health_series()
    assert queried, queries
    assert not queried - exported, (
        f"the dashboard queries series modelyard does not export: {sorted(queried - exported)}")


def test_the_dashboard_covers_serving_and_health() -> None:
    """Each metric family of both sources has a panel (a new one shows up here to be drawn)."""
    queried = {name for q in _queries(json.loads(DASHBOARD.read_text()))
               for name in _NAME.findall(q)}

    def family(name: str) -> str:
        return re.sub(r"_(total|bucket|count|sum|created)$", "", name)

    for name in serving_series() | health_series():
        if not name.endswith("_created"):
            assert family(name) in {family(q) for q in queried}, name


def test_a_misspelled_metric_is_caught() -> None:
    exported = serving_series() | health_series()
    assert "modelyard_requests_total" in exported
    assert "modelyard_request_total" not in exported
    assert "modelyard_health_status" in exported


def test_the_dashboard_is_grafana_json_with_panels_on_the_prometheus_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "modelyard"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
        for query in _queries(panel):
            for used in re.findall(r"\$(\w+)", query):
                assert used in variables or used.startswith("__"), (panel["title"], used)
