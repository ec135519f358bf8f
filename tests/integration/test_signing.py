"""Signed versions on both backends: a signature made at registration verifies; a changed
file, an untrusted key, a removed and a swapped signature are each refused at load, serve,
import and restore, and nothing is unpickled (a marker-writing pickle proves it); the
production policy; pickles of unknown origin refused at adopt, import and register DIR."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelyard.core.names import T_MANIFEST, T_SIGNER
from modelyard.errors import GateFailed, IntegrityError, InvalidInput
from modelyard.store.signatures import sign_manifest
from modelyard.store.vault import Manifest, signature_key
from tests.integration.test_backup_restore import _backup_url
from tests.integration.test_exchange import _other_yard
from tests.support.helpers import run_cli
from tests.unit.store.test_signatures import make_key

TAMPERINGS = ("untrusted key", "removed signature", "swapped signature", "file changed")


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str, str]]:
    """Alice signs and is trusted, Mallory is not, an old key is retired; set for every Yard
    and CLI run of the test through the environment."""
    folder = tmp_path / "keys"
    folder.mkdir()
    made = {stem: make_key(folder, stem) for stem in ("alice", "mallory", "old")}
    monkeypatch.setenv("MODELYARD_SIGNING_KEY", made["alice"][0])
    monkeypatch.setenv("MODELYARD_TRUSTED_KEYS", made["alice"][1])
    monkeypatch.setenv("MODELYARD_RETIRED_KEYS", made["old"][1])
    return made


def _register_marker(yard: Any, name: str, marker: Path) -> Any:
    from tests.support.marker_model import MarkerModel

    # Requirements given: MLflow's inference would load (unpickle) the model.
    return yard.register(MarkerModel(str(marker)), name, pip_requirements=["mlflow"])


def _manifest(yard: Any, name: str, version: int) -> Manifest:
    mv = yard.get(name, version, full=False)
    return yard.vault.read_manifest(name, version, mv.manifest_sha256, mv.semver)


def _tamper(yard: Any, name: str, how: str, keys: dict[str, tuple[str, str]],
            tmp_path: Path) -> Callable[[], None]:
    """Break version 1's signature one way in the vault; returns what puts it back."""
    store = yard.vault.store
    manifest = _manifest(yard, name, 1)
    key = signature_key(manifest.sha256)
    original = store.get_bytes(key)
    if how == "untrusted key":
        store.put_bytes(key, sign_manifest(keys["mallory"][0], name, manifest)[0])
    elif how == "removed signature":
        store.delete(key)
    elif how == "swapped signature":
        store.put_bytes(key, store.get_bytes(signature_key(_manifest(yard, name, 2).sha256)))
    else:  # a file changed after signing, with a manifest and tag made to match it
        mv = yard.get(name, 1)
        local = yard.tracking.artifacts.download(mv.source, tmp_path / uuid.uuid4().hex)
        (local / "python_model.pkl").write_bytes(
            (local / "python_model.pkl").read_bytes() + b"\n")
        yard.tracking.artifacts.put_artifacts(mv.artifact_location, local)
        (local / "registered_model_meta").unlink(missing_ok=True)
        forged = Manifest.of_directory(local)
        yard.vault.write_manifest(name, 1, forged, {})
        yard.tracking.set_version_tags(name, 1, {T_MANIFEST: forged.sha256})
        store.put_bytes(signature_key(forged.sha256), original)  # the old signature, copied
        return lambda: None  # the last one: nothing after it needs version 1 whole
    return lambda: store.put_bytes(key, original)


def test_a_signed_version_verifies_and_each_bad_signature_is_refused_at_load_and_serve(
        keys: dict[str, tuple[str, str]], yard: Any, name: str, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    first = _register_marker(yard, name, marker)
    _register_marker(yard, name, marker)  # another version's signature to swap in
    assert not marker.exists()
    alice = first.tags[T_SIGNER]
    result = yard.verify(name, 1)
    assert (result.signature, result.signer) == ("signed", alice)
    assert yard.details(name, 1).signature["state"] == "signed"
    shown = run_cli("verify", f"{name}@1")
    assert shown.returncode == 0 and f"signed by {alice[:16]}" in shown.stdout, shown.stderr
    assert yard.load(name, 1).verified and marker.exists()  # the marker works
    marker.unlink()
    yard.promote(name, 1, to="production", force=True, reason="ship")
    for how in TAMPERINGS:
        put_back = _tamper(yard, name, how, keys, tmp_path)
        with pytest.raises(IntegrityError) as refused:
            yard.load(name, 1)
        served = run_cli("serve", name, "--port", "9")  # must refuse before it listens
        assert served.returncode == 5, (how, served.stdout, served.stderr)
        [line] = served.stderr.strip().splitlines()
        assert "Integrity check failed" in line and "Traceback" not in served.stdout
        assert yard.details(name, 1).signature["state"] == "bad signature", how
        assert not marker.exists(), f"{how}: unpickled"
        expected = {"untrusted key": "not in trusted_keys",
                    "removed signature": "missing from the vault",
                    "swapped signature": "covers other files",
                    "file changed": "covers other files"}[how]
        assert expected in refused.value.message and expected in line, (how, line)
        put_back()
    assert keys["alice"][0] not in json.dumps(yard.details(name, 2).to_dict(), default=str)


def test_import_and_restore_refuse_each_bad_signature_before_any_file(
        backend: str, stack_or_none: Any, make_yard: Callable[..., Any], name: str,
        keys: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    url = _backup_url(stack_or_none, tmp_path)
    yard = make_yard(backup=url)
    _register_marker(yard, name, marker)
    _register_marker(yard, name, marker)
    doc = yard.export([name])
    version, second = doc["models"][0]["versions"]
    assert version["signature"] and version["tags"][T_SIGNER]
    manifest = Manifest.from_json({"files": version["manifest"]})
    changed = dict(version["manifest"])
    first_file = sorted(changed)[0]
    changed[first_file] = {**changed[first_file], "sha256": "0" * 64}
    edits: dict[str, dict[str, Any]] = {
        "untrusted key": {"signature": sign_manifest(keys["mallory"][0], name,
                                                     manifest)[0].decode()},
        "removed signature": {"signature": None},
        "swapped signature": {"signature": second["signature"]},
        "file changed": {"manifest": changed, "manifest_sha256": Manifest.from_json(
            {"files": changed}).sha256},
    }
    target = _other_yard(make_yard, tmp_path / "other")
    for how in TAMPERINGS:
        edited = json.loads(json.dumps(doc))
        edited["models"][0]["versions"] = [{**version, **edits[how]}]
        summary = target.import_registry(edited)
        assert summary["created"] == [] and len(summary["failed"]) == 1, (how, summary)
        assert "Integrity check failed" in summary["failed"][0]["error"], how
    imported = target.import_registry(doc)
    assert len(imported["created"]) == 2  # whole, the signatures travel with the versions
    assert target.verify(name, "v1.0.0").signature == "signed"

    # Restore: the backup store holds the signature beside the manifest.
    assert yard.protection.backup([(name, None)]).ok
    backup = yard.ctx.backup.store
    key = signature_key(manifest.sha256)
    original = backup.get_bytes(key)
    yard.tracking.delete_version(name, 1)
    swaps = {"untrusted key": sign_manifest(keys["mallory"][0], name, manifest)[0],
             "removed signature": None,
             "swapped signature": backup.get_bytes(signature_key(second["manifest_sha256"]))}
    for how, data in swaps.items():
        if data is None:
            backup.delete(key)
        else:
            backup.put_bytes(key, data)
        with pytest.raises(IntegrityError):
            yard.protection.restore(name, "v1.0.0")
        assert len(yard.versions(name)) == 1, how  # nothing came back
    backup.put_bytes(key, original)
    restored = yard.protection.restore(name, "v1.0.0")
    assert [mv.semver for mv in restored.restored] == ["1.0.0"]
    assert yard.verify(name, "v1.0.0").signer == restored.restored[0].tags[T_SIGNER]
    assert not marker.exists()


def test_production_requires_a_trusted_signature_and_sign_adds_one(
        make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
        keys: dict[str, tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_SIGNING_KEY", keys["alice"][1])  # a public key: unusable
    with pytest.raises(InvalidInput, match="is not an unencrypted PEM private key"):
        make_yard().register(trained["model"], name)
    monkeypatch.delenv("MODELYARD_SIGNING_KEY")
    yard = make_yard(require_signature=["production"])
    assert name not in {m["name"] for m in yard.list_models()}  # refused before anything
    unsigned = yard.register(trained["model"], name, input_example=trained["X"].head(3))
    assert T_SIGNER not in unsigned.tags and yard.verify(name, 1).signature == "unsigned"
    with pytest.raises(GateFailed, match=r"signed by a trusted key.*unsigned"):
        yard.promote(name, 1, to="production", force=True, reason="ship")
    refused = run_cli("promote", f"{name}@1", "--to", "production", "--force", "--reason", "x",
                      env={"MODELYARD_REQUIRE_SIGNATURE": "production"})
    assert refused.returncode == 4 and len(refused.stderr.strip().splitlines()) == 1
    assert "unsigned" in refused.stderr
    # Signed by a key nobody trusts: refused too, naming it.
    foreign = run_cli("sign", f"{name}@1", env={"MODELYARD_SIGNING_KEY": keys["mallory"][0]})
    assert foreign.returncode == 0, foreign.stderr
    with pytest.raises(GateFailed, match="not in trusted_keys"):
        yard.promote(name, 1, to="production", force=True, reason="ship")
    done = run_cli("sign", f"{name}@1", env={"MODELYARD_SIGNING_KEY": keys["alice"][0]})
    assert done.returncode == 0 and keys["alice"][0] not in done.stdout + done.stderr
    change = yard.promote(name, 1, to="production", force=True, reason="ship")
    assert change.status == "promoted"
    assert [e.action for e in yard.history(name)].count("sign") == 2
    # A production holder signed by a key since retired still loads; health warns.
    monkeypatch.setenv("MODELYARD_TRUSTED_KEYS", keys["old"][1])
    monkeypatch.setenv("MODELYARD_RETIRED_KEYS", keys["alice"][1])
    rotated = make_yard(require_signature=["production"])
    assert rotated.load(name, "production").verified
    report = rotated.incidents.health(models=[name])
    [warning] = [c for c in report.checks if c.check == "signature"]
    assert warning.level == "warn" and "retired key" in warning.detail


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_pickles_of_unknown_origin_are_refused_before_unpickling(
        yard: Any, make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
        tmp_path: Path) -> None:
    import mlflow
    import mlflow.sklearn

    from tests.support.marker_model import MarkerModel

    marker = tmp_path / "unpickled"
    # register DIR: a saved scikit-learn model (a pickle the allowlist accepts) plus one more.
    saved = tmp_path / "saved"
    mlflow.sklearn.save_model(trained["model"], str(saved), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    (saved / "extra.pkl").write_bytes(__import__("cloudpickle").dumps(MarkerModel(str(marker))))
    with pytest.raises(InvalidInput, match=r"pickle of unknown origin: extra\.pkl \(imports "
                                           r"tests\.support\.marker_model\.revive"):
        yard.register_directory(saved, name)
    assert name not in {m["name"] for m in yard.list_models()}
    (saved / "extra.pkl").unlink()
    assert yard.register_directory(saved, name).semver == "1.0.0"
    # import: an unsigned export whose files hold the pickle.
    _register_marker(yard, name, marker)
    doc = yard.export([name])
    summary = _other_yard(make_yard, tmp_path / "other").import_registry(doc)
    assert len(summary["created"]) == 1 and "python_model.pkl" in summary["failed"][0]["error"]
    # adopt: a version plain MLflow registered.
    mlflow.set_tracking_uri(yard.tracking.tracking_uri)
    mlflow.set_registry_uri(yard.tracking.registry_uri)
    plain = name + "-plain"
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=MarkerModel(str(marker)),
                                registered_model_name=plain, pip_requirements=["mlflow"])
    with pytest.raises(InvalidInput, match=r"python_model\.pkl \(imports tests\.support"):
        yard.adopt(plain)
    assert yard.get(plain, 1).semver is None
    assert not marker.exists()
