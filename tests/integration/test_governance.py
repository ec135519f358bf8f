"""Governance that holds against its own users (issue 15) and retention / access log (11).

The auth cases run on a real MLflow server with the basic-auth app
(``tests/support/authstack.py``: one per session, SQLite registry + moto S3), with users created
through its REST API: alice EDIT, bob READ (the default permission), carol MANAGE on each test's
model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.authstack import ADMIN, AuthStack
from tests.support.helpers import run_cli

PASSWORDS = {"alice": "alice-pw-1234", "bob": "bob-pw-123456", "carol": "carol-pw-1234"}


@pytest.fixture(scope="session")
def auth_stack() -> Iterator[AuthStack]:
    with AuthStack(bucket="governance") as running:
        for user, password in PASSWORDS.items():
            running.create_user(user, password)
        yield running


@pytest.fixture
def team(auth_stack: AuthStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fresh model on the auth stack: created by the admin, alice EDIT, carol MANAGE."""
    from mlflow import MlflowClient

    name = f"sec-{uuid.uuid4().hex[:8]}"
    vault = f"s3://{auth_stack.bucket}/vault-{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv("MODELYARD_USER", raising=False)
    for key, value in auth_stack.env_for(*ADMIN).items():
        monkeypatch.setenv(key, value)
    MlflowClient(auth_stack.tracking_uri).create_registered_model(name)
    auth_stack.grant("alice", name, "EDIT")
    auth_stack.grant("carol", name, "MANAGE")
    monkeypatch.setenv("MODELYARD_VAULT", vault)
    monkeypatch.setenv("MODELYARD_PRODUCTION_APPROVAL_REQUIRED", "true")
    return {"name": name, "stack": auth_stack}


def env_of(team: dict[str, Any], user: str, **extra: str) -> dict[str, str]:
    env = team["stack"].env_for(user, PASSWORDS[user])
    return {**env, **extra}


def yard_as(team: dict[str, Any], user: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from modelyard import Yard

    for key, value in env_of(team, user).items():
        monkeypatch.setenv(key, value)
    return Yard()


def requested(team: dict[str, Any], trained: dict[str, Any],
              monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """alice registers v1.0.0, moves it to staging and asks for production."""
    alice = yard_as(team, "alice", monkeypatch)
    name = team["name"]
    alice.register(trained["model"], name, metrics={"accuracy": 0.9})
    alice.promote(name, 1, to="staging")
    change = alice.promote(name, 1, to="production")
    assert change.status == "pending"
    return alice, str(change.request_id)


def test_identity_is_the_authenticated_user(team: dict[str, Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    alice = yard_as(team, "alice", monkeypatch)
    identity = alice.governance.identity()
    assert (identity.user, identity.source, identity.authenticated) == (
        "alice", "server-basic-auth", True)
    done = run_cli("--json", "doctor", env=env_of(team, "alice"))
    checks = {c["component"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["identity"]["target"] == "alice"
    assert "authenticated by the tracking server" in checks["identity"]["detail"]
    # A wrong password is one line, not an outage, and never shows the password.
    bad = run_cli("list", env={**env_of(team, "alice"), "MLFLOW_TRACKING_PASSWORD": "nope"})
    assert bad.returncode != 0 and bad.returncode != 6
    assert "Traceback" not in bad.stderr and "nope" not in bad.stderr + bad.stdout


def test_self_approval_under_a_borrowed_name_is_refused(
        team: dict[str, Any], trained: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard.errors import PermissionDenied

    _, request_id = requested(team, trained, monkeypatch)
    name = team["name"]
    borrowed = run_cli("approve", request_id,
                       env=env_of(team, "alice", MODELYARD_USER="carol"))
    assert borrowed.returncode == PermissionDenied.exit_code
    assert "MODELYARD_USER=carol" in borrowed.stderr and "alice" in borrowed.stderr
    assert "Traceback" not in borrowed.stderr
    plain = run_cli("approve", request_id, env=env_of(team, "alice"))
    assert plain.returncode == PermissionDenied.exit_code  # EDIT: she cannot approve at all
    assert "alice needs MANAGE" in plain.stderr
    carol = yard_as(team, "carol", monkeypatch)
    assert carol.versions(name)[0].aliases == ["staging"]  # nothing moved so far
    change = carol.approve(request_id)
    assert change.version == 1 and carol.resolve(name, "production").version == 1
    events = carol.history(name, verify=True)
    assert {e.who for e in events} == {"alice", "carol"}
    assert {e.identity for e in events} == {"authenticated"}
    approve = next(e for e in events if e.action == "approve")
    assert approve.detail["approved_by"] == "carol" and approve.detail["requested_by"] == "alice"


def test_read_only_approver_gets_permission_denied_and_nothing_changes(
        team: dict[str, Any], trained: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard.errors import BackendError, PermissionDenied

    alice, request_id = requested(team, trained, monkeypatch)
    name = team["name"]
    before = [e.to_dict() for e in alice.history(name)]
    aliases = {v.version: v.aliases for v in alice.versions(name)}
    done = run_cli("approve", request_id, env=env_of(team, "bob"))
    assert done.returncode == PermissionDenied.exit_code != BackendError.exit_code
    assert "bob" in done.stderr and name in done.stderr and "MANAGE" in done.stderr
    assert "unreachable" not in done.stderr
    rollback = run_cli("rollback", name, env=env_of(team, "bob"))
    assert rollback.returncode == PermissionDenied.exit_code
    assert [e.to_dict() for e in alice.history(name, verify=True)] == before
    assert {v.version: v.aliases for v in alice.versions(name)} == aliases
    assert [r["id"] for r in alice.requests(name)] == [request_id]  # still open


def test_signing_a_version_needs_manage_and_is_audited(
        team: dict[str, Any], trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    from modelyard.core.names import T_SIGNER
    from modelyard.errors import PermissionDenied
    from tests.unit.store.test_signatures import make_key

    private, _ = make_key(tmp_path, "release")
    alice = yard_as(team, "alice", monkeypatch)
    name = team["name"]
    alice.register(trained["model"], name, metrics={"accuracy": 0.9})
    refused = run_cli("sign", f"{name}@1", env=env_of(team, "alice",
                                                      MODELYARD_SIGNING_KEY=private))
    assert refused.returncode == PermissionDenied.exit_code and "MANAGE" in refused.stderr
    assert T_SIGNER not in alice.get(name, 1).tags
    done = run_cli("sign", f"{name}@1", env=env_of(team, "carol", MODELYARD_SIGNING_KEY=private))
    assert done.returncode == 0, done.stderr
    assert T_SIGNER in alice.get(name, 1).tags
    event = alice.history(name, verify=True)[-1]
    assert (event.action, event.who) == ("sign", "carol")


def test_a_move_made_with_plain_mlflow_is_caught_and_undone(
        team: dict[str, Any], trained: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from modelyard import Yard
    from tests.support.matrix import Cell, Matrix

    hook = tmp_path / "hook.jsonl"
    alice, request_id = requested(team, trained, monkeypatch)
    name = team["name"]
    approver = yard_as(team, "carol", monkeypatch)
    approver.approve(request_id)
    # The detection matrix's row for the auth server (issue #24): an authorised promotion
    # (requested by alice, approved by carol) raises no alarm in health, detect or verify --all.
    matrix = Matrix(approver, Yard, name, tmp_path, trained["model"], trained["X"])
    authorised = matrix.observe(Cell("after an authorised promotion on the auth server", False))
    assert not authorised.alarm, authorised
    alice = yard_as(team, "alice", monkeypatch)
    alice.register(trained["model"], name, metrics={"accuracy": 0.95})
    MlflowClient(team["stack"].tracking_uri).set_registered_model_alias(name, "production", 2)

    moved = alice.governance.unaudited(name)
    assert [(d.stage, d.holder_version, d.audited_version) for d in moved] == [
        ("production", 2, 1)]
    verify = run_cli("history", name, "--verify", env=env_of(team, "alice"))
    assert verify.returncode != 0 and "#2" in verify.stderr and "unaudited" in verify.stderr
    listed = run_cli("list", env=env_of(team, "alice"))
    assert "unaudited" in listed.stderr and "\u26a0" in listed.stdout
    rows = json.loads(run_cli("--json", "list", env=env_of(team, "alice")).stdout)
    row = next(r for r in rows if r["name"] == name)
    assert row["unaudited"][0]["holder_version"] == 2
    details = json.loads(run_cli("--json", "details", f"{name}@production",
                                 env=env_of(team, "alice")).stdout)
    assert details["version"] == 2 and details["unaudited"]

    carol = yard_as(team, "carol", monkeypatch)
    # ... and the fault next to it: every detector sees it.
    caught = Matrix(carol, Yard, name, tmp_path, None, None).observe(
        Cell("alias moved with plain MLflow on the auth server", True))
    assert caught.health == "critical" and caught.findings and caught.verified is False, caught
    changes = carol.governance.undo_unaudited(name)
    assert [c.version for c in changes] == [1]
    assert carol.resolve(name, "production").version == 1
    assert carol.governance.unaudited(name) == []
    last = carol.history(name, verify=True)[-1]
    assert (last.who, last.reason) == ("carol", "undo unaudited move")
    assert run_cli("history", name, "--verify", env=env_of(team, "alice")).returncode == 0
    del hook


# -- embedded default --------------------------------------------------------------------------
@pytest.fixture
def embedded(empty_embedded_db: Path) -> Path:
    target = Path.cwd() / ".modelyard"
    target.mkdir(exist_ok=True)
    shutil.copyfile(empty_embedded_db, target / "mlflow.db")
    return target


def _rewrite(yard: Any, name: str) -> None:
    """Edit event 1 and re-hash the whole chain consistently, then re-anchor both heads:
    what someone with write access to the store (and the tag) but not the key can do."""
    from modelyard.core.names import T_AUDIT_HEAD
    from modelyard.store.vault import audit_head_key, event_key
    from modelyard.trail.audit import GENESIS, AuditEvent

    store = yard.vault.store
    prev = GENESIS
    events = yard.history(name)
    for event in events:
        data = event.to_dict()  # the old signature is kept: the attacker cannot make one
        if event.seq == 1:
            data["who"] = "mallory"
        data["prev_hash"] = prev
        fresh = AuditEvent.from_dict(data)
        fresh.hash = fresh.compute_hash()
        fresh.sig = event.sig
        assert fresh.hash == hashlib.sha256(fresh.canonical()).hexdigest()
        store.put_bytes(event_key(name, fresh.seq), json.dumps(fresh.to_dict()).encode())
        prev = fresh.hash
    store.put_bytes(audit_head_key(name), json.dumps({"seq": len(events), "hash": prev}).encode())
    yard.tracking.set_model_tag(name, T_AUDIT_HEAD, f"{len(events)}:{prev}")


def test_a_consistently_rewritten_chain_is_caught_with_the_audit_key(
        embedded: Path, trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard import Yard
    from modelyard.errors import AuditTampered

    monkeypatch.setenv("MODELYARD_AUDIT_KEY", "k3y-never-printed")
    yard = Yard()
    name = "signed"
    yard.register(trained["model"], name)
    yard.promote(name, 1, to="staging")
    events = yard.history(name, verify=True)
    assert all(e.sig and len(e.sig) == 64 for e in events)
    assert events[0].identity == "asserted" and events[0].who == "alice"
    _rewrite(yard, name)
    with pytest.raises(AuditTampered, match="event 1 does not carry the audit key"):
        yard.history(name, verify=True)
    done = run_cli("history", name, "--verify")
    assert done.returncode == AuditTampered.exit_code
    assert "k3y-never-printed" not in done.stdout + done.stderr
    # Without the key the same rewrite is consistent: the key is what catches it.
    monkeypatch.delenv("MODELYARD_AUDIT_KEY")
    assert len(Yard().history(name, verify=True)) == len(events)


def test_the_vault_head_anchors_the_trail(embedded: Path, trained: dict[str, Any]) -> None:
    from modelyard import Yard
    from modelyard.core.names import T_AUDIT_HEAD
    from modelyard.errors import AuditTampered
    from modelyard.store.vault import event_key
    from modelyard.trail.audit import AuditLog

    yard = Yard()
    yard.register(trained["model"], "anchored")
    yard.promote("anchored", 1, to="staging")
    # The newest event removed, and the registry's tag put back to the event before it.
    last = yard.history("anchored")[-1]
    yard.vault.store.delete(event_key("anchored", last.seq))
    # The vault's trail as it is now (plain `history` shows the copy this machine verified).
    before = AuditLog(yard.vault.store, "anchored").events()[-1]
    yard.tracking.set_model_tag("anchored", T_AUDIT_HEAD, f"{before.seq}:{before.hash}")
    with pytest.raises(AuditTampered, match="vault's audit head"):
        yard.history("anchored", verify=True)


def test_embedded_identity_is_asserted_or_the_os_user(
        embedded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard import Yard

    identity = Yard().governance.identity()
    assert (identity.user, identity.source, identity.authenticated) == (
        "alice", "asserted", False)
    monkeypatch.delenv("MODELYARD_USER")
    monkeypatch.setenv("LOGNAME", "osname")
    seen = Yard().governance.identity()
    assert (seen.user, seen.source) == ("osname", "os-user")


def test_access_log_has_one_event_per_load(embedded: Path, trained: dict[str, Any],
                                           tmp_path: Path) -> None:
    from modelyard import Yard

    yard = Yard()
    yard.register(trained["model"], "seen")
    loaded = yard.load("seen", "latest")
    for _ in range(3):
        loaded.model.predict(trained["X"].head(5))  # predictions are not loads
    yard.load("seen", 1)
    yard.download("seen", "latest", tmp_path / "copy")
    events = yard.governance.access_log("seen")
    assert [e.purpose for e in events] == ["load", "load", "download"]
    assert {e.who for e in events} == {"alice"} and all(e.version == 1 for e in events)
    assert events[0].semver == "1.0.0" and events[0].host
    rows = json.loads(run_cli("--json", "history", "seen", "--access").stdout)
    assert [r["purpose"] for r in rows] == ["load", "load", "download"]
    table = run_cli("history", "seen", "--access")
    assert table.returncode == 0 and "download" in table.stdout


def test_retention_is_enforced_after_each_registration(
        embedded: Path, trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard import Yard

    monkeypatch.setenv("MODELYARD_MAX_VERSIONS", "2")
    yard = Yard()
    yard.register(trained["model"], "kept")
    yard.promote("kept", 1, to="staging")
    for _ in range(3):
        yard.register(trained["model"], "kept", bump="patch")
    stages = {v.version: v.tags.get("modelyard.stage") for v in yard.versions("kept")}
    assert stages == {1: "staging", 2: "archived", 3: "none", 4: "none"}
    cleanup = [e for e in yard.history("kept", verify=True) if e.action == "cleanup"]
    assert [e.detail["archived"] for e in cleanup] == [[2]]


def test_serving_does_not_follow_an_unaudited_move_and_a_webhook_fires(
        embedded: Path, trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from modelyard import Yard
    from modelyard.serving.source import ModelSource
    from tests.support.webhooks import Receiver

    hook = Receiver()
    try:
        monkeypatch.setenv("MODELYARD_WEBHOOKS", json.dumps([hook.url]))
        yard = Yard()
        yard.register(trained["model"], "served")
        yard.promote("served", 1, to="production", force=True, reason="first")
        yard.register(trained["model"], "served", bump="patch")
        sent = len(hook.received)
        MlflowClient(yard.tracking.tracking_uri).set_registered_model_alias(
            "served", "production", 2)
        assert ModelSource(yard, "served").holder("production") == 1
        assert ModelSource(yard, "served", follow_unaudited=True).holder("production") == 2
        assert [d.holder_version for d in yard.governance.unaudited("served")] == [2]
        yard.governance.unaudited("served")  # the same finding is sent once
        posts = [json.loads(r["body"]) for r in hook.received[sent:]]
        assert [p["unaudited"][0]["holder_version"] for p in posts] == [2]
        assert [c.version for c in yard.governance.undo_unaudited("served")] == [1]
        assert ModelSource(yard, "served").holder("production") == 1
        assert yard.governance.unaudited("served") == []
    finally:
        hook.close()
