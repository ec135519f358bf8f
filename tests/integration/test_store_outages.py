"""Name the part that failed, and stop at the first failure of a part (#31.8).

The S3 endpoint of the devstack is really stopped (``Stack.stop_s3``): the vault, the backup
store and the tracking server's artifact store all lose it at once, as in an outage. Each
test starts it again (empty, bucket recreated) before it returns.
"""

from __future__ import annotations

import json
import re
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


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_an_s3_outage_during_a_snapshot_restore_reports_what_became_of_each_move(
        make_yard: Any, name: str, trained: dict[str, Any], stack_or_none: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 is stopped mid-restore, after the second move's audit event is written and before
    MLflow follows it: that move is applied as its event says (MLflow is up), the moves after
    it cannot write their events, and the report says exactly that, move by move."""
    import threading

    from modelyard.lifecycle.stages import Stages

    stack = stack_or_none
    yard = make_yard()
    models = [f"{name}-{i}" for i in range(3)]
    for model in models:
        for number in range(2):
            yard.register(trained["model"], model, params={"n": number})
        yard.promote(model, 1, to="production", force=True, reason="first")
        yard.promote(model, 2, to="staging")
    yard.protection.snapshots.create("before-cut", models=models, include_data=False)
    for model in models:  # production to #2, so staging is left empty: two moves back each
        yard.promote(model, 2, to="production", force=True, reason="second")

    settle = Stages._settle
    lock, seen = threading.Lock(), [0]

    def cut_at_the_second(self: Stages, *args: Any, **kwargs: Any) -> Any:
        with lock:  # one move at a time, so where S3 stops is the same on every run
            seen[0] += 1
            if seen[0] == 2:
                stack.stop_s3()
            return settle(self, *args, **kwargs)

    monkeypatch.setattr(Stages, "_settle", cut_at_the_second)
    try:
        done = run_cli("snapshot", "restore", "before-cut", "--yes")
    finally:
        monkeypatch.setattr(Stages, "_settle", settle)
        stack.start_s3()
    assert done.returncode == 7, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("Error: snapshot restore stopped: "), line
    assert f"S3 endpoint {stack.s3_endpoint_url} unreachable" in line, line
    counts = re.search(r"; (\d+) move\(s\) applied, 0 undone, 0 could not be undone, "
                       r"(\d+) not applied; ", line)
    assert counts, line
    applied, not_applied = int(counts[1]), int(counts[2])
    # The cut comes at the second move; models move in parallel, so another model's event may
    # be written just before it (and that move is then applied too).
    assert applied >= 2 and not_applied >= 1 and applied + not_applied == 6, line
    assert "run `modelyard snapshot restore before-cut --yes` again once it is back" in line
    assert "testing" not in done.stdout + done.stderr  # the stack's access key and secret
    # Each move's reported status is what MLflow shows.
    shown = re.findall(r"^(moved|not moved) (\S+) stage (\w+): (\S+) -> (\S+)$",
                       done.stdout, re.M)
    assert len(shown) == 6, done.stdout
    assert sum(1 for s in shown if s[0] == "moved") == applied, done.stdout

    def number(text: str) -> int | None:
        return None if text == "(none)" else int(text.lstrip("#"))

    for status, model, stage, before, after in shown:
        holder = yard.tracking.alias_holder(model, stage)
        assert holder == number(after if status == "moved" else before), (status, model, stage)
