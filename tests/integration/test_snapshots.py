"""Snapshots on both backends: record, move things, diff, restore every alias as recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelyard.errors import Conflict, InvalidInput, NotFound
from tests.support.helpers import fail_first_alias_write, run_cli


def _aliases(yard: Any, name: str) -> dict[str, int]:
    return dict(yard.tracking.get_model(name).aliases)


def _stages(yard: Any, name: str) -> dict[int, str]:
    return {v.version: v.tags.get("modelyard.stage", "none") for v in yard.versions(name)}


@pytest.fixture
def three(yard: Any, name: str, trained: dict[str, Any]) -> Any:
    """Three versions of ``name``: 1 in production, 2 in staging, alias ``champion`` on 1."""
    for depth in (3, 4, 5):
        yard.register(trained["model"], name, params={"depth": depth},
                      input_example=trained["X"].head(3), pip_requirements=["scikit-learn"])
    yard.promote(name, 1, to="production", force=True, reason="first")
    yard.promote(name, 2, to="staging")
    yard.set_alias(name, 1, "champion")
    return yard


def test_snapshot_restore_puts_every_alias_back_and_audits_each_move(
    three: Any, name: str
) -> None:
    yard = three
    snap = yard.protection.snapshots.create("before", models=[name], message="known good")
    assert snap.holders(name)["production"]["semver"] == "1.0.0"
    assert snap.holders(name)["production"]["manifest_sha256"]
    assert set(snap.holders(name)) == {"production", "staging", "champion"}
    recorded = _aliases(yard, name)
    stages_then = _stages(yard, name)
    assert yard.protection.snapshots.versions(name) == {1, 2}
    with pytest.raises(Conflict):
        yard.protection.snapshots.create("before")  # immutable
    with pytest.raises(InvalidInput):
        yard.protection.snapshots.create("../escape")

    # things move: 3 goes to production past staging, champion moves, a new alias appears
    yard.promote(name, 3, to="production", force=True, reason="hotfix")
    yard.set_alias(name, 3, "champion")
    yard.set_alias(name, 2, "shadow")
    diff = yard.protection.snapshots.diff("before")
    assert {(m["alias"], m["before"].get("semver"), m["after"].get("semver"))
            for m in diff.moved} == {("production", "1.0.0", "1.0.2"),
                                      ("champion", "1.0.0", "1.0.2"),
                                      ("shadow", None, "1.0.1")}
    assert not diff.added and not diff.deleted

    moved = _aliases(yard, name)
    events_before = len(yard.history(name))
    plan = yard.protection.snapshots.restore("before", dry_run=True)
    assert plan.dry_run and len(plan.moves) == 3 and not any(m.applied for m in plan.moves)
    assert _aliases(yard, name) == moved and len(yard.history(name)) == events_before

    done = yard.protection.snapshots.restore("before")
    assert _aliases(yard, name) == recorded
    assert _stages(yard, name) == {**stages_then, 3: "archived"}  # displaced from production
    assert all(m.applied and m.event for m in done.moves)
    events = yard.history(name)[events_before:]
    assert len(events) == len(done.moves) == 3
    assert all(e.reason == "snapshot restore before" for e in events)
    assert yard.history(name, verify=True)
    assert yard.protection.snapshots.diff("before").moved == []
    again = yard.protection.snapshots.restore("before")
    assert again.moves == [] and again.unchanged == 3  # only what differs moves

    # a version the snapshot needs was deleted and no restore is possible: one clear error,
    # nothing moved
    yard.promote(name, 3, to="production", force=True, reason="again")
    yard.tracking.delete_version(name, 1)
    now = _aliases(yard, name)
    with pytest.raises(NotFound, match="nothing changed"):
        yard.protection.snapshots.restore("before")
    assert _aliases(yard, name) == now
    other = yard.protection.snapshots.create("after")
    diff = yard.protection.snapshots.diff("before", "after")
    assert [d["semver"] for d in diff.deleted] == ["1.0.0"]
    assert {s.tag for s in yard.protection.snapshots.list()} >= {"before", "after"}
    assert other.holders(name)["production"]["version"] == 3


def test_cli_snapshot_commands(three: Any, name: str) -> None:
    yard = three
    created = run_cli("snapshot", "create", "cli-snap", "--model", name, "-m", "hello")
    assert created.returncode == 0, created.stderr
    again = run_cli("snapshot", "create", "cli-snap", "--model", name)
    assert again.returncode == 4 and "immutable" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    listed = json.loads(run_cli("snapshot", "list", "--json").stdout)
    assert "cli-snap" in [s["tag"] for s in listed]
    shown = json.loads(run_cli("snapshot", "show", "cli-snap", "--json").stdout)
    assert shown["models"][name]["aliases"]["champion"]["version"] == 1
    assert run_cli("snapshot", "show", "nope").returncode == 3

    yard.set_alias(name, 2, "champion")
    diff = run_cli("snapshot", "diff", "cli-snap")
    assert diff.returncode == 0 and "champion" in diff.stdout
    plan = run_cli("snapshot", "restore", "cli-snap")  # no --yes, no terminal: plan only
    assert plan.returncode == 0 and "plan only" in plan.stdout
    assert _aliases(yard, name)["champion"] == 2
    dry = json.loads(run_cli("snapshot", "restore", "cli-snap", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["moves"][0]["alias"] == "champion"
    applied = run_cli("snapshot", "restore", "cli-snap", "--yes")
    assert applied.returncode == 0, applied.stderr
    assert _aliases(yard, name)["champion"] == 1


def test_snapshot_records_git_and_dvc_and_refuses_data_restore_in_dirty_workspace(
    isolated: Any, tmp_path: Any
) -> None:
    """Inside a project: the git commit and dvc.lock's hashes are recorded; ``--data`` refuses
    a workspace with uncommitted changes before anything moves (no registry needed)."""
    import subprocess

    from modelyard import Yard
    from modelyard.errors import UserError

    project = isolated
    (project / ".dvc").mkdir()
    (project / "modelyard.toml").write_text("")
    (project / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  prepare:\n    cmd: python prepare.py\n    outs:\n"
        "    - path: data/train.csv\n      hash: md5\n      md5: 0123456789abcdef0123456789abcdef\n"
        "      size: 10\n")
    (project / "data").mkdir()
    (project / "data" / "train.csv.dvc").write_text(
        "outs:\n- md5: fedcba9876543210fedcba9876543210\n  path: raw.csv\n  hash: md5\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=project, check=True)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "first"], cwd=project, check=True)
    yard = Yard()
    snap = yard.protection.snapshots.create("data-1", include_models=False)
    assert len(snap.git["commit"]) == 40 and snap.git["branch"] == "main"
    assert snap.data == [{"path": "data/raw.csv", "md5": "fedcba9876543210fedcba9876543210"},
                         {"path": "data/train.csv", "md5": "0123456789abcdef0123456789abcdef"}]
    (project / "dvc.lock").write_text((project / "dvc.lock").read_text().replace("0123", "9999"))
    with pytest.raises(UserError, match="uncommitted changes"):
        yard.protection.snapshots.restore("data-1", data=True)
    subprocess.run([*git, "commit", "-qam", "second"], cwd=project, check=True)
    plan = yard.protection.snapshots.restore("data-1", data=True, dry_run=True)
    assert [d["path"].rsplit("/", 2)[-2:] for d in plan.data] == [["data", "train.csv"]]
    assert plan.moves == []


def test_snapshot_restore_data_checks_out_the_recorded_bytes(isolated: Any) -> None:
    """A real git + DVC project with one tiny CSV: snapshot, change the data (``dvc add``,
    commit), then ``snapshot restore --data --yes`` puts the recorded bytes back from DVC's
    cache, the ``.dvc`` file names them again and ``dvc status`` finds nothing to do."""
    from pathlib import Path

    from tests.support.helpers import git_dvc_project

    project = isolated
    sh, git, dvc = git_dvc_project(project)
    data = project / "data" / "raw.csv"
    data.parent.mkdir()
    first, second = "a,b\n1,2\n", "a,b\n1,2\n3,4\n"
    data.write_text(first)
    sh(*dvc, "add", "-q", "data/raw.csv")
    sh(*git, "add", "-A")
    sh(*git, "commit", "-qm", "first data")
    recorded = (project / "data" / "raw.csv.dvc").read_text()

    from modelyard import Yard

    Yard().protection.snapshots.create("data-v1", include_models=False)  # no registry needed
    data.write_text(second)
    sh(*dvc, "add", "-q", "data/raw.csv")
    sh(*git, "commit", "-qam", "second data")
    assert (project / "data" / "raw.csv.dvc").read_text() != recorded

    done = run_cli("snapshot", "restore", "data-v1", "--data", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [Path(d["path"]).relative_to(project).as_posix() for d in result["data"]] == [
        "data/raw.csv"]
    assert data.read_text() == first
    assert (project / "data" / "raw.csv.dvc").read_text().split("md5: ")[1][:32] == \
        recorded.split("md5: ")[1][:32]
    assert json.loads(sh(*dvc, "status", "--json") or "{}") == {}
    sh(*git, "commit", "-qam", "data back")
    again = run_cli("snapshot", "restore", "data-v1", "--data", "--yes", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["data"] == []


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_move_failing_midway_is_reported_undone_and_the_rest_not_applied(
        yard: Any, name: str, trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry refuses the first alias write of a restore (as a dropped connection is
    translated at the edge): that move is undone, the model's next move is not tried, the
    report says both and what to run; running it again then finishes the restore."""
    from modelyard.errors import BackendError

    for n in range(2):
        yard.register(trained["model"], name, params={"n": n})
    yard.promote(name, 1, to="production", force=True, reason="first")
    yard.promote(name, 2, to="staging")
    yard.protection.snapshots.create("before", models=[name], include_data=False)
    yard.promote(name, 2, to="production", force=True, reason="second")
    undo = fail_first_alias_write(yard, monkeypatch)
    done = run_cli("snapshot", "restore", "before", "--yes")
    undo()
    assert done.returncode == BackendError.exit_code, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("Error: snapshot restore stopped: Tracking backend error: "
                           "connection dropped; 0 move(s) applied, 1 undone, 0 could not be "
                           "undone, 1 not applied; run `modelyard snapshot restore before "
                           "--yes` again once it is back"), line
    assert f"undone {name} stage production: #2 -> #1 (event " in done.stdout, done.stdout
    assert f"not moved {name} stage staging: (none) -> #2" in done.stdout, done.stdout
    assert _aliases(yard, name) == {"production": 2}  # as before the restore
    assert [e.action for e in yard.history(name, verify=True)][-2:] == [
        "snapshot_restore", "move_failed"]

    again = run_cli("snapshot", "restore", "before", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _aliases(yard, name) == {"production": 1, "staging": 2}
    assert _stages(yard, name) == {1: "production", 2: "staging"}
    assert yard.governance.unaudited(name) == []
