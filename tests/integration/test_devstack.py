"""The real-services stack starts, serves, restarts on the same ports and leaves nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request
from pathlib import Path

import psycopg2
import pytest

from tests.support import devstack
from tests.support.devstack import Service, Stack, _listens, find_postgres_bindir, free_port


def _health(url: str) -> int:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
        status: int = response.status
        return status


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_stack_lifecycle() -> None:
    stack = Stack(bucket="devstack-test")
    try:
        stack.start()
        root = stack.root
        pids = {service.name: service.pid for service in stack.services}
        assert set(pids) == {"postgres", "s3", "mlflow"}
        assert all(service.is_running() for service in stack.services)

        env = stack.env()
        assert env["MLFLOW_TRACKING_URI"] == stack.tracking_uri
        assert env["MLFLOW_S3_ENDPOINT_URL"] == stack.s3_endpoint_url
        assert env["MODELYARD_VAULT"] == "s3://devstack-test/vault"

        assert _health(stack.tracking_uri) == 200
        stack.s3_client().head_bucket(Bucket=stack.bucket)
        conn = psycopg2.connect(
            host="127.0.0.1", port=stack.pg_port, user="postgres", dbname="mlflow"
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM experiments")  # MLflow created its schema
                row = cur.fetchone()
                assert row is not None and row[0] >= 1
        finally:
            conn.close()

        # Fault helpers: S3 comes back empty on the same port, with the bucket recreated.
        s3_port = stack.s3_port
        stack.stop_s3()
        assert stack.s3 is not None and not stack.s3.is_running()
        assert _pid_gone(pids["s3"])
        stack.start_s3()
        assert stack.s3_port == s3_port
        stack.s3_client().head_bucket(Bucket=stack.bucket)

        mlflow_port = stack.mlflow_port
        stack.restart_mlflow()
        assert stack.mlflow is not None and stack.mlflow.pid != pids["mlflow"]
        assert stack.mlflow_port == mlflow_port
        assert _health(stack.tracking_uri) == 200
        pids = {service.name: service.pid for service in stack.services}
    finally:
        stack.stop()

    assert all(_pid_gone(pid) for pid in pids.values()), pids
    assert not root.exists()
    stack.stop()  # idempotent


def test_missing_postgres_says_what_to_install() -> None:
    with pytest.raises(RuntimeError, match="apt-get install postgresql-15"):
        find_postgres_bindir("/nonexistent/postgresql")


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_port_is_ours_only_if_our_process_group_listens(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        mine = Service("here", pid=os.getpgid(0), port=port, log_path=tmp_path / "log")
        assert _listens(mine)
        other = subprocess.Popen(["sleep", "30"], start_new_session=True)
        try:
            assert not _listens(Service("there", pid=other.pid, port=port,
                                        log_path=tmp_path / "log"))
        finally:
            other.kill()
            other.wait()


def test_a_taken_port_is_traded_for_another(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = [taken.getsockname()[1], free_port()]
        monkeypatch.setattr(devstack, "free_port", lambda: ports.pop(0))
        stack = Stack(root=tmp_path / "stack", bucket="ports")
        stack._make_root()
        try:
            stack._on_a_free_port("s3", stack.start_s3)
            assert not ports and stack.s3 is not None and stack.s3.is_running()
            stack.s3_client().head_bucket(Bucket="ports")
        finally:
            stack.stop()
