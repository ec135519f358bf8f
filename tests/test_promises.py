"""Promises that broke when modelyard was tried as an attacker would (and now hold)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import AuditTampered, BackendError, IntegrityError, InvalidInput
from modelyard.store.storage import redact


def _holders(yard: Any, name: str) -> dict[str, int | None]:
    return {s: yard.tracking.alias_holder(name, s) for s in ("staging", "production")}


def test_a_move_that_fails_after_its_event_is_one_unit(
    yard: Any, name: str, trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = yard.register(trained["model"], name, input_example=trained["X"].head(3))
    two = yard.register(trained["model"], name, params={"n": 2},
                        input_example=trained["X"].head(3))
    yard.promote(name, one.version, to="staging")
    yard.promote(name, one.version, to="production")
    before = _holders(yard, name)
    # The registry refuses the alias move after the audit event is written (the fault is
    # raised at the edge moves write through, as a dropped connection would be translated:
    # MLflow's client on the embedded default, the lean REST writer on a server).
    edge = type(yard.ctx.writes)
    original = edge.set_alias
    calls = {"n": 0}

    def failing(self: Any, model: str, alias: str, version: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise BackendError(detail="connection dropped")
        original(self, model, alias, version)

    monkeypatch.setattr(edge, "set_alias", failing)
    with pytest.raises(BackendError):
        yard.promote(name, two.version, to="production", force=True, reason="hotfix")
    monkeypatch.setattr(edge, "set_alias", original)
    assert _holders(yard, name) == before
    events = yard.history(name, verify=True)
    assert events[-1]["action"] == "move_failed"
    # The next move applies only itself: exactly one production holder, tags agree.
    yard.promote(name, two.version, to="staging")
    assert _holders(yard, name) == {"staging": two.version, "production": one.version}
    stages = {v.version: v.tags.get("modelyard.stage") for v in yard.versions(name)}
    assert stages == {one.version: "production", two.version: "staging"}


def test_the_audit_head_names_the_newest_event_under_concurrency(
    yard: Any, name: str, trained: dict[str, Any],
) -> None:
    from modelyard.trail.audit import parse_head

    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    errors: list[BaseException] = []

    def tag(index: int) -> None:
        try:
            yard.set_tag(name, 1, f"k{index}", "v")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=tag, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    trail = yard._audit.log(name)
    newest = trail.last()
    head = parse_head(yard.tracking.get_model(name).tags.get("modelyard.audit_head"))
    assert head == (newest.seq, newest.hash)
    yard.vault.store.delete(f"audit/{name}/{newest.seq:010d}.json")
    with pytest.raises(AuditTampered):
        yard.history(name, verify=True)


def test_the_manifest_covers_every_file_a_load_reads(
    yard: Any, name: str, trained: dict[str, Any], tmp_path: Path,
) -> None:
    import mlflow.sklearn

    saved = tmp_path / "saved"
    mlflow.sklearn.save_model(trained["model"], str(saved), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])  # no inference subprocess
    (saved / "__pycache__").mkdir()
    (saved / "__pycache__" / "helper.cpython-311.pyc").write_bytes(b"compiled")
    # The name MLflow gives the record its registry downloads add: no content is exempt.
    (saved / "registered_model_meta").write_text("model_name: x\nloader_module: evil\n")
    mv = yard.register_directory(saved, name)
    manifest = yard._loader.manifest_of(yard.get(name, mv.version))
    assert {"__pycache__/helper.cpython-311.pyc", "registered_model_meta"} <= set(manifest.files)
    for tampered in ("__pycache__/helper.cpython-311.pyc", "registered_model_meta"):
        local = tmp_path / f"copy-{len(tampered)}"
        shutil.copytree(saved, local)
        (local / tampered).write_bytes(b"tampered")
        with pytest.raises(IntegrityError):
            manifest.verify_directory(local, label=name, semver="1.0.0")
    # A downloaded version has exactly its manifest's files: the load path verifies it.
    assert yard.load(name, mv.version, verify=True).verified
    # Beyond the manifest, a folder may hold only MLflow's own record of this very version
    # (its registry downloads write one into a local store); any other content is refused.
    plain = tmp_path / "plain"
    mlflow.sklearn.save_model(trained["model"], str(plain), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])  # no inference subprocess
    bare = yard.register_directory(plain, name)
    bare_manifest = yard._loader.manifest_of(yard.get(name, bare.version))
    (plain / "registered_model_meta").write_text(
        f"model_name: {name}\nmodel_version: '{bare.version}'\n")
    bare_manifest.verify_directory(plain, label=name, semver=str(bare.semver))
    for stranger in ("model_name: other\nmodel_version: '1'\n",
                     f"model_name: {name}\nmodel_version: '1'\nflavor: evil\n", "\x00\xff"):
        (plain / "registered_model_meta").write_text(stranger)
        with pytest.raises(IntegrityError, match="unexpected"):
            bare_manifest.verify_directory(plain, label=name, semver=str(bare.semver))


def test_rollback_after_the_holder_was_deleted_and_never_twice(
    yard: Any, name: str, trained: dict[str, Any],
) -> None:
    versions = [yard.register(trained["model"], name, params={"n": n},
                              input_example=trained["X"].head(3)) for n in range(3)]
    one, two, three = (v.version for v in versions)
    yard.promote(name, one, to="production", force=True, reason="first")
    yard.promote(name, two, to="production", force=True, reason="second")
    back = yard.rollback(name, reason="two is bad")
    assert back.version == one and _holders(yard, name)["production"] == one
    with pytest.raises(InvalidInput, match="was rolled back"):
        yard.rollback(name)  # would silently re-promote two
    yard.promote(name, two, to="production", force=True, reason="fixed after all")
    assert "modelyard.rolled_back" not in yard.tracking.get_version(name, two).tags
    yard.promote(name, three, to="production", force=True, reason="third")
    yard.tracking.delete_version(name, three)  # production deleted behind modelyard's back
    restored = yard.rollback(name, reason="three was deleted")
    assert restored.version == two and _holders(yard, name)["production"] == two


def test_credentials_never_show_in_urls() -> None:
    assert redact("http://AKIAEXAMPLE@s3.local:9000") == "http://***@s3.local:9000"
    assert redact("postgresql://user:secret@db/x") == "postgresql://user:***@db/x"
    assert "tok" not in redact("see https://tok@example.com/path and http://a:b@c")


def test_doctor_accepts_a_credentialed_tracking_uri(stack: Any) -> None:
    from tests.support.helpers import run_cli

    uri = stack.tracking_uri.replace("http://", "http://alice:pa55word@")
    done = run_cli("doctor", "--json", env={**stack.env(), "MLFLOW_TRACKING_URI": uri})
    assert "pa55word" not in done.stdout + done.stderr
    assert '"component": "tracking"' in done.stdout
    import json

    report = json.loads(done.stdout)
    tracking = next(c for c in report["checks"] if c["component"] == "tracking")
    assert tracking["ok"], tracking
