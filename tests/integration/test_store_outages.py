"""Name the part that failed, and stop at the first failure of a part (#31.8).

The S3 endpoint of the devstack is really stopped (``Stack.stop_s3``): the vault, the backup
store and the tracking server's artifact store all lose it at once, as in an outage. Each
test starts it again (empty, bucket recreated) before it returns.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from modelyard.errors import ModelNotFound, RegistrationFailed
from tests.support.helpers import run_cli


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_backup_stops_at_the_first_failure_of_the_store_and_names_its_endpoint(
        make_yard: Any, name: str, trained: dict[str, Any], stack_or_none: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stack_or_none
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # the artifact store's fallback
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MODELYARD_BACKUP", f"s3://{stack.bucket}/backup-{uuid.uuid4().hex[:8]}")
    yard = make_yard()
    for number in range(4):
        yard.register(trained["model"], name, params={"n": number})
    stack.stop_s3()
    try:
        started = time.monotonic()
        done = run_cli("backup", name)
        elapsed = time.monotonic() - started
        listed = run_cli("--json", "backup", name)
    finally:
        stack.start_s3()
    assert done.returncode == 7, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("Error: backup stopped: ")
    assert f"S3 endpoint {stack.s3_endpoint_url} unreachable" in line
    assert line.endswith("; 0 version(s) backed up, 4 not")
    assert "testing" not in done.stdout + done.stderr  # the stack's access key and secret
    assert elapsed < 60, elapsed
    report = json.loads(listed.stdout)
    assert listed.returncode == 7
    assert stack.s3_endpoint_url in report["stopped"]
    assert report["versions"] == []
    assert sorted(f["version"] for f in report["failed"]) == [1, 2, 3, 4]
    assert all(f["error"] == f"not backed up: {report['stopped']}" for f in report["failed"])


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_an_s3_outage_during_registration_names_the_vaults_endpoint(
        make_yard: Any, name: str, trained: dict[str, Any], stack_or_none: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stack_or_none
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    yard = make_yard()
    stack.stop_s3()
    try:
        with pytest.raises(RegistrationFailed) as info:
            yard.register(trained["model"], name)
    finally:
        stack.start_s3()
    message = info.value.message
    # The vault's endpoint first: not only the tracking server's proxy and its HTTP 500.
    assert message.startswith(f"Registration of '{name}' failed and was rolled back: Object "
                              f"storage error: S3 "
                              f"endpoint {stack.s3_endpoint_url} unreachable"), message
    # The registration's journal (registry/journal.py) is the vault's first write: with S3
    # gone the registration stops there, before the tracking server is asked to copy anything.
    assert "the tracking server" not in message
    assert "testing" not in message
    with pytest.raises(ModelNotFound):  # nothing of it is visible
        yard.versions(name)


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_backup_all_to_a_dead_endpoint_stops_at_its_first_failure(
        make_yard: Any, name: str, trained: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The vault is the local folder; the backup store's S3 endpoint refuses connections.
    Every look-up queued behind the first failure used to run (and fail, after its retries)
    before the error came out."""
    from tests.support.devstack import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    for key, value in (("AWS_ACCESS_KEY_ID", "AKIASECRETKEY"), ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
                       ("AWS_DEFAULT_REGION", "us-east-1"),
                       ("MODELYARD_BACKUP", "s3://backups/modelyard"),
                       ("MODELYARD_BACKUP_ENDPOINT_URL", dead)):
        monkeypatch.setenv(key, value)
    yard = make_yard()
    for number in range(6):
        yard.register(trained["model"], f"{name}-{number % 2}", params={"n": number})
    started = time.monotonic()
    done = run_cli("backup", "--all")
    elapsed = time.monotonic() - started
    assert done.returncode == 7, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"Error: backup stopped: Object storage error: S3 endpoint {dead} unreachable "
        "(EndpointConnectionError); 0 version(s) backed up, 6 not"]
    assert "AKIASECRETKEY" not in done.stderr and "s3cr3t" not in done.stderr
    assert elapsed < 20, elapsed
