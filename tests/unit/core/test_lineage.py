"""The lineage record without the registry: the parent run, its tags, and the training-data
columns a bump is decided on (the capture that fills it: tests/unit/project/test_capture.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.core import lineage

# -- the parent run -----------------------------------------------------------------------------
RUN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


@pytest.mark.parametrize(
    ("environ", "active", "active_parent", "expected"),
    [
        pytest.param({}, None, None, None, id="plain-script"),
        pytest.param({"MLFLOW_RUN_ID": RUN}, None, None, RUN, id="mlflow-run-entry-point"),
        pytest.param({"MLFLOW_RUN_ID": RUN}, OTHER, None, RUN, id="nested-run-in-project"),
        pytest.param({"MLFLOW_RUN_ID": RUN}, RUN, None, None, id="entry-point-resumed-it"),
        pytest.param({"MLFLOW_RUN_ID": RUN}, RUN, OTHER, OTHER, id="its-own-parent"),
        pytest.param({}, OTHER, RUN, RUN, id="nested-run"),
        pytest.param({"MLFLOW_RUN_ID": "  "}, None, None, None, id="blank"),
        pytest.param({"MLFLOW_RUN_ID": "x; rm -rf /"}, None, None, None, id="not-a-run-id"),
    ],
)
def test_parent_run_of(environ: dict[str, str], active: str | None, active_parent: str | None,
                       expected: str | None) -> None:
    snapshot = dict(environ)
    assert lineage.parent_run_of(environ, active, active_parent) == expected
    assert environ == snapshot  # only read


def test_the_parent_run_is_kept_in_the_tags() -> None:
    found = lineage.Lineage(parent_run=RUN, git_commit="abc")
    tags = found.to_tags()
    assert tags["modelyard.lineage.parent_run"] == RUN
    assert lineage.Lineage.from_tags(tags).parent_run == RUN


def test_a_dropped_training_column_is_major_when_no_schema_was_recorded(tmp_path: Path) -> None:
    from modelyard.core.lineage import Lineage
    from modelyard.core.versioning import Fingerprint, decide_bump
    from modelyard.project.capture import hash_data

    table = tmp_path / "train.csv"
    table.write_text("tenure,charges,churn\n1,2.5,0\n")
    before = Lineage(data=hash_data(["train.csv"], tmp_path))
    assert before.data_columns() == {"train.csv": ["tenure", "charges", "churn"]}
    table.write_text("tenure,churn\n1,0\n")
    after = Lineage.from_tags(Lineage(data=hash_data(["train.csv"], tmp_path)).to_tags())
    decision = decide_bump(
        Fingerprint(data=after.data_hashes(), data_columns=after.data_columns()),
                           Fingerprint(data=before.data_hashes(),
                                       data_columns=before.data_columns()))
    assert decision.bump == "major"
    assert "charges (train.csv)" in decision.reason
    # A column added is a minor change; with a schema on both sides the schema decides.
    grown = decide_bump(Fingerprint(data_columns={"t.csv": ["a", "b"]}),
                        Fingerprint(data_columns={"t.csv": ["a"]}))
    assert grown.bump == "minor"
    schema = [("a", "double", True)]
    same = decide_bump(Fingerprint(inputs=schema, data_columns={"t.csv": ["a"]}),
                       Fingerprint(inputs=schema, data_columns={"t.csv": ["a", "b"]}))
    assert same.bump == "patch"
