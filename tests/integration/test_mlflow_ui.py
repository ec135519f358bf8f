"""``modelyard mlflow-ui``: MLflow's own UI on the project's embedded registry, and ``doctor``'s
one-liner for it (the seeds looked with ``mlflow ui --backend-store-uri mlruns``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.devstack import free_port
from tests.support.helpers import run_cli


def _models(port: int) -> list[str] | None:
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/search"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return [m["name"] for m in json.load(answer).get("registered_models", [])]
    except OSError:
        return None


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_mlflow_ui_serves_the_projects_registry(yard: Any, name: str) -> None:
    from mlflow.tracking import MlflowClient

    # a registered model is all the UI needs to show (no model to train)
    MlflowClient(yard.settings.resolved_tracking_uri).create_registered_model(name)
    printed = run_cli("mlflow-ui", "--print", "--port", "5123")
    assert printed.returncode == 0
    db = Path.cwd() / ".modelyard" / "mlflow.db"
    assert f"--backend-store-uri sqlite:///{db}" in printed.stdout
    assert f"--default-artifact-root {(Path.cwd() / '.modelyard' / 'artifacts').as_uri()}" in (
        printed.stdout)
    doctor = run_cli("doctor", "--json")
    assert json.loads(doctor.stdout)["ui"].startswith("modelyard mlflow-ui  (or: mlflow ui ")

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "modelyard", "mlflow-ui", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 90
        seen = None
        while time.monotonic() < deadline and process.poll() is None:
            seen = _models(port)
            if seen is not None:
                break
            time.sleep(0.5)
        assert seen == [name], process.stderr.read().decode()[-2000:] if (
            process.poll() is not None and process.stderr) else seen
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_on_a_tracking_server_the_ui_is_the_server() -> None:
    env = {"MLFLOW_TRACKING_URI": "http://user:secret@tracking.example:5000"}
    result = run_cli("mlflow-ui", env=env)
    assert result.returncode == 0
    assert result.stdout.strip() == (
        "open http://user:***@tracking.example:5000 (the tracking server serves it)")
