"""The registry with its artifact store, vault and backup store on Google Cloud Storage and
Azure Blob (the session's gcp-storage-emulator and Azurite): register, load, verify, verify
--all, repair, backup, snapshot, restore, in mixed combinations of stores (two passes: the
vault on one cloud and the backup on the other, then the other way round, so each cloud holds
each). S3 (moto) has the same round trip on the team stack (test_backup_restore.py,
test_integrity.py, test_snapshots.py: vault and backup in its buckets)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard import Yard
from modelyard.store.files import sha256_file
from modelyard.store.storage import open_store
from modelyard.store.vault import oid_of_key, snapshot_key


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
@pytest.mark.parametrize(("artifacts", "vault", "backup"), [
    ("wasbs://modelyard@devstoreaccount1.blob.core.windows.net/artifacts-{}",
     "gs://modelyard/vault-{}", "az://modelyard/backup-{}"),
    ("gs://modelyard/artifacts-{}",
     "wasbs://modelyard@devstoreaccount1.blob.core.windows.net/vault-{}",
     "gs://modelyard/backup-{}"),
])
def test_round_trip_with_every_store_on_the_clouds(
    backend: str, cloud_env: Any, name: str, trained: dict[str, Any], artifacts: str,
    vault: str, backup: str, tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    vault_url, backup_url = vault.format(run), backup.format(run)
    # The artifact location as the seeds set it (MLFLOW_ARTIFACT_ROOT), MLflow's own
    # artifact repositories writing there; a new experiment, so it takes the location.
    yard = Yard(artifact_location=artifacts.format(run), experiment=f"clouds-{run}",
                vault=vault_url, backup=backup_url)
    rows = trained["X"].head(10)
    mv = yard.register(trained["model"], name, metrics={"accuracy": 0.9},
                       input_example=trained["X"].head(3))
    assert open_store(artifacts.format(run)).list(""), "MLflow wrote the model there"
    manifest_objects = open_store(vault_url).list("objects/")
    assert manifest_objects, "the vault holds the version's files"
    assert yard.verify(name, mv.version).ok
    before = yard.load(name, mv.version).model.predict(rows)

    # verify --all (its debris check lists the vault's objects with their times) and repair:
    # a vault object corrupted on the cloud is named, and put back from a good copy
    vault_store = open_store(vault_url)
    assert yard.protection.verify_all(name).ok
    key = max(manifest_objects, key=lambda k: vault_store.size(k) or 0)
    damaged = bytearray(vault_store.get_bytes(key))
    damaged[0] ^= 0xFF
    vault_store.put_bytes(key, bytes(damaged))
    found = yard.protection.verify_all(name)
    assert [(p.layer, p.problem) for p in found.problems] == [("vault", "differs")]
    repaired = yard.protection.repair(name, mv.version)
    assert repaired.ok and repaired.verified and [f.layer for f in repaired.files] == ["vault"]
    fetched = tmp_path / "object"
    vault_store.get_file(key, fetched)
    assert sha256_file(fetched) == oid_of_key(key)

    report = yard.protection.backup([(name, mv.version)])
    assert report.ok and report.bytes_sent > 0
    assert yard.protection.backup([(name, mv.version)]).bytes_sent == 0  # deduplicated
    assert open_store(backup_url).list("objects/")

    # a snapshot of the stage holders, in the vault and copied to the backup store
    yard.promote(name, mv.version, to="production", force=True, reason="cloud")
    snap = yard.protection.snapshots.create("before", models=[name], include_data=False)
    assert snap.holders(name)["production"]["semver"] == mv.semver
    assert open_store(backup_url).exists(snapshot_key("before"))
    assert [s.tag for s in yard.protection.snapshots.list()] == ["before"]
    assert yard.protection.snapshots.diff("before").moved == []

    yard.tracking.delete_version(name, mv.version)
    restored = yard.protection.restore(name, mv.semver)
    assert restored.ok and [r.semver for r in restored.restored] == [mv.semver]
    back = yard.get(name, "latest")
    assert back.semver == mv.semver and back.metrics == {"accuracy": 0.9}
    assert yard.verify(name, back.version).ok
    np.testing.assert_array_equal(yard.load(name, back.version).model.predict(rows), before)
    # the backup store has the vault's layout
    assert set(manifest_objects) <= set(open_store(backup_url).list("objects/"))


def test_doctor_checks_cloud_stores_without_showing_credentials(cloud_env: Any) -> None:
    from tests.support.helpers import run_cli

    env = {"MODELYARD_VAULT": "gs://modelyard/doctor", "MODELYARD_BACKUP": "az://modelyard/d"}
    result = run_cli("doctor", "--json", env=env)
    report = json.loads(result.stdout)
    checks = {c["component"]: c for c in report["checks"]}
    assert checks["vault"]["ok"] and checks["backup"]["ok"], report
    assert report["credentials"]["AZURE_STORAGE_CONNECTION_STRING"] == "set"
    assert "Eby8vdM02" not in result.stdout + result.stderr  # Azurite's account key
    missing = run_cli("doctor", "--json", env={"MODELYARD_VAULT": "gs://no-such-bucket/v"})
    assert missing.returncode == 1
    assert "not found" in {c["component"]: c for c in json.loads(missing.stdout)["checks"]}[
        "vault"]["detail"]
