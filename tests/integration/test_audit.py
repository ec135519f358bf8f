"""The audit trail: hash chain, tamper detection, concurrent writers, on both backends."""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import pytest

from modelyard.errors import AuditTampered, ModelNotFound
from modelyard.trail.audit import GENESIS, AuditLog, event_key
from tests.support.helpers import run_cli


def _trail(yard: Any, name: str, trained: dict[str, Any]) -> None:
    yard.register(trained["model"], name, metrics={"accuracy": 0.9},
                  input_example=trained["X"].head(3))
    yard.promote(name, 1, to="staging", reason="first look")
    yard.set_tag(name, 1, "validation", "passed")
    yard.promote(name, 1, to="production", reason="validated")


def test_events_are_chained_and_complete(yard: Any, name: str,
                                         trained: dict[str, Any]) -> None:
    _trail(yard, name, trained)
    events = yard.history(name, verify=True)
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert [e["action"] for e in events] == ["register", "promote", "tag", "promote"]
    assert events[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"]
    last = events[-1]
    expected_keys = {"seq", "who", "when", "action", "name", "version", "semver", "from", "to",
                     "reason", "gates", "detail", "stages", "prev_hash", "hash"}
    assert expected_keys <= set(last)
    assert (last["who"], last["version"], last["semver"], last["from"], last["to"],
            last["reason"]) == ("alice", 1, "1.0.0", "staging", "production", "validated")
    assert last["stages"]["production"] == 1 and last["stages"]["staging"] is None
    keys = yard.vault.store.list(f"audit/{name}/")
    # The events, and the head object anchoring the newest of them in the vault.
    assert keys == [f"audit/{name}/{seq:010d}.json" for seq in range(1, 5)] + [
        f"audit/{name}/HEAD.json"]
    head = json.loads(yard.vault.store.get_bytes(f"audit/{name}/HEAD.json"))
    assert (head["seq"], head["hash"]) == (4, last["hash"])
    with pytest.raises(ModelNotFound):
        yard.history(name + "-missing")


def test_edited_event_is_detected(yard: Any, name: str, trained: dict[str, Any]) -> None:
    _trail(yard, name, trained)
    store = yard.vault.store
    key = event_key(name, 2)
    event = json.loads(store.get_bytes(key))
    event["reason"] = "nobody will notice"
    store.put_bytes(key, json.dumps(event).encode())
    with pytest.raises(AuditTampered, match="event 2 was modified"):
        yard.history(name, verify=True)
    # Rehashing the edited event does not help: the next one is chained to the original.
    from modelyard.trail.audit import AuditEvent

    forged = AuditEvent.from_dict(event)
    forged.hash = forged.compute_hash()
    store.put_bytes(key, json.dumps(forged.to_dict()).encode())
    with pytest.raises(AuditTampered, match="event 3 is not chained"):
        yard.history(name, verify=True)
    done = run_cli("history", name, "--verify")
    assert done.returncode == 5
    assert done.stderr.count("\n") == 1 and "event 3" in done.stderr
    as_json = run_cli("history", name, "--verify", "--json")
    assert json.loads(as_json.stderr)["error"] == "AuditTampered"


def test_deleted_events_are_detected(yard: Any, name: str, trained: dict[str, Any]) -> None:
    _trail(yard, name, trained)
    store = yard.vault.store
    store.delete(event_key(name, 4))  # the newest one: the registry's head catches it
    with pytest.raises(AuditTampered, match="event 4 is missing"):
        yard.history(name, verify=True)
    store.delete(event_key(name, 2))
    with pytest.raises(AuditTampered, match="event 2 is missing"):
        yard.history(name, verify=True)
    assert run_cli("history", name, "--verify").returncode == 5
    assert run_cli("history", name).returncode == 0  # reading without --verify still works


def test_concurrent_writers_never_share_a_sequence_number(yard: Any, name: str) -> None:
    store = yard.vault.store
    errors: list[Exception] = []

    def write(worker: int) -> None:
        log = AuditLog(store, name)
        try:
            for i in range(5):
                log.append(lambda prev, i=i: {"action": "note", "reason": f"{worker}-{i}",
                                              "stages": dict(prev.stages) if prev else {}},
                           who=f"w{worker}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    log = AuditLog(store, name)
    assert log.verify() == 20
    reasons = sorted(e.reason or "" for e in log.events())
    assert reasons == sorted(f"{w}-{i}" for w in range(4) for i in range(5))


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


def test_a_verdict_is_the_same_with_a_warm_or_a_cold_cache(
    yard: Any, make_yard: Any, name: str, trained: dict[str, Any], tmp_path: Any,
) -> None:
    """An event appended to the vault's trail (and its HEAD.json) but not to the registry's
    head tag: ``history --verify`` and ``health`` say the same from this machine, whose cache
    remembers the older head, and from a machine with an empty cache."""
    from modelyard.errors import UnauditedMove
    from modelyard.trail.audit import Auditor

    for depth in (1, 2):
        yard.register(trained["model"], name, params={"depth": depth},
                      input_example=trained["X"].head(3))
    yard.promote(name, 2, to="production", force=True, reason="ship")
    yard.history(name, verify=True)  # healthy; the cache now remembers the head
    yard.list_models()

    def forged(prev: Any) -> dict[str, Any]:
        return {"action": "promote", "version": 1, "semver": "1.0.0", "from_": "none",
                "to": "production", "reason": "appended to the vault alone", "gates": [],
                "detail": {}, "stages": {"production": 1, "staging": None}}

    Auditor(yard.ctx).log(name).append(forged, who="mallory")  # vault only, no registry tag
    cold = make_yard(cache_dir=str(tmp_path / "another-machine"))
    for machine in (yard, cold):
        with pytest.raises(UnauditedMove):
            machine.history(name, verify=True)
        report = machine.incidents.health(models=[name])
        assert any(c.level == "critical" and c.check == "audited holders" and c.target == name
                   for c in report.checks), [c.to_dict() for c in report.checks]


def test_signed_anchors_catch_a_removed_newest_event(
    make_yard: Any, name: str, trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With an audit key, removing the newest event and rewriting both anchors to the one
    before is caught: an anchor cannot be written without the key."""
    from modelyard.core.names import T_AUDIT_HEAD
    from modelyard.store.vault import audit_head_key

    monkeypatch.setenv("MODELYARD_AUDIT_KEY", "the audit key of this registry")
    yard = make_yard()
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    yard.promote(name, 1, to="production", force=True, reason="ship")
    events = yard.history(name, verify=True)
    newest, before = events[-1], events[-2]
    tag = yard.ctx.reads.get_model(name).tags[T_AUDIT_HEAD]
    assert tag.startswith(f"{newest.seq}:{newest.hash}:")  # signed
    store = yard.vault.store
    store.delete(event_key(name, newest.seq))
    yard.tracking.set_model_tag(name, T_AUDIT_HEAD, f"{before.seq}:{before.hash}")
    store.put_bytes(audit_head_key(name), json.dumps(
        {"seq": before.seq, "hash": before.hash, "when": before.when}).encode())
    with pytest.raises(AuditTampered, match="not signed with the audit key"):
        yard.history(name, verify=True)
    forged = f"{before.seq}:{before.hash}:{'0' * 64}"
    yard.tracking.set_model_tag(name, T_AUDIT_HEAD, forged)
    with pytest.raises(AuditTampered, match="signature"):
        yard.history(name, verify=True)


def test_an_existing_trail_is_sealed_under_a_new_key(
    make_yard: Any, name: str, trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Turning the key on for an existing registry: every old event is unsigned; `history
    --sign-existing` checks the chain and seals it with one signed, audited event."""
    yard = make_yard()
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    yard.promote(name, 1, to="staging", reason="try")
    monkeypatch.setenv("MODELYARD_AUDIT_KEY", "a key set later")
    keyed = make_yard()
    with pytest.raises(AuditTampered, match="--sign-existing"):
        keyed.history(name, verify=True)
    before = len(keyed.history(name))
    sealed = run_cli("history", name, "--sign-existing", "--json")
    assert sealed.returncode == 0, sealed.stderr
    seal = json.loads(sealed.stdout)
    assert seal["action"] == "seal" and seal["seq"] == before + 1 and seal["sig"]
    assert seal["detail"]["sealed"]["seq"] == before
    events = keyed.history(name, verify=True)  # chain, signatures and both anchors hold
    keyed.promote(name, 1, to="production", force=True, reason="ship under the key")
    assert keyed.history(name, verify=True)[-1].sig
    again = run_cli("history", name, "--sign-existing")
    assert again.returncode != 0 and "signed with the key already" in again.stderr
    # A sealed event rewritten afterwards still breaks the chain.
    first = dict(events[0].to_dict(), reason="rewritten after the seal")
    keyed.vault.store.put_bytes(event_key(name, 1), json.dumps(first).encode())
    with pytest.raises(AuditTampered, match="event 1 was modified"):
        keyed.history(name, verify=True)
    monkeypatch.delenv("MODELYARD_AUDIT_KEY")
    refused = run_cli("history", name, "--sign-existing")
    assert refused.returncode == 2 and "set audit_key" in refused.stderr
