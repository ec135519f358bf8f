"""What plain MLflow sees, registering existing models, the load fallback chain, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import BackendError, NotFound
from tests.support.helpers import run_cli


def test_plain_mlflow_loads_and_sees_tags(yard: Any, name: str, trained: dict[str, Any]) -> None:
    import mlflow
    from mlflow import MlflowClient

    mv = yard.register(trained["model"], name, metrics={"accuracy": 0.93},
                       input_example=trained["X"].head(3))
    yard.promote(name, mv.version, to="staging", reason="test")
    yard.promote(name, mv.version, to="production", reason="test")
    row = next(r for r in yard.list_models() if r["name"] == name)
    assert (row["versions"], row["latest"], row["production"], row["staging"]) == (
        1, "1.0.0", "v1.0.0", None)
    uri = yard.tracking.tracking_uri
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}@production")
    assert list(model.predict(trained["X"].head(4))) == list(
        trained["model"].predict(trained["X"].head(4)))
    plain = MlflowClient(uri).get_model_version(name, str(mv.version))
    assert plain.tags["modelyard.semver"] == "1.0.0"
    assert plain.tags["modelyard.stage"] == "production"
    assert plain.tags["modelyard.manifest_sha256"] == mv.manifest_sha256
    assert "production" in (plain.aliases or [])


def test_register_an_mlflow_logged_model_without_reupload(
    yard: Any, name: str, trained: dict[str, Any]
) -> None:
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(yard.tracking.tracking_uri)
    mlflow.set_experiment("plain")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            trained["model"], name="model", input_example=trained["X"].head(2),
            pip_requirements=["scikit-learn"], skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
    mv = yard.register_uri(info.model_uri, name)
    assert mv.semver == "1.0.0" and mv.source == info.model_uri
    assert yard.load(name, "latest").verified


def test_register_cli_from_saved_directory(yard: Any, name: str, trained: dict[str, Any],
                                           isolated: Path) -> None:
    import mlflow.sklearn

    saved = isolated / "saved"
    mlflow.sklearn.save_model(trained["model"], str(saved), input_example=trained["X"].head(2),
                              pip_requirements=["scikit-learn"],
                              skops_trusted_types=["sklearn.tree._tree.Tree"])
    done = run_cli("register", str(saved), "--name", name, "-m", "accuracy=0.8", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["semver"] == "1.0.0" and record["metrics"] == {"accuracy": 0.8}
    bad = run_cli("register", str(saved), "--name", name, "-m", "accuracy=high")
    assert bad.returncode == 2 and "not a number" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("register", str(isolated / "nothing"), "--name", name)
    assert missing.returncode == 2 and "no MLmodel" in missing.stderr
    assert [v.version for v in yard.versions(name)] == [1]

    out = isolated / "out"
    loaded = run_cli("load", f"{name}@latest", "--to", str(out), "--json")
    assert loaded.returncode == 0, loaded.stderr
    assert (out / "MLmodel").is_file() and json.loads(loaded.stdout)["verified"] is True
    details = run_cli("details", f"{name}@v1.0.0", "--json")
    assert json.loads(details.stdout)["metrics"] == {"accuracy": 0.8}
    unknown = run_cli("details", f"{name}@v9.9.9")
    assert unknown.returncode == 3 and "nearest: v1.0.0" in unknown.stderr


def test_load_falls_back_to_cache_then_train(
    make_yard: Any, name: str, trained: dict[str, Any], backend: str,
    stack_or_none: Any, isolated: Path,
) -> None:
    from tests.support.helpers import Forwarder

    forwarder = None
    if backend == "server":
        # The server is reached through a forwarder, so it can vanish behind the same URI.
        host, _, port = stack_or_none.tracking_uri.removeprefix("http://").partition(":")
        forwarder = Forwarder(host, int(port))
        yard = make_yard(tracking_uri=f"http://127.0.0.1:{forwarder.port}")
    else:
        yard = make_yard()
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    first = yard.load(name, "latest")
    assert first.source == "registry"

    # The registry goes away behind the same URI: the last verified copy still loads.
    if forwarder is not None:
        forwarder.stop()
    else:
        db = isolated / ".modelyard" / "mlflow.db"
        db.rename(db.with_suffix(".moved"))
        db.mkdir()  # a folder where the database was: SQLite cannot open it
        _forget_engines(yard.tracking.tracking_uri)
    down = make_yard(tracking_uri=yard.tracking.tracking_uri)
    with pytest.raises(BackendError):
        down.get(name, "latest")
    cached = down.load(name, "latest")
    assert cached.source == "cache" and cached.version.semver == "1.0.0"
    assert list(cached.model.predict(trained["X"].head(3))) == list(
        trained["model"].predict(trained["X"].head(3)))

    # Another registry never serves this one's cached copy.
    other = make_yard(tracking_uri=f"sqlite:///{isolated / 'other.db'}",
                      vault=str(isolated / "other-vault"))
    with pytest.raises(NotFound):
        other.load(name, "latest")

    # Nothing cached for this ref: the train callback is the last resort.
    fallback = down.load(name, "production", train=lambda: "trained-here")
    assert fallback.source == "train" and fallback.model == "trained-here"
    with pytest.raises(BackendError):
        down.load(name, "production")


def _forget_engines(uri: str) -> None:
    """MLflow keeps one SQLAlchemy engine per database URI for the whole process; drop it, so
    this process meets the broken database as a new process would."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Tracking

    for store in (Registry, Tracking):
        engine = store._engine_map.pop(uri, None)
        if engine is not None:
            engine.dispose()
