"""verify --all and repair, on both backends: files really deleted or corrupted in the artifact
store, the vault and the backup store, then found and put back from a layer with a good copy."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import IntegrityError, InvalidInput
from modelyard.store.storage import ObjectStore
from modelyard.store.vault import MLFLOW_RECORD, manifest_key, object_key
from tests.support.helpers import run_cli


def _backup_url(backend: str, stack_or_none: Any, tmp_path: Path) -> str:
    if backend == "server":
        return f"s3://{stack_or_none.bucket}/backup-{uuid.uuid4().hex[:8]}"
    return str(tmp_path / "backup")


def _files(yard: Any, name: str) -> tuple[Any, dict[str, tuple[str, int]], str]:
    """(record, manifest files, artifact location) of the production version."""
    record = yard.resolve(name, "production")
    mv = yard.get(name, record.version, full=False)
    manifest = yard._loader.manifest_of(mv)
    return record, manifest.files, yard.tracking.artifact_location(record)


def _model_file(files: dict[str, tuple[str, int]]) -> str:
    """The serialized model (the biggest file), whatever the flavor named it."""
    return max(files, key=lambda rel: files[rel][1])


def _delete_artifact(yard: Any, location: str, rel: str) -> None:
    root = yard.tracking.artifacts.local_artifact_root(location)
    if root is not None:
        (root / rel).unlink()
    else:  # through the tracking server's artifact proxy (or S3)
        yard.tracking.artifacts._repository(location).delete_artifacts(rel)
    assert rel not in yard.tracking.artifacts.artifact_files(location)


def _corrupt_artifact(yard: Any, location: str, rel: str, tmp_path: Path) -> None:
    root = yard.tracking.artifacts.local_artifact_root(location)
    if root is not None:
        data = bytearray((root / rel).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (root / rel).write_bytes(bytes(data))
        return
    local = tmp_path / "fetched" / rel.rsplit("/", 1)[-1]
    yard.tracking.artifacts.fetch_artifact(location, rel, local)
    data = bytearray(local.read_bytes())
    data[len(data) // 2] ^= 0xFF
    local.write_bytes(bytes(data))
    yard.tracking.artifacts.put_artifact(location, rel, local)


def _flip(store: ObjectStore, key: str) -> None:
    data = bytearray(store.get_bytes(key))
    data[0] ^= 0xFF
    store.put_bytes(key, bytes(data))


@pytest.fixture
def produced(make_yard: Any, name: str, trained: dict[str, Any], backend: str,
             stack_or_none: Any, tmp_path: Path) -> Any:
    """A yard with a backup store, and one version of ``name`` in production (not backed up:
    the tests put into the backup store exactly what each case needs)."""
    yard = make_yard(backup=_backup_url(backend, stack_or_none, tmp_path), backup_stages=[])
    mv = yard.register(trained["model"], name, input_example=trained["X"].head(3),
                       pip_requirements=["scikit-learn"])
    yard.promote(name, mv.version, to="production", force=True, reason="test")
    return yard


def test_verify_all_finds_and_repair_restores_from_vault_then_backup(
    produced: Any, name: str, tmp_path: Path
) -> None:
    yard = produced
    report = yard.protection.verify_all(name)
    assert report.ok and len(report.versions) == 1
    assert report.versions[0].layers == ["artifacts", "vault"]  # never backed up: not checked
    record, files, location = _files(yard, name)
    rel = _model_file(files)
    oid = files[rel][0]

    # 1. deleted from the artifact store -> named -> put back from the vault
    _delete_artifact(yard, location, rel)
    report = yard.protection.verify_all()  # every model: this one is among them
    mine = [v for v in report.versions if v.name == name]
    assert not report.ok and not mine[0].ok
    assert [(p.path, p.layer, p.problem) for p in mine[0].problems] == [
        (rel, "artifacts", "missing")]
    repaired = yard.protection.repair(name, "production")
    assert [(f.path, f.served_by, f.layer) for f in repaired.files] == [
        (rel, "vault", "artifacts")]
    assert repaired.verified and repaired.ok and not repaired.unrepairable
    assert yard.protection.verify_all(name).ok
    assert yard.load(name, "production").verified  # MLflow's copy loads again

    # 2. the vault object gone too; the backup store holds it (same layout) -> from the backup
    backup = yard.ctx.backup.store
    backup.put_bytes(manifest_key(name, record.version),
                     yard.vault.store.get_bytes(manifest_key(name, record.version)))
    for other_oid, _ in files.values():
        backup.put_bytes(object_key(other_oid), yard.vault.store.get_bytes(object_key(other_oid)))
    assert yard.protection.verify_all(name).versions[0].layers == ["artifacts", "vault", "backup"]
    _delete_artifact(yard, location, rel)
    yard.vault.store.delete(object_key(oid))
    cache = yard._loader.cache_folder(yard.get(name, "production", full=False))
    if cache.is_dir():
        cache.rename(cache.with_name(cache.name + ".away"))
    found = {(p.path, p.layer, p.problem) for p in yard.protection.verify_all(name).problems}
    assert found == {(rel, "artifacts", "missing"), (rel, "vault", "missing")}
    repaired = yard.protection.repair(name, all=False)
    assert {(f.path, f.served_by, f.layer) for f in repaired.files} == {
        (rel, "backup", "artifacts"), (rel, "backup", "vault")}
    assert repaired.verified

    # 3. a corrupted file differs and is repaired; a manifest deleted from the vault comes back
    _corrupt_artifact(yard, location, rel, tmp_path)
    yard.vault.store.delete(manifest_key(name, record.version))
    found = {(p.path, p.layer, p.problem) for p in yard.protection.verify_all(name).problems}
    assert found == {(rel, "artifacts", "differs"), ("(manifest)", "vault", "manifest-missing")}
    repaired = yard.protection.repair(all=True)
    served = {(f.path, f.layer): f.served_by for f in repaired.files if f.name == name}
    assert served == {(rel, "artifacts"): "vault", ("(manifest)", "vault"): "backup"}
    assert yard.protection.verify_all(name).ok


def test_repair_never_writes_a_copy_whose_hash_is_wrong(produced: Any, name: str) -> None:
    yard = produced
    record, files, location = _files(yard, name)
    rel = _model_file(files)
    _delete_artifact(yard, location, rel)
    _flip(yard.vault.store, object_key(files[rel][0]))  # the only other copy is corrupt
    report = yard.protection.verify_all(name)
    assert {(p.path, p.layer, p.problem) for p in report.problems} == {
        (rel, "artifacts", "missing"), (rel, "vault", "differs")}
    repaired = yard.protection.repair(name, record.version)
    assert not repaired.ok and not repaired.verified and not repaired.files
    assert {(p.path, p.layer) for p in repaired.unrepairable} == {
        (rel, "artifacts"), (rel, "vault")}
    assert rel not in yard.tracking.artifacts.artifact_files(location)  # nothing written

    # a manifest that does not match the tagged hash is reported, never used for paths
    key = manifest_key(name, record.version)
    body = json.loads(yard.vault.store.get_bytes(key))
    body["files"]["../../escape"] = {"sha256": "0" * 64, "size": 1}
    yard.vault.store.put_bytes(key, json.dumps(body).encode())
    problems = yard.protection.verify_all(name).problems
    assert [(p.path, p.layer, p.problem) for p in problems] == [
        ("(manifest)", "vault", "manifest-differs")]
    with pytest.raises(InvalidInput):
        yard.protection.repair()


def test_cli_verify_all_and_repair_exit_codes(produced: Any, name: str) -> None:
    yard = produced
    ok = run_cli("verify", "--all", name)
    assert ok.returncode == 0, ok.stderr
    _, files, location = _files(yard, name)
    rel = _model_file(files)
    _delete_artifact(yard, location, rel)
    broken = run_cli("verify", "--all", name, "--json")
    assert broken.returncode == 5
    data = json.loads(broken.stdout)
    assert data["ok"] is False
    assert data["versions"][0]["problems"][0]["path"] == rel
    table = run_cli("verify", "--all", name)
    assert table.returncode == 5 and rel in table.stdout and "missing" in table.stdout
    assert run_cli("repair").returncode == 2
    fixed = run_cli("repair", f"{name}@production")
    assert fixed.returncode == 0, fixed.stderr
    assert "vault" in fixed.stdout
    assert run_cli("verify", "--all", name).returncode == 0
    assert run_cli("verify", f"{name}@production").returncode == 0


# -- files the manifest does not list (#31.2) ---------------------------------------------
STRANGER = "sitecustomize.py"
PAYLOAD = b"import os\nos.environ['MODELYARD_TEST_OWNED'] = '1'\n"


def _add_artifact(yard: Any, location: str, rel: str, data: bytes, tmp_path: Path) -> None:
    """Write a file into a version's artifact folder: the local store on embedded, the
    tracking server's artifact proxy (S3 behind it) on the server."""
    local = tmp_path / f"add-{uuid.uuid4().hex[:6]}" / rel.rsplit("/", 1)[-1]
    local.parent.mkdir(parents=True)
    local.write_bytes(data)
    yard.tracking.artifacts.put_artifact(location, rel, local)
    assert rel in yard.tracking.artifacts.artifact_files(location)


def _drop_cache(yard: Any, name: str) -> None:
    """Make the next load read MLflow's copy, not the verified one cached before."""
    import shutil

    cache = yard._loader.cache_folder(yard.get(name, "production", full=False))
    shutil.rmtree(cache, ignore_errors=True)


def test_a_file_the_manifest_does_not_list_is_found_and_set_aside(
    produced: Any, name: str, trained: dict[str, Any], tmp_path: Path
) -> None:
    yard = produced
    healthy = f"{name}-ok"  # a sound model beside it: no false alarm
    yard.register(trained["model"], healthy, input_example=trained["X"].head(3),
                  pip_requirements=["scikit-learn"])
    record, files, location = _files(yard, name)
    _add_artifact(yard, location, STRANGER, PAYLOAD, tmp_path)
    with pytest.raises(IntegrityError, match="unexpected"):
        yard.verify(name, "production")

    report = yard.protection.verify_all()
    mine = next(v for v in report.versions if v.name == name)
    assert not report.ok and not mine.ok
    assert [(p.path, p.layer, p.problem) for p in mine.problems] == [
        (STRANGER, "artifacts", "unexpected")]
    assert all(v.ok for v in report.versions if v.name == healthy)
    assert yard.protection.verify_all(healthy).ok
    cli = run_cli("verify", "--all", name, "--json")
    assert cli.returncode == 5
    problem = json.loads(cli.stdout)["versions"][0]["problems"][0]
    assert (problem["path"], problem["layer"], problem["problem"]) == (
        STRANGER, "artifacts", "unexpected")
    table = run_cli("verify", "--all", name)
    assert table.returncode == 5 and "1 version(s) damaged" in table.stdout

    repaired = yard.protection.repair(name, "production")
    assert repaired.ok and repaired.verified and not repaired.unrepairable
    [kept] = repaired.files
    assert (kept.path, kept.layer, kept.action) == (STRANGER, "artifacts", "quarantined")
    assert kept.kept_at.startswith(f"quarantine/{name}/{record.version}/")
    assert kept.kept_at.endswith(f"/{STRANGER}")
    assert yard.vault.store.get_bytes(kept.kept_at) == PAYLOAD  # kept, never deleted unkept
    listing = yard.tracking.artifacts.artifact_files(location)
    assert STRANGER not in listing and set(files) <= set(listing)  # the model's files stay
    after = yard.protection.verify_all()  # every model: ours are among them, all sound
    assert all(v.ok for v in after.versions if v.name in (name, healthy))
    assert yard.protection.verify_all(name).ok
    assert yard.verify(name, "production").ok
    _drop_cache(yard, name)
    assert yard.load(name, "production").verified

    # The CLI says where the file went; verify --all is sound after.
    _add_artifact(yard, location, STRANGER, PAYLOAD, tmp_path)
    fixed = run_cli("repair", f"{name}@production")
    assert fixed.returncode == 0, fixed.stderr
    assert "quarantined" in fixed.stdout and f"quarantine/{name}/" in fixed.stdout
    assert run_cli("verify", "--all", name).returncode == 0
    assert run_cli("verify", f"{name}@production").returncode == 0


def test_recover_sets_aside_a_file_the_manifest_does_not_list(
    produced: Any, name: str, tmp_path: Path
) -> None:
    yard = produced
    record, _, location = _files(yard, name)
    assert yard.load(name, "production").verified  # a verified cached copy exists
    _add_artifact(yard, location, STRANGER, PAYLOAD, tmp_path)
    report = yard.incidents.recover(name)
    assert [f.kind for f in report.findings] == ["model-files"]
    assert report.findings[0].detail["unexpected"] == [STRANGER]
    assert report.recovered and report.verified and report.ok, report.to_dict()
    assert report.fixes[0].layer == "L2"
    assert STRANGER not in yard.tracking.artifacts.artifact_files(location)
    kept = [k for k in yard.vault.store.list(f"quarantine/{name}/{record.version}/")
            if k.endswith(STRANGER)]
    assert len(kept) == 1 and yard.vault.store.get_bytes(kept[0]) == PAYLOAD
    assert yard.protection.verify_all(name).ok


# -- MLflow's own record, after a plain MLflow load (#24.3) --------------------------------
@contextlib.contextmanager
def _as_plain_mlflow(yard: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A plain MLflow user's process pointed at this registry, for the block only."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with monkeypatch.context() as patch:
        patch.setattr(registry_utils, "_registry_uri", yard.tracking.registry_uri)
        patch.setenv("MLFLOW_REGISTRY_URI", yard.tracking.registry_uri)
        with _use_tracking_uri(yard.tracking.tracking_uri):
            yield


def test_mlflow_record_of_a_plain_load_is_one_rule_everywhere(
    produced: Any, name: str, trained: dict[str, Any], backend: str,
    make_yard: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow.pyfunc

    yard = produced
    record, files, location = _files(yard, name)
    with _as_plain_mlflow(yard, monkeypatch):
        model = mlflow.pyfunc.load_model(f"models:/{name}/{record.version}")
    assert len(model.predict(trained["X"].head(2))) == 2
    listing = yard.tracking.artifacts.artifact_files(location)
    if backend == "embedded":  # the local store is the folder MLflow's download wrote into
        assert MLFLOW_RECORD in listing and MLFLOW_RECORD not in files
    assert yard.verify(name, "production").ok
    assert yard.protection.verify_all(name).ok  # not a stranger: nothing to quarantine
    assert not yard.protection.repair(name, "production").files
    assert MLFLOW_RECORD in yard.tracking.artifacts.artifact_files(location) or (
        backend == "server")

    # export + import into another registry: the same files, the same manifest
    doc = yard.export([name])
    root = tmp_path / "other"
    root.mkdir()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    other = make_yard(home=str(root), tracking_uri=uri, registry_uri=uri,
                      vault=str(root / "vault"))
    summary = other.import_registry(doc)
    assert summary["failed"] == [] and len(summary["created"]) == 1, summary
    made = other.get(name, summary["created"][0]["version"], full=False)
    assert made.manifest_sha256 == yard.get(name, "production", full=False).manifest_sha256
    assert other.verify(name, made.version).ok
    assert other.protection.verify_all(name).ok
    assert MLFLOW_RECORD not in other.tracking.artifacts.artifact_files(
        other.tracking.artifact_location(other.resolve(name, made.version)))

    # backup + restore of the source version
    assert yard.protection.backup([(name, None)]).ok
    assert yard.protection.verify_all(name).ok
    yard.tracking.delete_version(name, record.version)
    restored = yard.protection.restore(name, "v1.0.0", aliases=True)
    assert restored.ok
    assert yard.verify(name, "production").ok
    assert yard.protection.verify_all(name).ok


def test_repair_takes_out_exactly_the_unlisted_file(
    produced: Any, name: str, tmp_path: Path
) -> None:
    """MLflow's repositories delete by prefix: a stranger named like the start of a model
    file (``model.pk`` beside ``model.pkl``) goes, the model file stays."""
    yard = produced
    _, files, location = _files(yard, name)
    rel = _model_file(files)
    stranger = rel[:-1]
    _add_artifact(yard, location, stranger, PAYLOAD, tmp_path)
    problems = yard.protection.verify_all(name).problems
    assert [(p.path, p.problem) for p in problems] == [(stranger, "unexpected")]
    repaired = yard.protection.repair(name, "production")
    assert repaired.ok and [f.path for f in repaired.files] == [stranger]
    assert yard.vault.store.get_bytes(repaired.files[0].kept_at) == PAYLOAD
    listing = yard.tracking.artifacts.artifact_files(location)
    assert stranger not in listing and set(files) <= set(listing)
    assert yard.protection.verify_all(name).ok
