"""Backups and restore, on the embedded default (a backup folder) and on the team stack (the
backup store is a second moto bucket on the same S3 endpoint, so objects are copied inside S3).

Faults are real: the backup endpoint is cut by a TCP forwarder in the middle of a transfer,
and a backup store that does not exist or does not answer is what doctor and the auto-backup
meet.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard import Yard
from modelyard.core.names import T_RESTORED_FROM
from modelyard.errors import Conflict, NotFound, StorageError, YardError
from modelyard.store.vault import object_key
from tests.support.devstack import Stack, free_port
from tests.support.helpers import Forwarder, run_cli

BACKUP_BUCKET = "modelyard-backup"


def _backup_url(stack: Stack | None, tmp_path: Path) -> str:
    """A fresh backup store: a folder, or a prefix in a second bucket of the stack's S3."""
    if stack is None:
        return str(tmp_path / "backup")
    client = stack.s3_client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou,
                             client.exceptions.BucketAlreadyExists):
        client.create_bucket(Bucket=BACKUP_BUCKET)
    return f"s3://{BACKUP_BUCKET}/b-{uuid.uuid4().hex[:8]}"


def _predict(yard: Yard, name: str, ref: str, rows: Any) -> Any:
    return yard.load(name, ref).model.predict(rows)


def test_backup_delete_restore_brings_the_version_back(
    backend: str, stack_or_none: Stack | None, tmp_path: Path, name: str,
    trained: dict[str, Any],
) -> None:
    url = _backup_url(stack_or_none, tmp_path)
    yard = Yard(backup=url)
    rows = trained["X"].head(20)
    mv = yard.register(trained["model"], name, metrics={"accuracy": 0.91}, params={"depth": 5},
                       input_example=trained["X"].head(3), tags={"team": "fraud"},
                       description="the first forest")
    assert yard.protection.backup_record(name, mv.version) is None

    # Entering staging backs the version up by itself (backup_stages default: both).
    yard.promote(name, mv.version, to="staging")
    record = yard.protection.backup_record(name, mv.version)
    assert record is not None and record["semver"] == "1.0.0"
    assert record["mlflow"]["aliases"] == ["staging"]
    assert record["run"]["params"] == {"depth": "5"} and record["run"]["metrics"] == {
        "accuracy": 0.91}
    assert record["mlflow"]["tags"]["team"] == "fraud"

    # A backup store that does not answer: the move stands, the failure is audited.
    broken = Yard(backup="s3://no-such-bucket/x",
                  backup_endpoint_url=f"http://127.0.0.1:{free_port()}")
    change = broken.promote(name, mv.version, to="production")
    assert change.status == "promoted"
    assert yard.resolve(name, "production").version == mv.version
    assert [e.action for e in yard.history(name)][-1] == "backup_failed"

    # An unchanged version sends nothing the second time (only its record is rewritten).
    again = yard.protection.backup([(name, None)])
    assert again.ok and again.bytes_sent == 0
    assert again.versions[0].files_skipped == again.versions[0].files > 0
    assert yard.protection.backup_record(name, mv.version)["mlflow"]["aliases"] == ["production"]
    table = run_cli("backup", f"{name}@production", env={"MODELYARD_BACKUP": url})
    assert table.returncode == 0 and "0 B sent" in table.stdout, table.stderr
    before = _predict(yard, name, "production", rows)

    # Deleted from the registry -> restored with the same semver, tags, metrics, aliases.
    yard.tracking.delete_version(name, mv.version)
    with pytest.raises(NotFound):
        yard.protection.restore(name, "v9.9.9")
    report = yard.protection.restore(name, "v1.0.0", aliases=True)
    assert report.ok and [r.semver for r in report.restored] == ["1.0.0"]
    back = yard.get(name, "production")
    assert back.version != mv.version and back.semver == "1.0.0"
    assert back.tags["team"] == "fraud" and back.description == "the first forest"
    assert back.metrics == {"accuracy": 0.91} and back.params == {"depth": "5"}
    assert f"version {mv.version}" in back.tags[T_RESTORED_FROM]
    np.testing.assert_array_equal(_predict(yard, name, "production", rows), before)
    # The restored holder's record is the one it was backed up as (issue #24.6).
    [backed] = [c for c in yard.incidents.health(models=[name]).checks
                if c.check == "backed up"]
    assert backed.level == "ok" and "is backed up" in backed.detail, backed
    with pytest.raises(Conflict):
        yard.protection.restore(name, "1.0.0")  # still there: nothing to restore
    done = run_cli("restore", f"{name}@1.0.0", env={"MODELYARD_BACKUP": url})
    assert done.returncode == 4 and "still in the registry" in done.stderr

    # The whole model deleted -> restored from its records.
    yard.tracking.client.delete_registered_model(name)
    whole = yard.protection.restore(name, aliases=True)
    assert [r.semver for r in whole.restored] == ["1.0.0"]
    np.testing.assert_array_equal(_predict(yard, name, "production", rows), before)
    events = yard.history(name, verify=True)
    assert [e.action for e in events].count("restore") == 2


# The team stack's half is test_restore_all_rebuilds_a_fresh_postgresql_registry (a new
# server on an empty database, not SQLite): the suite pays for one of them only.
def test_list_latest_after_a_restore_is_the_highest_number_and_shows_the_highest_semver(
    backend: str, stack_or_none: Stack | None, tmp_path: Path, name: str,
    trained: dict[str, Any],
) -> None:
    """docs/design.md: ``latest`` is the highest visible version number, in every reader. A
    restored version gets a new number, so after restoring an older semver it is ``latest``
    (what ``NAME@latest`` loads); ``list`` then also names the highest semver, so the newer
    registration is not hidden behind it."""
    yard = Yard(backup=_backup_url(stack_or_none, tmp_path))
    first = yard.register(trained["model"], name, params={"depth": 5})
    yard.protection.backup([(name, first.version)])
    newer = yard.register(trained["model"], name, params={"depth": 6}, version="1.1.0")
    yard.tracking.delete_version(name, first.version)
    restored = yard.protection.restore(name, "v1.0.0").restored[0]
    assert restored.version > newer.version and restored.semver == "1.0.0"

    rows = {r["name"]: r for r in json.loads(run_cli("list", "--json").stdout)}
    row = rows[name]
    assert row["latest_version"] == restored.version == yard.details(name, "latest").version
    assert row["latest"] == "1.0.0" and row["highest_semver"] == "1.1.0"
    shown = run_cli("list")
    line = next(ln for ln in shown.stdout.splitlines() if name[:12] in ln)
    assert "1.0.0" in line and re.search(r"highest v?1\.1\.0", line), shown.stdout
    # Without a restore, the two agree and nothing more is shown.
    yard.register(trained["model"], name, params={"depth": 7}, version="1.2.0")
    shown = run_cli("list")
    line = next(ln for ln in shown.stdout.splitlines() if name[:12] in ln)
    assert "1.2.0" in line and "highest" not in line, shown.stdout


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_restore_all_rebuilds_an_empty_registry(
    backend: str, stack_or_none: Stack | None, tmp_path: Path, name: str,
    trained: dict[str, Any],
) -> None:
    url = _backup_url(stack_or_none, tmp_path)
    yard = Yard(backup=url, backup_stages=[])
    rows = trained["X"].head(20)
    first = yard.register(trained["model"], name, input_example=trained["X"].head(3))
    yard.promote(name, first.version, to="production", force=True, reason="first one")
    second = yard.register(trained["model"], name, input_example=trained["X"].head(3),
                           bump="minor")
    yard.set_alias(name, second.version, "champion")
    # A vault object lost: its content comes from the MLflow artifact store instead.
    manifest = yard.vault.read_manifest(name, second.version, second.manifest_sha256,
                                        second.semver)
    yard.vault.store.delete(object_key(manifest.files["MLmodel"][0]))
    done = run_cli("backup", name, "--json", env={"MODELYARD_BACKUP": url})
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    assert sent["ok"] and len(sent["versions"]) == 2 and sent["bytes_sent"] > 0
    expected = _predict(yard, name, "champion", rows)

    # The database is lost: a new, empty registry (and vault) with the same backup store.
    fresh_home = tmp_path / "fresh"
    fresh = Yard(home=str(fresh_home), tracking_uri=f"sqlite:///{fresh_home / 'mlflow.db'}",
                 vault=str(fresh_home / "vault"), backup=url)
    report = fresh.protection.restore_all()
    assert report.ok, report.failed
    assert sorted(r.semver for r in report.restored) == ["1.0.0", "1.1.0"]
    assert fresh.resolve(name, "production").tags["modelyard.semver"] == "1.0.0"
    assert fresh.resolve(name, "champion").tags["modelyard.semver"] == "1.1.0"
    np.testing.assert_array_equal(_predict(fresh, name, "champion", rows), expected)
    events = fresh.history(name, verify=True)  # the trail came back, and continues
    assert [e.action for e in events][:2] == ["register", "promote"]
    assert "restore" in [e.action for e in events]
    again = fresh.protection.restore_all()
    assert not again.restored and again.skipped


@contextlib.contextmanager
def _server_on_an_empty_database(stack: Stack, log: Path) -> Iterator[str]:
    """A second ``mlflow server`` on a new, empty PostgreSQL database of the stack (what is
    left after the registry's database was dropped), with the same S3 endpoint; its URI. The
    server is stopped by its process id and the database dropped at the end."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import psycopg2

    database = f"fresh_{uuid.uuid4().hex[:8]}"

    def sql(statement: str) -> None:
        conn = psycopg2.connect(host="127.0.0.1", port=stack.pg_port, user="postgres",
                                dbname="postgres", connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    sql(f'CREATE DATABASE "{database}"')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(stack.env(), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("MLFLOW_TRACKING_URI")
    uri = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(port), "--backend-store-uri",
             f"postgresql+psycopg2://postgres@127.0.0.1:{stack.pg_port}/{database}",
             "--artifacts-destination", f"s3://{stack.bucket}/mlflow-{database}",
             "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"second mlflow server did not start:\n"
                                       f"{log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_restore_all_rebuilds_a_fresh_postgresql_registry(
    stack: Stack, tmp_path: Path, trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The team stack's registry lost: a new MLflow server on an empty PostgreSQL database,
    a new vault, the same backup bucket -> ``restore_all`` rebuilds every backed-up model with
    its semvers and aliases, and ``history --verify`` passes on the rebuilt trails."""
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    url = _backup_url(stack, tmp_path)
    first, second = (f"pg-{uuid.uuid4().hex[:8]}" for _ in range(2))
    yard = Yard(backup=url, backup_stages=[],
                vault=f"s3://{stack.bucket}/vault-{uuid.uuid4().hex[:8]}")
    example = trained["X"].head(3)
    one = yard.register(trained["model"], first, input_example=example)
    yard.promote(first, one.version, to="production", force=True, reason="first one")
    two = yard.register(trained["model"], first, input_example=example, bump="minor")
    yard.set_alias(first, two.version, "champion")
    other = yard.register(trained["model"], second, input_example=example)
    yard.promote(second, other.version, to="staging")
    assert yard.protection.backup([(first, None), (second, None)]).ok  # the server is shared: ours
    rows = trained["X"].head(20)
    expected = _predict(yard, first, "champion", rows)

    with _server_on_an_empty_database(stack, tmp_path / "mlflow-fresh.log") as uri:
        fresh_vault = f"s3://{stack.bucket}/vault-{uuid.uuid4().hex[:8]}"
        fresh = Yard(tracking_uri=uri, vault=fresh_vault, backup=url)
        assert fresh.list_models() == []  # nothing survived the drop
        report = fresh.protection.restore_all()
        assert report.ok, report.failed
        assert sorted((r.name, r.semver) for r in report.restored) == sorted(
            [(first, "1.0.0"), (first, "1.1.0"), (second, "1.0.0")])
        held = {(n, a): fresh.resolve(n, a).tags["modelyard.semver"]
                for n, a in [(first, "production"), (first, "champion"), (second, "staging")]}
        assert held == {(first, "production"): "1.0.0", (first, "champion"): "1.1.0",
                        (second, "staging"): "1.0.0"}
        np.testing.assert_array_equal(_predict(fresh, first, "champion", rows), expected)
        env = {"MLFLOW_TRACKING_URI": uri, "MODELYARD_VAULT": fresh_vault}
        for name in (first, second):
            checked = run_cli("history", name, "--verify", env=env)
            assert checked.returncode == 0, checked.stderr
            assert "restore" in [e.action for e in fresh.history(name, verify=True)]
        # The original registry is untouched: the drop was the new server's database only.
        assert yard.resolve(first, "champion").version == two.version


def test_a_cut_transfer_leaves_no_record_and_a_rerun_completes_it(
    stack: Stack, tmp_path: Path, name: str, trained: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch, empty_embedded_db: Path,
) -> None:
    """Embedded registry, backup store on the stack's S3 behind a forwarder that is stopped
    once the first bytes of a 24 MB file (sent in parts) are under way."""
    import shutil

    import mlflow.sklearn

    (Path.cwd() / ".modelyard").mkdir()
    shutil.copyfile(empty_embedded_db, Path.cwd() / ".modelyard" / "mlflow.db")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, stack.env()[key])
    folder = tmp_path / "saved"
    mlflow.sklearn.save_model(trained["model"], folder, serialization_format="cloudpickle",
                             pip_requirements=["scikit-learn"])
    (folder / "weights.bin").write_bytes(np.random.default_rng(0).bytes(24 * 1024 * 1024))
    url = _backup_url(stack, tmp_path)
    forwarder = Forwarder("127.0.0.1", stack.s3_port)
    yard = Yard(backup=url, backup_endpoint_url=f"http://127.0.0.1:{forwarder.port}")
    mv = yard.register_directory(folder, name)
    moved = []

    def cut(kind: str, amount: int) -> None:
        if kind == "bytes":
            moved.append(amount)
            if len(moved) == 1:
                forwarder.stop()

    try:
        report = yard.protection.backup([(name, mv.version)], progress=cut)
        assert not report.ok
    except StorageError:
        pass
    assert moved
    bucket, prefix = url.removeprefix("s3://").split("/", 1)
    listed = stack.s3_client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/records/")
    assert listed.get("KeyCount", 0) == 0  # nothing claims to be complete

    rerun = Yard(backup=url, backup_endpoint_url=stack.s3_endpoint_url)
    report = rerun.protection.backup([(name, mv.version)])
    assert report.ok and rerun.protection.backup_record(name, mv.version) is not None
    assert report.bytes_sent <= report.versions[0].bytes_total
    assert rerun.protection.backup([(name, mv.version)]).bytes_sent == 0


def test_doctor_checks_the_backup_folder_for_real(isolated: Path) -> None:
    missing = isolated / "no-such-folder"
    done = run_cli("doctor", "--json", env={"MODELYARD_BACKUP": str(missing)})
    assert done.returncode == 1
    check = next(c for c in json.loads(done.stdout)["checks"] if c["component"] == "backup")
    assert not check["ok"] and "does not exist" in check["detail"]
    assert not missing.exists()  # doctor creates nothing
    missing.mkdir()
    done = run_cli("doctor", "--json", env={"MODELYARD_BACKUP": str(missing)})
    check = next(c for c in json.loads(done.stdout)["checks"] if c["component"] == "backup")
    assert check["ok"] and "writable" in check["detail"] and "no version" in check["detail"]
    assert list(missing.rglob("*")) == [missing / "probes"]  # the probe was removed
    # Bad input: one line, a non-zero exit, nothing changed.
    for args in (["restore"], ["backup"], ["restore", "x@1", "--all"], ["backup", "x"]):
        done = run_cli(*args)
        assert done.returncode == 2, args
        assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1


def test_doctor_checks_the_backup_bucket_for_real(stack: Stack) -> None:
    env = {**stack.env(), "MODELYARD_BACKUP": "s3://no-such-bucket/backups"}
    done = run_cli("doctor", "--json", env=env)
    assert done.returncode == 1
    check = next(c for c in json.loads(done.stdout)["checks"] if c["component"] == "backup")
    assert not check["ok"] and "does not exist" in check["detail"]
    env["MODELYARD_BACKUP"] = f"s3://{stack.bucket}/backups-{uuid.uuid4().hex[:6]}"
    done = run_cli("doctor", "--json", env=env)
    check = next(c for c in json.loads(done.stdout)["checks"] if c["component"] == "backup")
    assert check["ok"] and "writable" in check["detail"], check


def _forged_backup(folder: Path) -> None:
    """A backup store whose record and manifest are there but whose objects are not (or whose
    manifest points outside the model folder)."""
    manifest = {"files": {"MLmodel": {"sha256": "ab" * 32, "size": 3},
                          "../../escape.txt": {"sha256": "cd" * 32, "size": 3}}}
    (folder / "manifests" / "churn").mkdir(parents=True)
    (folder / "manifests" / "churn" / "1.json").write_text(json.dumps(manifest))
    from modelyard.store.vault import Manifest

    sha = Manifest.from_json(manifest).sha256
    record = {"format": "modelyard-version-record", "name": "churn", "version": 1,
              "semver": "1.0.0", "manifest_sha256": sha, "backed_up_at": "2026-01-01",
              "mlflow": {"aliases": ["production"], "tags": {}}, "model": {}, "run": {}}
    (folder / "records" / "churn").mkdir(parents=True)
    (folder / "records" / "churn" / "1.json").write_text(json.dumps(record))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ref=st.one_of(st.text(max_size=30), st.sampled_from(["1", "1.0.0", "v1.0.0", "production",
                                                            "latest", "0", "@", "../x"])))
def test_restore_refuses_any_reference_it_cannot_honour_and_changes_nothing(
    ref: str, tmp_path_factory: pytest.TempPathFactory, empty_embedded_db: Path,
) -> None:
    import shutil

    work = tmp_path_factory.mktemp("fuzz")
    (work / "home").mkdir()
    shutil.copyfile(empty_embedded_db, work / "home" / "mlflow.db")
    backup = work / "backup"
    _forged_backup(backup)
    yard = Yard(home=str(work / "home"), backup=str(backup))
    try:
        report = yard.protection.restore("churn", ref or None)
    except YardError:
        pass
    else:  # the whole model: each version that cannot come back whole is reported
        assert not ref and not report.ok and not report.restored
    assert yard.tracking.list_models() == []
    assert not (work / "escape.txt").exists() and not (backup / "escape.txt").exists()
