"""The MLflow and S3 edges: no process-wide state, bounded failures that name the part,
safe first use of SQLite under concurrency, stage mirroring, permission errors.

Registry behaviour runs against the real embedded default and the real team stack. The
misbehaving tracking servers (refusing, answering 503, 403, dying mid-session) are small stdlib
HTTP servers on loopback: a real socket and real HTTP, since such a server cannot be made from
the real MLflow server on demand.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.backend.tracking import Tracking
from modelyard.core.settings import Settings
from modelyard.errors import BackendError, PermissionDenied, StorageError, YardError
from modelyard.store.s3 import S3Store
from tests.support import processes
from tests.support.devstack import free_port
from tests.support.workers import register_rounds


def _model_dir(root: Path) -> Path:
    folder = root / "model-files"
    (folder / "sub").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "sub" / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    return folder


def _register_logged_model(tracking: Tracking, tmp_path: Path, name: str) -> tuple[str, str]:
    """Run -> logged model -> upload -> registered version, through Tracking only."""
    run_id = tracking.create_run("edges", "edge-run", {"purpose": "test"})
    model_id, _ = tracking.create_logged_model("edges", run_id, "sklearn", {"a": "1"})
    tracking.upload_logged_model(model_id, run_id, _model_dir(tmp_path))
    tracking.end_run(run_id)
    tracking.ensure_registered_model(name)
    tracking.create_version(name, f"models:/{model_id}", run_id, {"k": "v"}, None, model_id)
    return run_id, model_id


# -- 1. no process-wide state ------------------------------------------------------------------
def _yard_home(tmp_path: Path, template: Path) -> Path:
    """A yard folder whose database is a copy of the session's migrated empty one."""
    import shutil

    home = tmp_path / "yard"
    home.mkdir()
    shutil.copyfile(template, home / "mlflow.db")
    return home


def test_tracking_never_touches_mlflow_globals_or_environment(
    tmp_path: Path, empty_embedded_db: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    # The user has their own tracking URI; modelyard must neither change nor use it.
    user_db = tmp_path / "user" / "mlflow.db"
    mine = f"sqlite:///{user_db}"
    (tmp_path / "user").mkdir()
    mlflow.set_tracking_uri(mine)
    try:
        before_uri, before_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        before_env = dict(os.environ)
        home = _yard_home(tmp_path, empty_embedded_db)
        tracking = Tracking(Settings(home=str(home)))
        run_id, model_id = _register_logged_model(tracking, tmp_path, "edge-model")
        tracking.set_alias("edge-model", "champion", 1)
        assert [v.version for v in tracking.versions("edge-model")] == [1]
        record = tracking.get_version("edge-model", 1)
        assert record.source == f"models:/{model_id}" and record.model_id == model_id
        for uri, subfolder in ((f"models:/{model_id}", ""), ("models:/edge-model/1", ""),
                               ("models:/edge-model@champion", ""),
                               (f"runs:/{run_id}/model", "model")):
            dest = tmp_path / "down" / uri.replace(":", "_").replace("/", "_")
            local = tracking.artifacts.download(uri, dest)
            assert local == (dest / subfolder if subfolder else dest), uri
            assert (local / "sub" / "weights.bin").read_bytes() == b"\x00\x01" * 1000, uri
        tracking.artifacts.delete_artifacts(tracking.artifact_location(record))

        assert mlflow.get_tracking_uri() == before_uri == mine
        assert mlflow.get_registry_uri() == before_registry
        assert dict(os.environ) == before_env
        # Everything landed in the yard's database; the user's was never even opened.
        assert not user_db.exists()
        yard_db = f"sqlite:///{home / 'mlflow.db'}"
        assert [m.name for m in MlflowClient(yard_db).search_registered_models()] == [
            "edge-model"]
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def test_s3_artifacts_use_the_configured_endpoint_without_the_environment(
    tmp_path: Path, stack: Any, monkeypatch: pytest.MonkeyPatch, empty_embedded_db: Path
) -> None:
    """Artifacts on s3:// with a custom endpoint: the endpoint comes from the settings only."""
    env = stack.env()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(var, env[var])
    assert "MLFLOW_S3_ENDPOINT_URL" not in os.environ
    prefix = f"edge-artifacts-{os.urandom(4).hex()}"
    settings = Settings(home=str(_yard_home(tmp_path, empty_embedded_db)),
                        artifact_location=f"s3://{stack.bucket}/{prefix}",
                        s3_endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"])
    before_env = dict(os.environ)
    tracking = Tracking(settings)
    _, model_id = _register_logged_model(tracking, tmp_path, "s3-model")
    location = tracking.artifact_location(tracking.get_version("s3-model", 1))
    assert location.startswith(f"s3://{stack.bucket}/{prefix}/")
    local = tracking.artifacts.download(f"models:/{model_id}", tmp_path / "back")
    assert (local / "sub" / "weights.bin").read_bytes() == b"\x00\x01" * 1000
    listed = stack.s3_client().list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
    assert listed.get("KeyCount", 0) >= 2
    tracking.artifacts.delete_artifacts(location)
    listed = stack.s3_client().list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
    assert listed.get("KeyCount", 0) == 0
    assert dict(os.environ) == before_env


# -- 2. bounded failures that name the part ----------------------------------------------------
class _Stub(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that answers every request with one status and body."""

    daemon_threads = True

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body, self.requests = status, body, 0
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                stub.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                payload = json.dumps(stub.body).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"http://user:secret@127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def stub() -> Iterator[Any]:
    servers: list[_Stub] = []

    def start(status: int = 200, body: dict[str, Any] | None = None) -> _Stub:
        servers.append(_Stub(status, body or {}))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


CALLS = {
    "list_models": lambda t: t.list_models(),
    "get_model": lambda t: t.get_model("churn"),
    "versions": lambda t: t.versions("churn"),
    "create_run": lambda t: t.create_run("exp", None, {}),
    "create_version": lambda t: t.create_version("churn", "models:/m-1", None, {}, None, None),
    "set_alias": lambda t: t.set_alias("churn", "champion", 1),
    "set_stage_field": lambda t: t.set_stage_field("churn", 1, "production"),
    "download": lambda t: t.artifacts.download("models:/churn/1", Path("down")),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_closed_port_fails_fast_naming_the_redacted_uri(call: str) -> None:
    port = free_port()
    tracking = Tracking(Settings(tracking_uri=f"http://user:secret@127.0.0.1:{port}"))
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        CALLS[call](tracking)
    elapsed = time.monotonic() - started
    message = info.value.message
    assert elapsed < 10, f"{call} took {elapsed:.1f} s"
    assert f"http://user:***@127.0.0.1:{port}" in message, message
    assert "secret" not in message and "\n" not in message
    assert "tracking server" in message and "connection refused" in message, message


def test_server_answering_503_is_retried_a_capped_number_of_times(stub: Any) -> None:
    server = stub(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "down"})
    tracking = Tracking(Settings(tracking_uri=server.uri), max_retries=2)
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        tracking.list_models()
    assert time.monotonic() - started < 10
    assert server.requests == 3, "one request and two retries"
    assert "HTTP 503" in info.value.message and "secret" not in info.value.message


def test_server_dying_mid_session_fails_fast(stub: Any) -> None:
    server = stub(200, {"registered_models": []})
    tracking = Tracking(Settings(tracking_uri=server.uri))
    assert tracking.list_models() == []
    server.stop()
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        tracking.list_models()
    assert time.monotonic() - started < 10
    assert "connection refused" in info.value.message


def test_timeout_and_retries_are_per_tracking(stub: Any) -> None:
    """A slow answer: one Tracking waits its own timeout, and MLflow's env policy is unused."""
    server = stub(503, {})
    quick = Tracking(Settings(tracking_uri=server.uri), timeout=2.0, max_retries=0)
    with pytest.raises(BackendError):
        quick.list_models()
    assert server.requests == 1


def test_s3_store_on_a_closed_port_fails_fast_naming_the_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    store = S3Store("bucket", "vault", f"http://key:hunter2@127.0.0.1:{port}")
    for action in (lambda: store.put_bytes("a", b"1"), lambda: store.get_bytes("a"),
                   lambda: store.list("a/"), store.check):
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            action()
        assert time.monotonic() - started < 10
        message = info.value.message
        assert f"S3 endpoint http://key:***@127.0.0.1:{port} unreachable" in message, message
        assert "hunter2" not in message and "tracking" not in message.lower()


def test_dead_s3_artifact_endpoint_is_blamed_not_the_tracking_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_embedded_db: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    home = _yard_home(tmp_path, empty_embedded_db)
    tracking = Tracking(Settings(home=str(home), artifact_location="s3://b/p",
                                 s3_endpoint_url=f"http://127.0.0.1:{port}"))
    run_id = tracking.create_run("edges", None, {})
    model_id, _ = tracking.create_logged_model("edges", run_id, "sklearn", {})
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        tracking.upload_logged_model(model_id, run_id, _model_dir(tmp_path))
    assert time.monotonic() - started < 10
    assert f"S3 endpoint http://127.0.0.1:{port} unreachable" in info.value.message
    with pytest.raises(StorageError, match=f"S3 endpoint http://127.0.0.1:{port} unreachable"):
        tracking.artifacts.download("s3://b/p/some-model", tmp_path / "down")


# -- 5. permission problems are not outages -----------------------------------------------------
def test_permission_denied_is_translated_naming_model_and_operation() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

    tracking = Tracking(Settings(tracking_uri="http://bob:pw@mlflow.example:5000"))
    exc = MlflowException("Permission denied", error_code=PERMISSION_DENIED)
    error = tracking._translated(exc, "churn", "set alias 'champion'")
    assert isinstance(error, PermissionDenied)
    assert (error.exit_code, error.http_status) == (9, 403)
    assert "churn" in error.message and "set alias 'champion'" in error.message
    assert "pw" not in error.message.replace("permission", "")


def test_a_real_403_answer_is_permission_denied(stub: Any) -> None:
    server = stub(403, {"error_code": "PERMISSION_DENIED", "message": "no"})
    tracking = Tracking(Settings(tracking_uri=server.uri))
    with pytest.raises(PermissionDenied) as info:
        tracking.get_model("churn")
    assert "churn" in info.value.message and "read the model" in info.value.message
    assert server.requests == 1, "a refusal is not retried"
    assert "secret" not in info.value.message


# -- 3. SQLite: busy retries and concurrent first use ------------------------------------------
def test_database_is_locked_is_retried_then_succeeds(tmp_path: Path) -> None:
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    tracking = Tracking(Settings(home=str(tmp_path / "yard")))  # never opened here
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            cause = sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database is locked"))
            raise MlflowException(str(cause), error_code="TEMPORARILY_UNAVAILABLE") from cause
        return "done"

    assert tracking.call(flaky) == "done" and len(attempts) == 3

    def always() -> None:
        raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    with pytest.raises(BackendError, match="locked"):
        tracking.call(always)


ROUNDS = 2  # the race is at first use; `python benchmarks/concurrency.py` runs 8 x 10


@pytest.mark.slow
def test_eight_processes_on_a_fresh_embedded_folder(tmp_path: Path) -> None:
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from modelyard import Yard

    folder = str(tmp_path / "fresh")
    assert not Path(folder).exists()
    # One small model saved once; each process registers that folder (it imports neither
    # scikit-learn nor a serialiser: the race is on the registry, not on the model).
    features = np.random.default_rng(0).normal(size=(20, 3))
    model_dir = tmp_path / "model"
    mlflow.sklearn.save_model(LogisticRegression().fit(features, features[:, 0] > 0),
                              str(model_dir), pip_requirements=["scikit-learn"],
                              serialization_format="cloudpickle")
    # Eight processes of their own, forked from one that imported modelyard and MLflow once.
    context = processes.context()
    barrier = context.Barrier(8)
    results = context.Queue()
    env, cwd = dict(os.environ), os.getcwd()
    workers = [context.Process(target=processes.in_env,
                               args=(env, cwd, None, register_rounds, folder, str(model_dir), i,
                                     barrier, results, ROUNDS))
               for i in range(8)]
    for worker in workers:
        worker.start()
    started = time.monotonic()
    done, errors, registered = 0, [], []
    while done + len(errors) < 8:
        index, what, detail = results.get(timeout=900)
        if what == "done":
            done += 1
        elif what == "error":
            errors.append((index, detail))
        else:
            registered.append((index, what, detail))
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.join(timeout=60)
    assert not errors, errors
    print(f"\n8 processes x {ROUNDS} registrations on a fresh folder: {elapsed:.1f} s")
    versions = Yard(home=folder).versions("m")
    assert len(versions) == 8 * ROUNDS
    semvers = [v.tags["modelyard.semver"] for v in versions]
    assert len(set(semvers)) == 8 * ROUNDS
    assert sorted(v.version for v in versions) == list(range(1, 8 * ROUNDS + 1))
    # Semvers rise with MLflow's version numbers, as they do on a server
    # (test_registration_faults.py).
    parsed = [tuple(int(p) for p in v.tags["modelyard.semver"].split("."))
              for v in sorted(versions, key=lambda v: v.version)]
    assert parsed == sorted(parsed), semvers


# -- 4. stage field mirroring -------------------------------------------------------------------
def test_stage_field_makes_stage_uris_load(backend: str, trained: dict[str, Any], name: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.pyfunc
    from mlflow import MlflowClient

    from modelyard import Yard

    yard = Yard()
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    second = yard.register(trained["model"], name, params={"n": 2},
                           input_example=trained["X"].head(3))
    with pytest.raises(YardError):
        yard.tracking.set_stage_field(name, second.version, "prod")
    yard.tracking.set_stage_field(name, second.version, "production")
    yard.tracking.set_stage_field(name, 1, "staging")

    client = MlflowClient(yard.tracking.tracking_uri, yard.tracking.registry_uri)
    stages = {int(v.version): v.current_stage
              for v in client.search_model_versions(f"name = '{name}'")}
    assert stages == {1: "Staging", second.version: "Production"}
    # MLflow resolves models:/NAME/Stage through the process's tracking URI, as a serving
    # script configured by its environment does.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", yard.tracking.tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/Production")
    assert loaded.metadata.model_uuid
    assert len(loaded.predict(trained["X"].head(4))) == 4
    yard.tracking.set_stage_field(name, second.version, "archived")
    assert client.get_model_version(name, str(second.version)).current_stage == "Archived"


def test_dead_s3_behind_the_server_names_the_artifact_store(
    tmp_path: Path, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server proxies artifacts to S3; with S3 down the upload fails in bounded time and
    names the server's artifact store. Each answer takes the server's own S3 retries (seconds,
    outside the client's control), so the bound is the client's: attempts x timeout."""
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    tracking = Tracking(Settings(tracking_uri=stack.tracking_uri))
    run_id = tracking.create_run("edges", None, {})
    model_id, location = tracking.create_logged_model("edges", run_id, "sklearn", {})
    assert location.startswith("mlflow-artifacts:")
    stack.stop_s3()
    try:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            tracking.upload_logged_model(model_id, run_id, _model_dir(tmp_path))
        elapsed = time.monotonic() - started
    finally:
        stack.start_s3()
    message = info.value.message
    # The server answers 5xx once its own S3 retries give up; on a busy machine those outlast
    # the client's timeout. Either way the message names the part that failed.
    assert "artifact store of the tracking server" in message, message
    assert "HTTP 5" in message or "no answer within" in message, message
    assert elapsed < 3 * tracking.timeout + 5, f"{elapsed:.1f} s"
    print(f"\nS3 down behind the server: {elapsed:.1f} s: {message}")
