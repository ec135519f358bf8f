"""Debris (issue 31.7): a registration killed with SIGKILL at a point of the pipeline leaves
things behind; ``health`` and ``verify --all`` name them (one line each, with the command),
``cleanup --debris`` removes them (audited), and a registration whose process still runs is
never touched. Next to each fault, the sound states raise no alarm."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import processes
from tests.support.helpers import run_cli
from tests.support.processes import Forked
from tests.support.workers import register_until


def _saved(trained: dict[str, Any], folder: Path, trees: int) -> Path:
    """A saved model folder; ``trees`` makes its files (and so its vault objects) its own."""
    import mlflow.sklearn
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=trees, random_state=0).fit(
        trained["X"], trained["y"])
    mlflow.sklearn.save_model(model, str(folder), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    return folder


def _start(name: str, source: Path, point: str, how: str, flag: Path,
           action: str = "register", cwd: Path | None = None) -> Forked:
    """A process that registers (or imports) and stops itself at ``point`` with ``how``."""
    return processes.start(register_until, name, str(source), point, action, how, str(flag),
                           cwd=cwd)


def _wait_for(proc: Forked, flag: Path) -> None:
    deadline = time.monotonic() + 240
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the worker ended early ({proc.returncode}): "
                                 f"{proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        assert time.monotonic() < deadline, "the worker never reached its point"
        time.sleep(0.05)


def _debris_lines(health: dict[str, Any]) -> list[str]:
    return [c["detail"] for c in health["checks"] if c["check"] == "debris"]


def _health(name: str) -> dict[str, Any]:
    # One model: on the server backend the registry is shared by the whole session, while
    # each test has a vault of its own (other tests' versions have no trail in it).
    done = run_cli("health", "--model", name, "--json")
    return json.loads(done.stdout)


def _objects(yard: Any) -> set[str]:
    return set(yard.ctx.vault.store.list("objects/"))


@pytest.mark.parametrize("point", ["uploaded", "manifest", "ready"])
def test_killed_registration_is_reported_and_cleaned(
        yard: Any, name: str, trained: dict[str, Any], isolated: Path, point: str,
        backend: str) -> None:
    good = yard.register_directory(_saved(trained, isolated / "good", 3), name)
    before = _health(name)
    assert _debris_lines(before) == [], "a normal registered version is no debris"
    objects_before = _objects(yard)

    flag = isolated / "reached"
    proc = _start(name, _saved(trained, isolated / "killed", 4), point, "SIGKILL", flag)
    _wait_for(proc, flag)
    assert proc.wait(timeout=60) == -signal.SIGKILL

    # Reported, one line each, naming the version and the command that cleans it.
    lines = _debris_lines(_health(name))
    assert len(lines) == 1, lines
    assert "cleanup --debris" in lines[0] and name in lines[0]
    if point != "uploaded":
        assert "#2" in lines[0], lines
    checked = run_cli("verify", "--all", name, "--json")
    assert checked.returncode == 5, checked.stdout
    verdict = json.loads(checked.stdout)
    assert [d["version"] for d in verdict["debris"]] == [None if point == "uploaded" else 2]
    assert all(v["ok"] for v in verdict["versions"]), "the sound versions stay sound"

    # A dry run changes nothing.
    dry = run_cli("cleanup", "--debris", name, "--dry-run")
    assert dry.returncode == 0 and "would clean" in dry.stdout and name in dry.stdout
    assert yard.ctx.vault.store.list(f"journal/{name}/")

    records = {r.version: r for r in yard.tracking.versions(name)}
    run_id = json.loads(yard.ctx.vault.store.get_bytes(
        yard.ctx.vault.store.list(f"journal/{name}/")[0]))["run_id"]
    done = run_cli("cleanup", "--debris", name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not yard.ctx.vault.store.list("journal/")
    events = yard.history(name, verify=True)
    after = {r.version: r for r in yard.tracking.versions(name)}
    if point == "ready":
        # A complete version stays, and gets the event the dead process did not write.
        assert after[2].tags["modelyard.status"] == "ready" and yard.verify(name, 2)
        recorded = [e for e in events if e.version == 2]
        assert [e.action for e in recorded] == ["register"]
        assert "cleanup --debris" in recorded[0].detail["recorded_by"]
        assert yard.tracking.get_run(run_id)["status"] == "FINISHED"
    else:
        assert list(after) == [1], f"left behind: {set(after) - {1}} (was {set(records)})"
        assert [e.action for e in events][-1] == "debris"
        assert yard.tracking.get_run(run_id)["status"] == "FAILED"
    assert _debris_lines(_health(name)) == []

    # The killed registration's staged objects wait out the grace period; then they go (the
    # whole vault is looked at: the embedded registry is this test's alone).
    if point != "ready" and backend == "embedded":
        assert _objects(yard) - objects_before, "the killed registration staged objects"
        assert run_cli("cleanup", "--debris", "--grace", "0").returncode == 0
        assert _objects(yard) == objects_before
    assert run_cli("verify", "--all", name).returncode == 0
    later = yard.register_directory(isolated / "killed", name)
    assert str(later.semver) > str(good.semver) and yard.verify(name, later.version)


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_killed_import_is_reported_and_cleaned(yard: Any, name: str, trained: dict[str, Any],
                                               isolated: Path) -> None:
    """An import killed after its version is ready, before its ``import`` event: reported,
    and cleanup records the event as an import (into a registry of its own folder)."""
    yard.register_directory(_saved(trained, isolated / "good", 3), name)
    doc = isolated / "export.json"
    doc.write_text(json.dumps(yard.export([name])))
    other = isolated / "other"
    other.mkdir()
    flag = isolated / "reached"
    proc = _start(name, doc, "ready", "SIGKILL", flag, action="import", cwd=other)
    _wait_for(proc, flag)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    health = json.loads(run_cli("health", "--json", cwd=other).stdout)
    lines = _debris_lines(health)
    assert len(lines) == 1 and "import" in lines[0] and "#1" in lines[0], lines
    assert run_cli("cleanup", "--debris", cwd=other).returncode == 0
    from modelyard import Yard

    there = Yard(home=str(other / ".modelyard"))
    assert [e.action for e in there.history(name, verify=True)][-1] == "import"
    assert _debris_lines(json.loads(run_cli("health", "--json", cwd=other).stdout)) == []


def test_registration_from_before_the_journal_left_running_is_found_and_cleaned(
        yard: Any, name: str, trained: dict[str, Any], isolated: Path) -> None:
    """A registration killed after its upload by a release that kept no journal leaves a
    RUNNING run, its logged model and files, and no version. Past the grace period it is
    found (health, verify --all) and removed (cleanup --debris) by the path journaled debris
    takes; within it, and for a run modelyard did not make, nothing is said or done."""
    yard.register_directory(_saved(trained, isolated / "good", 3), name)
    own = yard.tracking.create_run(yard.settings.experiment, "mine", tags={})  # a user's own
    flag = isolated / "reached"
    proc = _start(name, _saved(trained, isolated / "killed", 4), "uploaded", "SIGKILL", flag)
    _wait_for(proc, flag)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    # The journal came later: a registration of an earlier release left no entry.
    store = yard.ctx.vault.store
    [entry] = store.list(f"journal/{name}/")
    body = json.loads(store.get_bytes(entry))
    run_id, location = body["run_id"], body["location"]
    store.delete(entry)
    assert yard.tracking.get_run(run_id)["status"] == "RUNNING"
    assert yard.tracking.artifacts.artifact_files(location)

    # Within the grace period it may be a registration running elsewhere: no alarm.
    assert _debris_lines(_health(name)) == []
    assert run_cli("verify", "--all", name).returncode == 0
    # Past it (no grace here), found by the same path as journaled debris, and only it.
    found = yard.protection.debris.find([name], grace=0)
    assert [(i.kind, i.key) for i in found.items] == [("run", run_id)], found.items
    assert "cleanup --debris" in found.items[0].line and name in found.items[0].line
    dry = run_cli("cleanup", "--debris", name, "--dry-run", "--grace", "0")
    assert dry.returncode == 0 and f"would clean: {name}: run {run_id}" in dry.stdout, dry.stdout
    assert yard.tracking.get_run(run_id)["status"] == "RUNNING"
    done = run_cli("cleanup", "--debris", name, "--grace", "0")
    assert done.returncode == 0 and f"removed: {name}: run {run_id}" in done.stdout, done.stdout
    assert yard.tracking.get_run(run_id)["status"] == "FAILED"
    assert not yard.tracking.artifacts.artifact_files(location), "its files are removed"
    assert yard.tracking.get_run(own)["status"] == "RUNNING", "a run not modelyard's is kept"
    yard.tracking.end_run(own)
    events = yard.history(name, verify=True)
    assert [e.action for e in events] == ["register", "debris"]
    assert events[-1].detail["run_id"] == run_id
    assert yard.protection.debris.find([name], grace=0).items == []
    assert run_cli("verify", "--all", name).returncode == 0


def test_live_registration_is_never_debris(yard: Any, name: str, trained: dict[str, Any],
                                           isolated: Path) -> None:
    """A registration stopped (SIGSTOP) with its version pending looks like one that died,
    except that its process runs: cleanup with no grace at all leaves it alone."""
    yard.register_directory(_saved(trained, isolated / "good", 3), name)
    flag = isolated / "reached"
    proc = _start(name, _saved(trained, isolated / "paused", 4), "manifest", "SIGSTOP", flag)
    try:
        _wait_for(proc, flag)
        assert _debris_lines(_health(name)) == []
        done = run_cli("cleanup", "--debris", name, "--grace", "0")
        assert done.returncode == 0 and "kept (in flight)" in done.stdout, done.stdout
        assert yard.tracking.get_version(name, 2).tags["modelyard.status"] == "pending"
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert yard.get(name, 2).tags["modelyard.status"] == "ready"
    assert [e.action for e in yard.history(name, verify=True)] == ["register", "register"]
    assert _debris_lines(_health(name)) == []
    assert run_cli("verify", "--all", name).returncode == 0


def test_sound_states_are_no_debris(yard: Any, make_yard: Any, name: str,
                                    trained: dict[str, Any], isolated: Path) -> None:
    """A plain-MLflow version, an imported registry and a restored version are no debris,
    even with no grace period at all."""
    import mlflow
    import mlflow.sklearn

    yard.register_directory(_saved(trained, isolated / "good", 3), name)
    mlflow.set_tracking_uri(yard.tracking.tracking_uri)
    mlflow.set_experiment("plain")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(trained["model"], name="model",
                                        pip_requirements=["scikit-learn"],
                                        serialization_format="cloudpickle")
    client = mlflow.MlflowClient(yard.tracking.tracking_uri)
    client.create_registered_model(f"{name}-plain")
    client.create_model_version(f"{name}-plain", info.model_uri, run_id=info.run_id,
                                model_id=info.model_id)
    # An import, into a registry of its own (the export keeps the model's name).
    other = make_yard(tracking_uri=f"sqlite:///{isolated / 'other.db'}",
                      vault=str(isolated / "other-vault"))
    other.import_registry(json.dumps(yard.export([name])))
    assert other.protection.cleanup_debris(grace=0, dry_run=True).items == []
    assert [c for c in other.incidents.health().checks if c.check == "debris"] == []
    # A restore from the backup store, of a version deleted from the registry.
    backed = make_yard(backup=str(isolated / "backup"))
    backed.register_directory(isolated / "good", name, params={"again": 1})
    assert backed.protection.backup([(name, None)]).ok
    backed.tracking.delete_version(name, 2)
    backed.protection.restore(name)
    report = yard.protection.cleanup_debris([name, f"{name}-plain"], grace=0, dry_run=True)
    assert report.items == [], [i.line for i in report.items]
    assert _debris_lines(_health(name)) == []
    checked = run_cli("verify", "--all", name, "--json")
    assert json.loads(checked.stdout)["debris"] == []
