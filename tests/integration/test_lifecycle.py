"""Stages, gates, approvals, auto-promotion, rollback, retention, on both backends."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from modelyard.errors import (
    ApprovalError,
    BackendError,
    GateFailed,
    InvalidInput,
    NotFound,
    YardError,
)
from tests.support import processes
from tests.support.helpers import fail_first_alias_write, run_cli


def _register(yard: Any, name: str, trained: dict[str, Any], accuracy: float = 0.9,
              model: Any = None, tags: dict[str, str] | None = None) -> Any:
    return yard.register(model if model is not None else trained["model"], name,
                         metrics={"accuracy": accuracy}, input_example=trained["X"].head(3),
                         tags=tags)


def _stages(yard: Any, name: str) -> dict[int, str]:
    return {v.version: v.tags["modelyard.stage"] for v in yard.versions(name)}


def _holders(yard: Any, name: str) -> dict[str, int | None]:
    return {s: yard.tracking.alias_holder(name, s) for s in ("staging", "production")}


def _actions(yard: Any, name: str) -> list[str]:
    return [e["action"] for e in yard.history(name)]


def test_promote_moves_stage_holders(yard: Any, name: str, trained: dict[str, Any]) -> None:
    for accuracy in (0.9, 0.91, 0.92):
        _register(yard, name, trained, accuracy)
    first = yard.promote(name, "v1.0.0", to="staging", reason="candidate")
    assert (first.status, first.from_stage, first.to, first.replaced) == (
        "promoted", "none", "staging", None)
    assert _holders(yard, name) == {"staging": 1, "production": None}
    yard.promote(name, 1, to="production")
    assert _holders(yard, name) == {"staging": None, "production": 1}
    assert _stages(yard, name) == {1: "production", 2: "none", 3: "none"}

    yard.promote(name, 2, to="staging")
    second = yard.promote(name, "staging", to="production", reason="better")
    assert second.replaced == 1
    assert _holders(yard, name) == {"staging": None, "production": 2}
    assert _stages(yard, name) == {1: "archived", 2: "production", 3: "none"}

    with pytest.raises(InvalidInput, match="not staging"):
        yard.promote(name, 3, to="production")
    with pytest.raises(InvalidInput, match="--reason"):
        yard.promote(name, 3, to="production", force=True)
    with pytest.raises(InvalidInput, match="already holds production"):
        yard.promote(name, 2, to="production", force=True, reason="again")
    assert _holders(yard, name) == {"staging": None, "production": 2}

    yard.promote(name, 3, to="production", force=True, reason="hotfix")
    assert _stages(yard, name) == {1: "archived", 2: "archived", 3: "production"}
    yard.promote(name, 3, to="archived", reason="retired")
    assert _holders(yard, name) == {"staging": None, "production": None}
    assert _stages(yard, name)[3] == "archived"
    events = yard.history(name)
    promotes = [e for e in events if e["action"] == "promote"]
    assert [(e["version"], e["from"], e["to"]) for e in promotes] == [
        (1, "none", "staging"), (1, "staging", "production"), (2, "none", "staging"),
        (2, "staging", "production"), (3, "none", "production"), (3, "production", "archived")]
    assert promotes[4]["reason"] == "hotfix" and promotes[4]["detail"]["forced"] is True
    assert promotes[3]["detail"]["displaced"] == [{"version": 1, "stage": "production"}]
    assert promotes[3]["who"] == "alice"


def test_old_production_goes_to_none_without_archiving(
        make_yard: Any, name: str, trained: dict[str, Any]) -> None:
    yard = make_yard(archive_old_versions=False)
    _register(yard, name, trained)
    _register(yard, name, trained)
    yard.promote(name, 1, to="production", force=True, reason="first")
    yard.promote(name, 2, to="staging")
    yard.promote(name, 1, to="staging")  # staging's old holder goes back to none
    assert _stages(yard, name) == {1: "staging", 2: "none"}
    assert _holders(yard, name) == {"staging": 1, "production": None}
    yard.promote(name, 2, to="production", force=True, reason="second")
    yard.promote(name, 1, to="production")
    assert _stages(yard, name) == {1: "production", 2: "none"}


def test_failed_gate_changes_nothing(make_yard: Any, name: str,
                                     trained: dict[str, Any]) -> None:
    yard = make_yard(gates=["accuracy >= 0.95"], required_tags={"validation": "passed"})
    _register(yard, name, trained, 0.9, tags={"validation": "passed"})
    _register(yard, name, trained, 0.97, tags={"validation": "pending"})
    before = (_holders(yard, name), _stages(yard, name), yard.get(name, 1).tags)
    with pytest.raises(GateFailed) as info:
        yard.promote(name, 1, to="staging")  # policy gates guard staging and production
    # One rendering: the gate states the condition once, the detail what was found.
    assert "gate 'accuracy >= 0.95' failed: accuracy = 0.9" in info.value.message
    assert info.value.message.count("0.95") == 1
    with pytest.raises(GateFailed, match="validation"):
        yard.promote(name, 2, to="production", force=True, reason="try")
    assert (_holders(yard, name), _stages(yard, name), yard.get(name, 1).tags) == before
    failed = [e for e in yard.history(name) if e["action"] == "gate_failed"]
    assert [e["version"] for e in failed] == [1, 2]
    metric_gate = failed[0]["gates"][0]
    assert metric_gate["inputs"] == {"metric": "accuracy", "value": 0.9, "op": ">=",
                                     "threshold": 0.95}
    assert metric_gate["passed"] is False
    tag_gate = next(g for g in failed[1]["gates"] if g["kind"] == "tag")
    assert tag_gate["inputs"]["actual"] == "pending" and not tag_gate["passed"]
    # Per-call gates apply to any stage.
    with pytest.raises(GateFailed):
        yard.promote(name, 2, to="staging", gates=["accuracy >= 0.99"])
    with pytest.raises(InvalidInput, match="not understood"):
        yard.promote(name, 2, to="staging", gates=["accuracy is high"])
    assert _stages(yard, name)[2] == "none"


def test_must_beat_production(make_yard: Any, name: str, trained: dict[str, Any]) -> None:
    yard = make_yard(beat_production_metric="accuracy", beat_production_margin=0.05)
    for accuracy in (0.9, 0.93, 0.96):
        _register(yard, name, trained, accuracy)
    yard.promote(name, 1, to="production", force=True, reason="first")
    with pytest.raises(GateFailed, match=r"0\.93 vs production #1 0\.9"):
        yard.promote(name, 2, to="production", force=True, reason="slightly better")
    done = yard.promote(name, 3, to="production", force=True, reason="clearly better")
    beat = done.gates[0]
    assert beat["passed"] and beat["inputs"]["production"] == 0.9
    assert beat["inputs"]["challenger"] == 0.96 and beat["inputs"]["production_version"] == 1
    recorded = yard.history(name)[-1]
    assert recorded["action"] == "promote" and recorded["gates"] == done.gates


def test_holdout_check(yard: Any, name: str, trained: dict[str, Any]) -> None:
    from sklearn.tree import DecisionTreeClassifier

    weak = DecisionTreeClassifier(max_depth=1, random_state=0).fit(trained["X"], trained["y"])
    _register(yard, name, trained, model=weak)
    _register(yard, name, trained)
    _register(yard, name, trained, model=weak)
    yard.promote(name, 1, to="production", force=True, reason="baseline")
    holdout = (trained["X"], trained["y"])
    won = yard.promote(name, 2, to="production", force=True, reason="rf", holdout=holdout)
    gate = won.gates[-1]
    assert gate["kind"] == "holdout" and gate["passed"]
    assert gate["inputs"]["challenger"] > gate["inputs"]["production"]
    assert gate["inputs"]["rows"] == len(trained["y"])
    with pytest.raises(GateFailed, match="holdout"):
        yard.promote(name, 3, to="production", force=True, reason="weak", holdout=holdout)
    assert _holders(yard, name)["production"] == 2

    def always_one(y_true: Any, y_pred: Any) -> float:
        return 1.0

    with pytest.raises(GateFailed, match="always_one 1 vs production #2 1"):
        yard.promote(name, 3, to="production", force=True, reason="tie", holdout=holdout,
                     scorer=always_one)


def test_approval_by_another_user(make_yard: Any, name: str, trained: dict[str, Any]) -> None:
    alice = make_yard(production_approval_required=True)
    bob = make_yard(user="bob", production_approval_required=True)
    _register(alice, name, trained)
    _register(alice, name, trained)
    alice.promote(name, 1, to="staging")  # staging needs no approval
    pending = alice.promote(name, 1, to="production", reason="ready")
    assert pending.status == "pending" and pending.request_id
    assert _holders(alice, name)["production"] is None
    assert [r["id"] for r in alice.requests(name)] == [pending.request_id]
    assert alice.requests(name)[0]["requested_by"] == "alice"

    with pytest.raises(ApprovalError, match="alice requested"):
        alice.approve(pending.request_id)
    assert _holders(alice, name)["production"] is None
    done = bob.approve(pending.request_id, reason="looks good")
    assert done.status == "promoted"
    assert _holders(alice, name) == {"staging": None, "production": 1}
    assert alice.requests(name) == []
    with pytest.raises(ApprovalError, match="already approved by bob"):
        bob.approve(pending.request_id)

    second = alice.promote(name, 2, to="production", force=True, reason="hotfix")
    with pytest.raises(InvalidInput, match="reason"):
        bob.reject(second.request_id, reason="")
    bob.reject(second.request_id, reason="not tested")
    assert alice.requests() == [] or second.request_id not in [
        r["id"] for r in alice.requests()]
    assert _holders(alice, name)["production"] == 1
    with pytest.raises(NotFound):
        bob.approve("0123456789")
    approved = next(e for e in alice.history(name) if e["action"] == "approve")
    assert approved["detail"]["requested_by"] == "alice"
    assert approved["detail"]["approved_by"] == "bob" and approved["who"] == "bob"
    assert [a for a in _actions(alice, name) if a in ("request", "approve", "reject")] == [
        "request", "approve", "request", "reject"]

    selfish = make_yard(production_approval_required=True, allow_self_approval=True)
    third = selfish.promote(name, 2, to="production", force=True, reason="self")
    assert selfish.approve(third.request_id).status == "promoted"
    assert _holders(alice, name)["production"] == 2


def test_auto_promotion_at_registration(make_yard: Any, name: str,
                                        trained: dict[str, Any]) -> None:
    yard = make_yard(auto_promote="accuracy >= 0.85", auto_promote_to="staging")
    _register(yard, name, trained, 0.9)
    assert _holders(yard, name)["staging"] == 1
    low = _register(yard, name, trained, 0.8)  # a failing gate does not fail registration
    assert low.version == 2
    assert _holders(yard, name)["staging"] == 1
    assert _stages(yard, name) == {1: "staging", 2: "none"}
    events = yard.history(name)
    assert [e["action"] for e in events] == ["register", "promote", "register", "gate_failed"]
    assert events[1]["reason"] == "auto-promotion: accuracy >= 0.85"
    assert events[3]["gates"][0]["inputs"]["value"] == 0.8

    prod = make_yard(auto_promote="accuracy >= 0.85", auto_promote_to="production",
                     default_stage="staging")
    _register(prod, name, trained, 0.95)
    assert _holders(prod, name) == {"staging": None, "production": 3}
    assert _stages(prod, name)[3] == "production"


def test_rollback_restores_previous_holder(yard: Any, name: str,
                                           trained: dict[str, Any]) -> None:
    for _ in range(3):
        _register(yard, name, trained)
    with pytest.raises(InvalidInput, match="no version holds production"):
        yard.rollback(name)
    yard.promote(name, 2, to="production", force=True, reason="a")
    with pytest.raises(InvalidInput, match="no earlier production holder"):
        yard.rollback(name)
    yard.promote(name, 1, to="production", force=True, reason="b")
    yard.promote(name, 3, to="production", force=True, reason="c")
    back = yard.rollback(name, reason="latency regression")
    assert (back.status, back.version, back.replaced) == ("rolled back", 1, 3)
    assert _holders(yard, name)["production"] == 1
    three = yard.get(name, 3)
    assert three.stage == "archived"
    assert "latency regression" in three.tags["modelyard.rolled_back"]
    assert _stages(yard, name) == {1: "production", 2: "archived", 3: "archived"}
    event = yard.history(name)[-1]
    assert (event["action"], event["version"], event["detail"]["rolled_back"]) == (
        "rollback", 1, 3)
    assert event["reason"] == "latency regression"
    explicit = yard.rollback(name, to="2", reason="older")
    assert (explicit.version, explicit.replaced) == (2, 1)
    assert _holders(yard, name)["production"] == 2
    assert "modelyard.rolled_back" in yard.get(name, 1).tags


def test_cleanup_never_touches_alias_holders(yard: Any, name: str, trained: dict[str, Any],
                                             stack_or_none: Any) -> None:
    for _ in range(5):
        _register(yard, name, trained)
    yard.promote(name, 1, to="production", force=True, reason="prod")
    yard.set_alias(name, 2, "champion")
    plan = yard.cleanup(name, keep=2)
    assert not plan["applied"]
    assert [(p["version"], p["action"]) for p in plan["plan"]] == [(3, "archive")]
    assert {s["version"]: s["why"] for s in plan["skipped"]} == {
        2: "holds alias champion", 1: "holds alias production"}
    assert _stages(yard, name)[3] == "none"  # a plan changes nothing

    done = yard.cleanup(name, keep=2, yes=True)
    assert done["applied"] and _stages(yard, name)[3] == "archived"
    location = yard.get(name, 3).artifact_location
    deleted = yard.cleanup(name, keep=2, delete=True, yes=True)
    assert [p["version"] for p in deleted["plan"]] == [3]
    assert [v.version for v in yard.versions(name)] == [1, 2, 4, 5]
    assert not yard.vault.store.exists("manifests/" + name + "/3.json")
    assert yard.vault.store.exists("manifests/" + name + "/2.json")
    assert _artifact_files(location, stack_or_none) == []
    assert yard.load(name, "production").version.version == 1
    assert yard.history(name)[-1]["detail"]["deleted"] == [3]
    with pytest.raises(InvalidInput, match="keep"):
        yard.cleanup(name)


def _artifact_files(location: str, stack: Any) -> list[str]:
    if location.startswith("file://"):
        path = Path(urlparse(location).path)
        return [str(p) for p in path.rglob("*")] if path.exists() else []
    client = stack.s3_client()
    prefix = location.split("/models/", 1)[1]
    contents = client.list_objects_v2(Bucket=stack.bucket).get("Contents", [])
    return [o["Key"] for o in contents if prefix in o["Key"]]


def test_cleanup_uses_max_versions_policy(make_yard: Any, name: str,
                                          trained: dict[str, Any]) -> None:
    yard = make_yard(max_versions=1)
    _register(yard, name, trained)
    _register(yard, name, trained)
    # Enforced at registration now: v1 is already archived, so only deleting is left to plan.
    assert yard.get(name, 1).stage == "archived"
    assert yard.cleanup(name)["plan"] == []
    assert [p["version"] for p in yard.cleanup(name, delete=True)["plan"]] == [1]


def test_user_aliases_and_tags_are_audited(yard: Any, name: str,
                                           trained: dict[str, Any]) -> None:
    _register(yard, name, trained)
    _register(yard, name, trained)
    yard.set_alias(name, 1, "champion")
    assert yard.tracking.alias_holder(name, "champion") == 1
    moved = yard.set_alias(name, 2, "champion")
    assert moved["previous"] == 1
    for bad in ("production", "staging", "latest", "v3", "has.dot"):
        with pytest.raises(InvalidInput):
            yard.set_alias(name, 1, bad)
    yard.remove_alias(name, "champion")
    assert yard.tracking.alias_holder(name, "champion") is None
    yard.set_tag(name, 1, "validation", "passed")
    assert yard.get(name, 1).tags["validation"] == "passed"
    with pytest.raises(InvalidInput, match="reserved"):
        yard.set_tag(name, 1, "modelyard.stage", "production")
    yard.remove_tag(name, 1, "validation")
    assert "validation" not in yard.get(name, 1).tags
    assert yard.get(name, 1).stage == "none"
    details = [(e["action"], e["detail"].get("op")) for e in yard.history(name)[2:]]
    assert details == [("alias", "set"), ("alias", "set"), ("alias", "delete"),
                       ("tag", "set"), ("tag", "delete")]
    assert [e["action"] for e in yard.history(name, version=2)] == ["register", "alias", "alias"]


def _race_worker(name: str, version: int, barrier: Any, results: Any) -> None:
    from modelyard import Yard

    yard = Yard()
    yard.tracking.alias_holder(name, "production")  # connect before the race
    barrier.wait(timeout=120)
    try:
        change = yard.promote(name, version, to="production", force=True,
                              reason=f"race {version}")
        results.put((version, "ok", change.event))
    except YardError as exc:
        results.put((version, "error", exc.message))


def test_concurrent_promotions_leave_one_consistent_holder(
        yard: Any, name: str, trained: dict[str, Any]) -> None:
    for _ in range(3):
        _register(yard, name, trained)
    yard.promote(name, 1, to="production", force=True, reason="start")
    ctx = processes.context()
    env, cwd = dict(os.environ), os.getcwd()
    for pair in ((2, 3),):
        barrier = ctx.Barrier(3)
        results = ctx.Queue()
        workers = [ctx.Process(target=processes.in_env,
                               args=(env, cwd, None, _race_worker, name, v, barrier, results))
                   for v in pair]
        for worker in workers:
            worker.start()
        barrier.wait(timeout=120)
        outcomes = [results.get(timeout=120) for _ in pair]
        for worker in workers:
            worker.join(timeout=60)
        assert all(status == "ok" for _, status, _ in outcomes), outcomes
        holder = yard.tracking.alias_holder(name, "production")
        assert holder in pair
        stages = _stages(yard, name)
        assert [v for v, s in stages.items() if s == "production"] == [holder]
        loser = pair[0] if holder == pair[1] else pair[1]
        assert stages[loser] == "archived"
        events = [e for e in yard.history(name) if e["action"] == "promote"]
        last_two = events[-2:]
        assert sorted(e["version"] for e in last_two) == sorted(pair)
        assert last_two[-1]["version"] == holder  # the trail's order is the alias's
        assert last_two[1]["seq"] > last_two[0]["seq"]
    assert _stages(yard, name)[1] == "archived"
    yard.history(name, verify=True)


# -- CLI ----------------------------------------------------------------------------------
def test_cli_promote_rollback_history(yard: Any, name: str, trained: dict[str, Any]) -> None:
    _register(yard, name, trained)
    _register(yard, name, trained)
    done = run_cli("promote", f"{name}@1", "--to", "staging", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["to"] == "staging"
    skip = run_cli("promote", f"{name}@2", "--to", "production")
    assert skip.returncode == 2
    assert skip.stderr.strip().count("\n") == 0 and "not staging" in skip.stderr
    assert run_cli("promote", f"{name}@1", "--to", "production").returncode == 0
    forced = run_cli("promote", f"{name}@2", "--to", "production", "--force", "--reason",
                     "hotfix")
    assert forced.returncode == 0, forced.stderr
    assert "production" in forced.stdout and "replaced" in forced.stdout
    bad = run_cli("promote", f"{name}@9", "--to", "production", "--json")
    assert bad.returncode == 3 and json.loads(bad.stderr)["error"] == "VersionNotFound"
    unknown = run_cli("promote", f"{name}@1", "--to", "heaven")
    assert unknown.returncode == 2 and "unknown stage" in unknown.stderr
    back = run_cli("rollback", name, "--reason", "bad latency", "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["version"] == 1
    assert yard.tracking.alias_holder(name, "production") == 1
    history = run_cli("history", name, "--json")
    actions = [e["action"] for e in json.loads(history.stdout)]
    assert actions[-1] == "rollback" and actions.count("promote") == 3
    table = run_cli("history", name, "--version", "2")
    assert table.returncode == 0 and "rollback" in table.stdout
    assert run_cli("history", name, "--verify").returncode == 0


def test_cli_approvals_alias_tag_cleanup(yard: Any, name: str,
                                         trained: dict[str, Any]) -> None:
    _register(yard, name, trained)
    _register(yard, name, trained)
    env = {"MODELYARD_PRODUCTION_APPROVAL_REQUIRED": "true"}
    filed = run_cli("promote", f"{name}@1", "--to", "production", "--force", "--reason",
                    "go", "--json", env=env)
    assert filed.returncode == 0, filed.stderr
    request_id = json.loads(filed.stdout)["request_id"]
    listed = run_cli("requests", name, env=env)
    assert request_id in listed.stdout
    own = run_cli("approve", request_id, env=env)
    assert own.returncode == 4 and "cannot approve" in own.stderr
    ok = run_cli("approve", request_id, env={**env, "MODELYARD_USER": "bob"})
    assert ok.returncode == 0, ok.stderr
    assert yard.tracking.alias_holder(name, "production") == 1
    assert json.loads(run_cli("requests", "--json", env=env).stdout) == [] or request_id not in (
        run_cli("requests", "--json", env=env).stdout)

    assert run_cli("alias", f"{name}@2", "champion").returncode == 0
    assert yard.tracking.alias_holder(name, "champion") == 2
    stage_alias = run_cli("alias", f"{name}@2", "production")
    assert stage_alias.returncode == 2 and "promote" in stage_alias.stderr
    assert run_cli("tag", f"{name}@2", "validation=passed").returncode == 0
    assert yard.get(name, 2).tags["validation"] == "passed"
    reserved = run_cli("tag", f"{name}@2", "modelyard.stage=production")
    assert reserved.returncode == 2 and "reserved" in reserved.stderr
    assert run_cli("tag", f"{name}@2", "--delete", "validation").returncode == 0
    assert "validation" not in yard.get(name, 2).tags
    assert run_cli("alias", name, "champion", "--delete").returncode == 0

    _register(yard, name, trained)
    dry = run_cli("cleanup", name, "--keep", "1", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout)["applied"] is False
    assert [p["version"] for p in json.loads(dry.stdout)["plan"]] == [2]
    assert yard.get(name, 2).stage == "none"
    shown = run_cli("cleanup", name, "--keep", "1")
    assert "--yes" in shown.stdout and "#2" in shown.stdout
    applied = run_cli("cleanup", name, "--keep", "1", "--yes")
    assert applied.returncode == 0 and yard.get(name, 2).stage == "archived"
    assert run_cli("cleanup", name, "--keep", "0").returncode == 2


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
    undo = fail_first_alias_write(yard, monkeypatch)
    with pytest.raises(BackendError):
        yard.promote(name, two.version, to="production", force=True, reason="hotfix")
    undo()
    assert _holders(yard, name) == before
    events = yard.history(name, verify=True)
    assert events[-1]["action"] == "move_failed"
    # The next move applies only itself: exactly one production holder, tags agree.
    yard.promote(name, two.version, to="staging")
    assert _holders(yard, name) == {"staging": two.version, "production": one.version}
    stages = {v.version: v.tags.get("modelyard.stage") for v in yard.versions(name)}
    assert stages == {one.version: "production", two.version: "staging"}


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
