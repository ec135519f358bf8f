"""The likely causes `reproduce` names before it compares metrics, from the lineage alone."""

from __future__ import annotations

from pathlib import Path

import yaml

from modelyard.core.lineage import DataRef, Lineage
from modelyard.incidents.reproduce import likely_causes
from modelyard.project.dvc import PipelineFiles, pipeline_files

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_a_clean_tree_with_its_data_has_no_cause() -> None:
    clean = Lineage(git_commit=COMMIT, git_dirty="false")
    assert likely_causes(clean, PipelineFiles(), []) == []


def test_code_and_parameters_are_named_apart(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": "python train.py", "params": [{"conf/train.yaml": ["lr"]}]}}}))
    files = pipeline_files(tmp_path)
    dirty = Lineage(git_commit=COMMIT, git_dirty="true",
                    dirty_paths=["conf/train.yaml", "params.yaml", "src/train.py"])
    params, code = likely_causes(dirty, files, [])
    assert params.startswith("uncommitted parameters: conf/train.yaml, params.yaml")
    assert code.startswith("trained on a dirty tree: src/train.py differed from commit "
                           f"{COMMIT[:12]}")


def test_a_project_in_a_subfolder_reads_its_own_parameter_files(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": "python train.py", "params": [{"train.yaml": ["lr"]}]}}}))
    dirty = Lineage(git_commit=COMMIT, git_dirty="true", dirty_paths=["churn/train.yaml"])
    (cause,) = likely_causes(dirty, pipeline_files(tmp_path), [], "churn")
    assert cause.startswith("uncommitted parameters: churn/train.yaml")


def test_a_dirty_flag_without_paths_and_missing_data() -> None:
    old = Lineage(git_commit=COMMIT, git_dirty="true")  # recorded before paths were listed
    missing = DataRef("data/raw.csv", "d41d8cd98f00b204e9800998ecf8427e", "dvc")
    dirty, data = likely_causes(old, PipelineFiles(), [missing])
    assert dirty == "trained on a dirty tree, so the commit is not the code that trained it"
    assert data.startswith("missing DVC data: data/raw.csv (md5 d41d8cd98f00)")
