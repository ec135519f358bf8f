"""Fixtures: every registry test runs on the embedded default and on the real team stack.

The team stack (PostgreSQL 15, moto's S3 server, an MLflow tracking server) is started once per
session on free loopback ports by ``tests/support/devstack.py`` and stopped by PID at the end.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.devstack import Stack

_CLEARED_PREFIXES = ("MODELYARD_", "MLFLOW_", "AWS_", "ENVIRONMENT")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules holding a ``slow`` test run first, whole (their module fixtures are built once).

    xdist's worksteal hands each worker a contiguous share and lets idle workers take tests from
    the end of the others' shares: with the long end-to-end tests at the front, the run ends on
    short tests that balance out instead of on a 90-second one that started last. The order is
    the same on every worker, as xdist requires.
    """
    slow = {item.module.__name__ for item in items
            if item.module is not None and item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module is None or item.module.__name__ not in slow)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with Stack() as running:
        yield running


@pytest.fixture(scope="session")
def clouds() -> Iterator[Any]:
    """The GCS and Azure Blob emulators, started once per session (tests/support/clouds.py)."""
    from tests.support.clouds import Emulators

    with Emulators() as running:
        yield running


@pytest.fixture
def cloud_env(clouds: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """This test reaches the emulators through each cloud's own variables."""
    for key, value in clouds.env().items():
        monkeypatch.setenv(key, value)
    return clouds


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session: the inferred pip requirements are worked out once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cache: Path) -> Path:
    """Each test gets its own HOME, working folder and a clean environment."""
    for var in list(os.environ):
        if var.startswith(_CLEARED_PREFIXES):
            monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MODELYARD_USER", "alice")
    monkeypatch.setenv("MODELYARD_CACHE_DIR", str(shared_cache))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")  # no network calls home from DVC
    monkeypatch.chdir(work)
    # MLflow keeps its tracking / registry URIs, active experiment and runs in process globals
    # (tests that play a plain MLflow user set them); start every test from clean ones. Only if
    # something loaded MLflow already: unit tests never pay for importing it.
    if "mlflow" in sys.modules:
        import mlflow
        from mlflow.tracking import fluent

        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        fluent._active_experiment_id = None
    return work


@pytest.fixture(scope="session")
def empty_embedded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded MLflow database with its schema migrated once (seconds saved per test)."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("template-db")
    db = folder / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    import mlflow

    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    return db


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which backend a test runs on; the server half sets the team stack's environment."""
    if request.param == "embedded":
        import shutil

        template: Path = request.getfixturevalue("empty_embedded_db")
        target = Path.cwd() / ".modelyard"
        target.mkdir(exist_ok=True)
        shutil.copyfile(template, target / "mlflow.db")
    if request.param == "server":
        running: Stack = request.getfixturevalue("stack")
        for key, value in running.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("MODELYARD_VAULT", f"s3://{running.bucket}/vault-{uuid.uuid4().hex[:8]}")
    return str(request.param)


@pytest.fixture
def make_yard(backend: str) -> Callable[..., Any]:
    from modelyard import Yard

    def factory(**overrides: Any) -> Any:
        return Yard(**overrides)

    return factory


@pytest.fixture
def yard(make_yard: Callable[..., Any]) -> Any:
    return make_yard()


@pytest.fixture
def name() -> str:
    """A model name no other test uses (the server is shared by the whole session)."""
    return f"model-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def trained() -> dict[str, Any]:
    """A small fitted RandomForest and its data, shared by the session."""
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    features, target = make_classification(n_samples=300, n_features=5, random_state=0)
    frame = pd.DataFrame(features, columns=["tenure", "charges", "calls", "age", "score"])
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(frame, target)
    return {"model": model, "X": frame, "y": target}


@pytest.fixture
def stack_or_none(backend: str, request: pytest.FixtureRequest) -> Stack | None:
    """The running team stack on the server backend, None on the embedded one."""
    return request.getfixturevalue("stack") if backend == "server" else None
