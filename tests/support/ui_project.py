"""A small registry like the demo's, for the dashboard's tests: three versions of one model
(production, staging, one archived), gates, a backup, a snapshot, a recorded drill and A/B
traffic captured by the serving app, plus a model registered around modelyard whose name
and tag hold HTML."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# MLflow refuses '/' and ':' in a model name: a name that runs script without them.
XSS = "<img src=x onerror=alert(1)>"
XSS_TAG = "<script>alert(2)</script>"


@dataclass
class UiProject:
    name: str
    versions: dict[str, int]  # semver -> MLflow number
    production: str
    staging: str
    snapshot: str
    requests: int


def build(yard: Any, name: str, trained: dict[str, Any], *, traffic: int = 60,
          foreign: bool = True) -> UiProject:
    """Register, promote, back up, snapshot, drill (its record) and serve: what a page shows."""
    from sklearn.ensemble import RandomForestClassifier

    from modelyard.store.vault import drill_key

    frame, labels = trained["X"], trained["y"]
    first = yard.register(trained["model"], name, metrics={"accuracy": 0.81, "roc_auc": 0.86},
                          params={"n_estimators": 10}, input_example=frame.head(3),
                          tags={"owner": XSS_TAG})
    yard.promote(first.name, first.version, to="production", force=True, reason="first review")
    other = RandomForestClassifier(n_estimators=4, random_state=2).fit(frame, labels)
    second = yard.register(other, name, metrics={"accuracy": 0.84, "roc_auc": 0.88},
                           params={"n_estimators": 4}, input_example=frame.head(3))
    yard.promote(name, second.version, to="production", force=True, reason="more trees")
    third = yard.register(trained["model"], name, metrics={"accuracy": 0.86, "roc_auc": 0.9},
                          params={"n_estimators": 12}, input_example=frame.head(3))
    yard.promote(name, third.version, to="staging", force=True, reason="candidate")
    yard.protection.backup([(name, None)])
    snapshot = f"{name}-ui"
    yard.protection.snapshots.create(snapshot, models=[name], message="ui test")
    # A drill's record as the runner writes it (drills themselves are tested in test_drills)
    yard.vault.store.put_bytes(drill_key(f"20260101T000000Z-model-corruption-{name[-6:]}"),
                               json.dumps({
                                   "scenario": "model-corruption", "model": name, "ok": True,
                                   "layer": "vault", "via": "copy", "mttr": 1.25,
                                   "detected_by": ["verify"], "sandbox": True,
                                   "at": "2026-01-01T00:00:00+00:00"}).encode())
    served = _serve(yard, name, frame, labels, traffic) if traffic else 0
    if foreign:
        _register_around(yard, f"{XSS}-{name[-6:]}")
    return UiProject(name, {str(mv.semver): int(mv.version) for mv in (first, second, third)},
                     str(second.semver), str(third.semver), snapshot, served)


def _serve(yard: Any, name: str, frame: Any, labels: Any, count: int) -> int:
    """A/B traffic (production 70, staging 30) with feedback, captured to the vault."""
    from fastapi.testclient import TestClient

    from modelyard.serving.app import create_app

    records = frame.head(count).to_dict(orient="records")
    app = create_app(yard, name, ab={"production": 70, "staging": 30}, capture_rate=1.0,
                     poll_interval=0)
    with TestClient(app) as client:
        for i, record in enumerate(records):
            reply = client.post("/predict", json={"instances": [record]},
                                headers={"X-Routing-Key": f"customer-{i}"})
            assert reply.status_code == 200, reply.text
            client.post("/feedback", json={"request_id": reply.json()["request_id"],
                                           "label": int(labels[i])})
    return len(records)


def _register_around(yard: Any, name: str) -> None:
    """A model MLflow's own client registers under a name modelyard refuses."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(yard.settings.resolved_tracking_uri)
    client.create_registered_model(name, tags={"note": XSS_TAG})
