"""reproduce: a version re-run from its recorded commit, data and params in a clean git
worktree reproduces; after its training data changed it does not, and says which file."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import LOGREG_TRAIN, TRAIN_STAGE, run_cli


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            "PATH": path, "PYTHONWARNINGS": "ignore"}


def _data(path: Path, flip: bool = False) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    label = (a + b > 0).astype(int)
    if flip:
        label = 1 - label
    pd.DataFrame({"a": a, "b": b, "label": label}).to_csv(path, index=False)


def _project(root: Path) -> Path:
    from modelyard.project import git

    project = root / "project"
    project.mkdir()
    (project / "train.py").write_text(LOGREG_TRAIN.replace("NAME", "repro"))
    (project / "dvc.yaml").write_text(TRAIN_STAGE)
    (project / "modelyard.toml").write_text("# modelyard project\n")
    (project / ".gitignore").write_text("/.modelyard/\n/data.csv\n")
    _data(project / "data.csv")
    git.init_repository(project)
    for args in (["-m", "dvc", "init", "-q"],):
        subprocess.run([sys.executable, *args], cwd=project, check=True, env=_env())
    git.commit_paths(project, [project / p for p in
                               ("train.py", "dvc.yaml", "modelyard.toml", ".gitignore", ".dvc",
                                ".dvcignore")], "the pipeline")
    # The version to reproduce: the pipeline's script run once, in this process and in the
    # project folder as `dvc repro` would run it (`reproduce` itself runs the real `dvc repro`).
    before = Path.cwd()
    os.chdir(project)
    try:
        runpy.run_path("train.py", run_name="__main__")
    finally:
        os.chdir(before)
    return project


@pytest.mark.slow
def test_reproducible_then_not_after_the_data_changed(tmp_path: Path) -> None:
    project = _project(tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                          text=True, check=True).stdout.strip()
    status_before = subprocess.run(["git", "status", "--porcelain"], cwd=project,
                                   capture_output=True, text=True).stdout

    same = run_cli("reproduce", "repro@1", "--json", cwd=project)
    assert same.returncode == 0, same.stdout + same.stderr
    report = json.loads(same.stdout)
    assert report["reproducible"] and report["commit"] == head
    assert report["metrics"]["accuracy"]["ok"]
    assert report["predictions"]["equal"] and report["predictions"]["rows"] == 20
    assert report["data"][0]["ok"]

    # Nothing registered, the checkout untouched, no worktree left behind.
    done = run_cli("list", "--json", cwd=project, check=True)
    assert [m["versions"] for m in json.loads(done.stdout)] == [1]
    assert subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True,
                          text=True).stdout == status_before
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=project, capture_output=True,
                               text=True).stdout.strip().splitlines()
    assert len(worktrees) == 1

    _data(project / "data.csv", flip=True)
    changed = run_cli("reproduce", "repro@1", cwd=project)
    assert changed.returncode == 1
    assert "does NOT reproduce" in changed.stdout
    assert "data data.csv: sha256" in changed.stdout
    details = json.loads(run_cli("details", "repro@1", "--json", cwd=project,
                                 check=True).stdout)
    assert details["reproduce"]["reproducible"] is False
    assert any(d.startswith("data data.csv") for d in details["reproduce"]["differences"])


def test_the_cache_reproduce_shares_is_the_one_dvc_reads(tmp_path: Path) -> None:
    """reproduce writes the checkout's `.dvc/config.local` itself (no `dvc cache dir --local`
    process): DVC must read it as its cache; `dvc checkout` runs only when there is
    something to check out."""
    from modelyard.incidents.reproduce import _dvc_tracks_outputs, _share_cache

    project = tmp_path / "checkout"
    project.mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=project,
                   check=True, env=_env())
    cache = tmp_path / "source" / ".dvc" / "cache"
    assert _share_cache(project, cache)
    done = subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], cwd=project,
                          capture_output=True, text=True, env=_env(), check=True)
    assert done.stdout.strip() == str(cache)
    assert not _share_cache(project, cache)  # a config.local of its own: left to DVC
    assert not _share_cache(tmp_path, cache)  # not a DVC project
    odd = tmp_path / "project" / "checkout"
    (odd / ".dvc").mkdir(parents=True)
    assert not _share_cache(odd, tmp_path / "a #cache")  # DVC quotes such paths itself
    assert not (odd / ".dvc" / "config.local").exists()

    assert not _dvc_tracks_outputs(project)  # .dvc/ holds DVC's own files only
    (project / "dvc.yaml").write_text(TRAIN_STAGE)
    assert not _dvc_tracks_outputs(project)
    (project / "sub").mkdir()
    (project / "sub" / "data.csv.dvc").write_text("outs:\n- path: data.csv\n")
    assert _dvc_tracks_outputs(project)
    (project / "sub" / "data.csv.dvc").unlink()
    (project / "dvc.lock").write_text("schema: '2.0'\n")
    assert _dvc_tracks_outputs(project)
