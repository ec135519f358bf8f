"""The main job on both backends: `init` + `dvc repro` registers, DVC data lineage round-trips,
and the demo runs end to end (shortened)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelyard.cli.demo import run_demo
from modelyard.project import dvc as dvc_support
from modelyard.project.dvc import set_param
from tests.support.helpers import run_cli, run_cli_subprocess


def _venv_env() -> dict[str, str]:
    """Stages run `python ...`: the interpreter of this test run."""
    return {**os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}


def _sh(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=_venv_env(),
                          check=False, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _project(root: Path, name: str, rows: int = 600) -> Path:
    project = root / "proj"
    run_cli("init", str(project), "--name", name, cwd=root, check=True)
    set_param(project / "params.yaml", "prepare", "n_rows", str(rows))
    set_param(project / "params.yaml", "train", "n_estimators", "10")
    set_param(project / "params.yaml", "train", "cv_folds", "2")
    return project


def _commit(project: Path, message: str) -> None:
    _sh(["git", "add", "-A"], project)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m",
         message], project)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# On the embedded default the same round trip runs on the demo's project (below).
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_init_repro_registers_then_lineage_checkout_restores_the_old_data(
    make_yard: Any, name: str, backend: str, stack_or_none: Any, isolated: Path
) -> None:
    project = _project(isolated, name)
    scaffolded = _sh(["git", "rev-parse", "HEAD"], project).strip()  # init's first commit
    # The DVC remote is the same S3 endpoint MLflow uses.
    url = f"s3://{stack_or_none.bucket}/dvc-{name}"
    _sh([sys.executable, "-m", "dvc", "remote", "add", "-d", "store", url], project)
    _sh([sys.executable, "-m", "dvc", "remote", "modify", "store", "endpointurl",
         stack_or_none.s3_endpoint_url], project)
    _sh([sys.executable, "-m", "dvc", "repro", "-q"], project)
    # `init` + `dvc repro` registered v1.0.0, with lineage from the first registration on.
    os.chdir(project)
    yard = make_yard()
    mv = yard.get(name, "latest")
    assert mv.semver == "1.0.0"
    assert {"accuracy", "roc_auc", "f1"} <= set(mv.metrics)
    # Lineage is not empty from the first registration on: init committed on main.
    assert (mv.lineage.git_commit, mv.lineage.git_branch) == (scaffolded, "main")
    (data,) = mv.lineage.data
    assert data.path == "data/prepared/train.csv" and data.source == "dvc"
    assert data.git_commit == ""  # dvc.lock is not committed while dvc repro runs
    info = json.loads((project / "model.json").read_text())
    assert info["semver"] == "1.0.0" and info["version"] == mv.version
    assert (project / "metrics" / "evaluate.json").is_file()
    _commit(project, "v1")
    train = project / "data" / "prepared" / "train.csv"
    old_sha = _sha(train)
    _sh([sys.executable, "-m", "dvc", "push", "-q"], project)

    set_param(project / "params.yaml", "prepare", "n_rows", "900")
    _sh([sys.executable, "-m", "dvc", "repro", "-q"], project)
    _commit(project, "v2")
    second = yard.get(name, "latest")
    assert (second.semver, second.bump) == ("1.1.0", "minor")
    assert "training data changed" in str(second.bump_reason)
    assert _sha(train) != old_sha
    # Registered inside `dvc repro`: the commit "v1" is the last one that touched dvc.lock,
    # but it records v1.0.0's data, not these bytes. No commit recorded them yet.
    (second_data,) = second.lineage.data
    assert second_data.git_commit == ""
    v2_commit = _sh(["git", "rev-parse", "HEAD"], project).strip()
    assert dvc_support.commit_recording(project, second_data.hash,
                                        path=second_data.path) == v2_commit

    # Without the local DVC cache the bytes must come back from the remote, through DVC.
    shutil.rmtree(project / ".dvc" / "cache")
    done = run_cli("lineage", f"{name}@v1.0.0", "--checkout", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    first = yard.get(name, "v1.0.0")
    assert report["restored"] == [{"path": "data/prepared/train.csv",
                                   "md5": first.lineage.data[0].hash}]
    assert _sha(train) == old_sha
    v1_commit = _sh(["git", "rev-list", "--max-count=1", "HEAD~1"], project).strip()
    # The dvc.lock commit that recorded v1.0.0's data, found once it was committed.
    assert report["lineage"]["data"][0]["git_commit"] == v1_commit


@pytest.mark.slow
def test_demo_runs_end_to_end(isolated: Path) -> None:
    """`make demo`: the embedded default, in a subprocess, at the demo's own sizes."""
    # The demo's own sizes: its data and forests are seeded, so its numbers are the same on
    # every machine, and the dropped column really fails the roc_auc gate.
    done = run_cli_subprocess("demo", "--dir", str(isolated / "demo"), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    steps = json.loads(done.stdout)
    titles = [s["step"] for s in steps]
    assert titles == ["init", "dvc repro", "promote", "new data", "new hyperparameters",
                      "promote", "dropped column", "compare", "rollback", "history", "export",
                      "backup", "snapshot", "drill", "health", "summary"]
    rows = steps[-1]["data"]["rows"]
    assert [(r["semver"], r["bump"]) for r in rows] == [
        ("1.0.0", "initial"), ("1.1.0", "minor"), ("1.1.1", "patch"), ("2.0.0", "major")]
    by_title = {s["step"]: s for s in steps}
    assert "held back" in " ".join(by_title["dropped column"]["lines"])
    stages = {r["semver"]: r["stage"] for r in rows}
    assert stages["1.0.0"] == "production"  # the rollback put the previous holder back
    assert stages["2.0.0"] == "none"
    assert Path(by_title["compare"]["data"]["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(Path(by_title["export"]["data"]["path"]).read_text())["models"]
    backed_up = by_title["backup"]["data"]["versions"]
    assert {v["semver"] for v in backed_up} == {"1.0.0", "1.1.0", "1.1.1", "2.0.0"}
    assert by_title["snapshot"]["data"]["tag"] == "churn-demo"
    drill = by_title["drill"]["data"]
    assert drill["ok"] and drill["layer"] == "L1" and drill["sandbox"]
    assert by_title["health"]["data"]["status"] == "healthy"
    # It ends with the dashboard's command, and the dashboard shows what the demo did.
    project = Path(by_title["init"]["data"]["dir"])
    assert steps[-1]["data"]["ui"] == f"cd {project} && modelyard ui"
    _dashboard_shows_the_demo(project)

    # The demo's project, as a user finds it afterwards (the embedded half of the lineage
    # round trip; tests above run it on the team stack): v1.0.0's lineage names init's
    # commit on main and the DVC-tracked data, and `lineage --checkout` brings that data back
    # through DVC from a remote once the local cache is gone.
    project = Path(by_title["init"]["data"]["dir"])
    scaffolded = _sh(["git", "rev-list", "--max-parents=0", "HEAD"], project).strip()
    recorded_v1 = _sh(["git", "log", "--format=%H", "--grep=^train v1$"], project).strip()
    first = json.loads(run_cli("details", "churn@v1.0.0", "--json", cwd=project,
                               check=True).stdout)
    assert (first["lineage"]["git_commit"], first["lineage"]["git_branch"]) == (scaffolded,
                                                                                "main")
    (data,) = first["lineage"]["data"]
    assert (data["path"], data["source"], data["git_commit"]) == (
        "data/prepared/train.csv", "dvc", "")  # dvc.lock is not committed while dvc repro runs
    _sh([sys.executable, "-m", "dvc", "remote", "add", "-d", "store",
         str(isolated / "dvc-remote")], project)
    # Push v1.0.0's outputs: its dvc.lock for a moment (`--all-commits` would read each
    # commit's own DVC config, which names no remote).
    _sh(["git", "checkout", recorded_v1, "--", "dvc.lock"], project)
    _sh([sys.executable, "-m", "dvc", "push", "-q"], project)
    _sh(["git", "checkout", "HEAD", "--", "dvc.lock"], project)
    shutil.rmtree(project / ".dvc" / "cache")
    train = project / "data" / "prepared" / "train.csv"
    assert hashlib.md5(train.read_bytes()).hexdigest() != data["hash"]  # v2.0.0's data now
    done = run_cli("lineage", "churn@v1.0.0", "--checkout", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["restored"] == [{"path": "data/prepared/train.csv", "md5": data["hash"]}]
    assert hashlib.md5(train.read_bytes()).hexdigest() == data["hash"]
    # The dvc.lock commit that recorded v1.0.0's data, found once it was committed.
    assert report["lineage"]["data"][0]["git_commit"] == recorded_v1


def _dashboard_shows_the_demo(project: Path) -> None:
    from fastapi.testclient import TestClient

    from modelyard.cli.demo import project_settings
    from modelyard.ui.app import create_app

    client = TestClient(create_app(project_settings(project)))
    overview = client.get("/")
    row = overview.text.split('data-model="churn"')[1].split("</tr>")[0]
    assert "v1.0.0" in row and "chain verified" in " ".join(row.split())
    model = client.get("/model?name=churn")
    assert all(f"v{s}" in model.text for s in ("1.0.0", "1.1.0", "1.1.1", "2.0.0"))
    assert model.text.count('class="point"') >= 4 and "gate_failed" in model.text
    assert "model-corruption" in client.get("/incidents").text


def test_demo_stays_in_the_callers_folder(isolated: Path) -> None:
    """The demo never changes the process's working directory: its registry is the one the
    project's stages (run with cwd=the project) register into."""
    before = Path.cwd()
    runner = run_demo(isolated / "demo", rows=200, trees=5)
    try:
        step = next(runner)
    finally:
        runner.close()
    assert Path.cwd() == before
    assert step.title == "init"
    project = isolated / "demo"
    assert str(project / ".modelyard" / "mlflow.db") in step.lines[1]
    assert not (before / ".modelyard").exists()
    branch = _sh(["git", "symbolic-ref", "--short", "HEAD"], project).strip()
    assert branch == "main"
    assert 'gates = ["accuracy >= 0.75", "roc_auc >= 0.83"]' in (
        project / "modelyard.toml").read_text()
