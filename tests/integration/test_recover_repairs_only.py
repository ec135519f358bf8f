"""recover only repairs (issue #24.2): a stage whose outputs differ from dvc.lock gets them
back from the DVC cache or the commit; a stage that registers a model is never re-run (it
would register a new version); a stage that registers nothing may be re-run alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import git_dvc_project

_DVC_YAML = """stages:
  make:
    cmd: python make.py
    deps: [make.py]
    outs: [data.txt]
  train:
    cmd: python train.py
    deps: [train.py, data.txt]
    outs:
      - model.bin
      - metrics.json:
          cache: false
"""
# The training stage registers its model (as the init template's train.py does with
# Yard().register); each run leaves a line in runs.log, which DVC does not track.
_TRAIN = """import pathlib
# registers the model: Yard().register(model, NAME)
with open("runs.log", "a") as log:
    log.write("train ran\\n")
data = pathlib.Path("data.txt").read_text()
pathlib.Path("model.bin").write_text(data[::-1])
pathlib.Path("metrics.json").write_text('{"score": 1}')
"""
_MAKE = 'import pathlib\npathlib.Path("data.txt").write_text("some training data\\n")\n'


@pytest.fixture
def project(isolated: Path) -> tuple[Any, Path]:
    sh, git, dvc = git_dvc_project(isolated)
    (isolated / "dvc.yaml").write_text(_DVC_YAML)
    (isolated / "make.py").write_text(_MAKE)
    (isolated / "train.py").write_text(_TRAIN)
    sh(*dvc, "repro", "-q")
    sh(*git, "add", "-A")
    sh(*git, "commit", "-qm", "pipeline")
    return sh, isolated


def _cache_of(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def _lock_md5(root: Path, rel: str) -> str:
    from modelyard.project.dvc import recorded_md5

    md5 = recorded_md5(root, rel)
    assert md5
    return md5


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_recover_puts_outputs_back_and_reruns_only_a_stage_that_registers_nothing(
    yard: Any, name: str, trained: dict[str, Any], project: tuple[Any, Path],
) -> None:
    from modelyard.project.dvc import md5_file

    _, root = project
    mv = yard.register(trained["model"], name, input_example=trained["X"].head(3),
                       pip_requirements=["scikit-learn"])
    yard.promote(name, mv.version, to="production", force=True, reason="ship")
    versions = len(yard.versions(name))
    assert yard.incidents.detect(name) == []

    # A stage that registers nothing, its output and cached copy gone: re-run alone.
    md5 = _lock_md5(root, "data.txt")
    _cache_of(root, md5).unlink()
    (root / "data.txt").unlink()
    report = yard.incidents.recover(name)
    assert report.ok, report.to_dict()
    assert "--single-item make" in report.fixes[0].attempts[-1].detail
    assert md5_file(root / "data.txt") == md5
    assert (root / "runs.log").read_text() == "train ran\n"  # train not run after it

    # train run outside DVC: its outputs moved on, and it would register again if re-run.
    (root / "model.bin").write_text("another model")
    (root / "metrics.json").write_text('{"score": 0}')
    [finding] = yard.incidents.detect(name)
    assert finding.kind == "pipeline" and finding.detail["stage"] == "train"
    report = yard.incidents.recover(name)
    assert report.ok, report.to_dict()
    assert md5_file(root / "model.bin") == _lock_md5(root, "model.bin")
    assert md5_file(root / "metrics.json") == _lock_md5(root, "metrics.json")
    assert (root / "runs.log").read_text() == "train ran\n"  # never re-run
    assert len(yard.versions(name)) == versions
    assert yard.incidents.detect(name) == []

    # The cached copy gone too: recover says what to run and leaves the stage alone.
    _cache_of(root, _lock_md5(root, "model.bin")).unlink()
    (root / "model.bin").write_text("another model")
    report = yard.incidents.recover(name)
    assert not report.ok
    [fix] = report.fixes
    assert "registers a model" in fix.attempts[-1].detail
    assert "dvc repro train" in fix.attempts[-1].detail
    assert (root / "runs.log").read_text() == "train ran\n"
    assert (root / "model.bin").read_text() == "another model"
