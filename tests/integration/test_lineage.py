"""Lineage a reviewer can trust, on both backends: a version the scaffold's `train` stage
registers records how long training took and what it used; its dirty flag is false on a clean
tree, ignores the pipeline's own outputs once they are committed, and is true, naming the file,
after an edit to `src/train.py`; `details` shows the lineage; `reproduce` of a dirty-tree
version names the dirty tree as the likely cause before the metrics."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelyard.project.dvc import set_param
from tests.support.helpers import LOGREG_TRAIN, TRAIN_STAGE, run_cli


def _sh(args: list[str], cwd: Path) -> str:
    env = {**os.environ,
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, check=False,
                          timeout=900)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _commit(project: Path, message: str) -> None:
    _sh(["git", "add", "-A"], project)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m",
         message], project)


def _train(project: Path) -> None:
    """The scaffold's train stage (and what it needs) as `dvc repro` runs it."""
    _sh([sys.executable, "-m", "dvc", "repro", "-q", "train"], project)


@pytest.mark.slow
def test_scaffold_versions_record_training_and_an_honest_dirty_flag(
    make_yard: Any, name: str, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = isolated / "proj"
    run_cli("init", str(project), "--name", name, cwd=isolated, check=True)
    params = project / "params.yaml"
    for section, key, value in (("prepare", "n_rows", "300"), ("train", "n_estimators", "5"),
                                ("train", "cv_folds", "2")):
        set_param(params, section, key, value)
    _commit(project, "small")
    head = _sh(["git", "rev-parse", "HEAD"], project).strip()
    _train(project)
    monkeypatch.chdir(project)
    yard = make_yard()
    clean = yard.get(name, "latest")
    lin = clean.lineage
    assert (lin.git_commit, lin.git_dirty, lin.dirty_paths) == (head, "false", [])
    # The stage's own process is the training: its age, CPU time and peak memory.
    assert lin.duration_from == "dvc_stage"
    assert float(lin.duration_s) > 0 and float(lin.cpu_s) > 0 and float(lin.peak_rss_mb) > 0
    assert int(lin.host_cpus) >= 1 and int(lin.host_memory_mb) > 0
    assert float(lin.cpu_s) <= float(lin.duration_s) * int(lin.host_cpus) + 1
    _commit(project, "v1 and its outputs")

    # Outputs committed, a parameter changed and committed, src/train.py edited: the stage
    # rewrites metrics/train.json (tracked now) before it registers, and only the edit counts.
    set_param(params, "train", "n_estimators", "6")
    _commit(project, "more trees")
    head = _sh(["git", "rev-parse", "HEAD"], project).strip()
    train = project / "src" / "train.py"
    train.write_text(train.read_text() + "\n# an edit nobody committed\n")
    _train(project)
    assert " M metrics/train.json" in _sh(["git", "status", "--porcelain"], project)
    dirty = yard.get(name, "latest")
    assert dirty.semver == "1.0.1"
    assert (dirty.lineage.git_commit, dirty.lineage.git_dirty, dirty.lineage.dirty_paths) \
        == (head, "true", ["src/train.py"])
    assert dirty.lineage.duration_s and dirty.lineage.cpu_s and dirty.lineage.peak_rss_mb

    shown = run_cli("details", f"{name}@{dirty.version}", env={"COLUMNS": "200"}, check=True)
    text = shown.stdout
    assert f"git commit {head}" in " ".join(text.split())
    assert "yes: src/train.py" in text
    data = dirty.lineage.data[0]
    assert f"data {data.path}" in text and f"dvc:{data.hash}" in text
    assert "param n_estimators" in text and "scikit-learn" in text
    assert "s wall (dvc_stage)" in text and "s CPU" in text and "MiB RSS" in text
    as_json = json.loads(run_cli("details", f"{name}@{dirty.version}", "--json",
                                 check=True).stdout)
    assert as_json["lineage"]["dirty_paths"] == ["src/train.py"]

    compared = json.loads(run_cli("compare", name, str(clean.version), str(dirty.version),
                                  "--json", check=True).stdout)
    assert all(row["training"]["cpu_s"] > 0 for row in compared["versions"])
    assert not any(key.startswith("training.") for key in compared["differences"])


def _project(root: Path, name: str) -> Path:
    import numpy as np
    import pandas as pd

    from modelyard.project import git

    project = root / "project"
    project.mkdir()
    (project / "train.py").write_text(LOGREG_TRAIN.replace("NAME", name))
    (project / "dvc.yaml").write_text(TRAIN_STAGE)
    (project / ".gitignore").write_text("/.modelyard/\n")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    pd.DataFrame({"a": a, "b": b, "label": (a + b > 0).astype(int)}).to_csv(
        project / "data.csv", index=False)
    git.init_repository(project)
    _sh([sys.executable, "-m", "dvc", "init", "-q"], project)
    _commit(project, "the pipeline")
    return project


@pytest.mark.slow
def test_reproduce_of_a_dirty_tree_version_names_the_cause(
    make_yard: Any, name: str, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(isolated, name)
    head = _sh(["git", "rev-parse", "HEAD"], project).strip()
    train = project / "train.py"
    # Trained by code the commit does not hold (labels flipped), registered from that tree.
    train.write_text(train.read_text().replace('y = frame[["a", "b"]], frame["label"]',
                                               'y = frame[["a", "b"]], 1 - frame["label"]'))
    monkeypatch.chdir(project)
    runpy.run_path("train.py", run_name="__main__")
    yard = make_yard()
    mv = yard.get(name, "latest")
    assert (mv.lineage.git_commit, mv.lineage.git_dirty) == (head, "true")
    assert mv.lineage.dirty_paths == ["train.py"]

    done = run_cli("reproduce", f"{name}@{mv.version}", env={"COLUMNS": "200"})
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    cause = next(i for i, line in enumerate(lines) if "likely cause" in line)
    assert "dirty tree" in lines[cause] and "train.py" in lines[cause]
    assert head[:12] in lines[cause]
    metric = next(i for i, line in enumerate(lines) if "metric accuracy" in line)
    assert cause < metric  # named before any metric is compared
    report = json.loads(run_cli("details", f"{name}@{mv.version}", "--json",
                                check=True).stdout)["reproduce"]
    assert report["reproducible"] is False
    assert any("dirty tree" in c and "train.py" in c for c in report["causes"])


@pytest.mark.slow
def test_reproduce_names_missing_dvc_data_when_the_pipeline_cannot_run(
    name: str, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    project = _project(isolated, name)
    # The data under DVC, not git: `dvc add` writes data.csv.dvc and ignores data.csv.
    _sh(["git", "rm", "-q", "--cached", "data.csv"], project)
    _sh([sys.executable, "-m", "dvc", "add", "-q", "data.csv"], project)
    _commit(project, "the data under DVC")
    monkeypatch.chdir(project)
    runpy.run_path("train.py", run_name="__main__")
    (ref,) = json.loads(run_cli("lineage", f"{name}@latest", "--json",
                                check=True).stdout)["lineage"]["data"]
    assert ref["source"] == "dvc"
    # Neither the DVC cache nor the workspace holds the bytes any more (no remote either).
    shutil.rmtree(project / ".dvc" / "cache")
    (project / "data.csv").unlink()

    done = run_cli("reproduce", f"{name}@latest", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["causes"] == [
        f"missing DVC data: data.csv (md5 {ref['hash'][:12]}) is in neither the checkout nor "
        "the DVC cache (`dvc pull` may fetch it)"]
    assert any(d.startswith("the pipeline failed: dvc repro") for d in report["differences"])
