"""health: exit 0 healthy, 1 degraded, 2 critical, proved by causing each state; Prometheus
text format; signed webhooks when the state changes and again on recovery."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import corrupt_version, run_cli


def _register(yard: Any, name: str, trained: dict[str, Any], stage: str) -> Any:
    mv = yard.register(trained["model"], name, metrics={"accuracy": 0.9},
                       input_example=trained["X"].head(5), pip_requirements=["scikit-learn"])
    yard.promote(name, mv.version, to=stage, force=True, reason="test")
    return mv




# health looks at every model of the registry: on the shared team server other tests leave
# broken models on purpose, so the states are proved on a registry of the test's own.
EMBEDDED = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


@EMBEDDED
def test_exit_codes_healthy_degraded_critical(yard: Any, name: str,
                                              trained: dict[str, Any]) -> None:
    _register(yard, name, trained, "production")
    _register(yard, name, trained, "staging")

    healthy = run_cli("health", "--json")
    assert healthy.returncode == 0, healthy.stdout
    report = json.loads(healthy.stdout)
    assert report["status"] == "healthy"
    checks = {(c["check"], c["target"]): c for c in report["checks"]}
    assert checks[("verified", f"{name}@production")]["level"] == "ok"
    assert checks[("audit chain", name)]["level"] == "ok"
    assert checks[("registry", yard.tracking.display_uri)]["seconds"] is not None

    corrupt_version(yard, name, "staging")
    degraded = run_cli("health", "--json")
    assert degraded.returncode == 1
    assert json.loads(degraded.stdout)["status"] == "degraded"

    corrupt_version(yard, name, "production")
    critical = run_cli("health")
    assert critical.returncode == 2
    assert "critical" in critical.stdout


@EMBEDDED
def test_prometheus_textfile(yard: Any, name: str, trained: dict[str, Any],
                             tmp_path: Path) -> None:
    _register(yard, name, trained, "production")
    out = run_cli("health", "--prometheus")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert "# TYPE modelyard_health_status gauge" in lines
    assert "modelyard_health_status 0" in lines
    assert any(line.startswith("modelyard_health_check_level{check=\"verified\",target=\""
                               f"{name}@production\"}} 0") for line in lines)
    target = tmp_path / "modelyard.prom"
    assert run_cli("health", "--prometheus", str(target)).returncode == 0
    assert "modelyard_health_status 0" in target.read_text()


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, Any], str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((json.loads(body), self.headers["X-Modelyard-Signature"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _health_posts() -> list[tuple[dict[str, Any], str]]:
    """The health webhooks (promotions post their own)."""
    return [(p, sig) for p, sig in _Hook.received if p.get("event") == "health"]


@pytest.fixture
def hook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


@EMBEDDED
def test_notify_on_change_and_on_recovery(make_yard: Any, name: str, trained: dict[str, Any],
                                          hook: str) -> None:
    yard = make_yard(webhooks=[hook], webhook_secret="s3cret")
    _register(yard, name, trained, "production")
    yard.load(name, "production")
    assert yard.incidents.health(notify=True).status == "healthy"
    assert _health_posts() == []  # healthy from the start: nothing to say

    corrupt_version(yard, name, "production")
    assert yard.incidents.health(notify=True).status == "critical"
    assert yard.incidents.health(notify=True).status == "critical"  # unchanged: no second post
    assert len(_health_posts()) == 1
    payload, signature = _health_posts()[0]
    assert payload["status"] == "critical" and payload["previous"] == "healthy"
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    assert signature == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()

    assert yard.incidents.recover(name).ok
    assert yard.incidents.health(notify=True).status == "healthy"
    assert [p["status"] for p, _ in _health_posts()] == ["critical", "healthy"]


def test_health_of_named_models_only(yard: Any, name: str, trained: dict[str, Any]) -> None:
    """``health --model NAME`` checks that model alone, whatever else the registry holds
    (on the shared team server, other tests' broken models)."""
    _register(yard, name, trained, "production")
    healthy = run_cli("health", "--model", name, "--json")
    assert healthy.returncode == 0, healthy.stdout
    report = json.loads(healthy.stdout)
    assert report["status"] == "healthy"
    per_model = {c["target"].split("@")[0] for c in report["checks"]
                 if c["check"] in ("verified", "audit chain", "audited holders")}
    assert per_model == {name}
    corrupt_version(yard, name, "production")
    critical = run_cli("health", "--model", name)
    assert critical.returncode == 2 and "critical" in critical.stdout
    refused = run_cli("health", "--model", "no/such model")
    assert refused.returncode == 2 and "invalid model name" in refused.stderr
