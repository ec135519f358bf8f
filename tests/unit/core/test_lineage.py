"""The lineage record without the registry: the parent run, its tags, and the training-data
columns a bump is decided on (the capture that fills it: tests/unit/project/test_capture.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelyard.core import lineage
from modelyard.errors import InvalidInput

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


# -- the lineage keys and the training's time ---------------------------------------------------
def test_every_lineage_field_is_a_named_key() -> None:
    from dataclasses import fields

    from modelyard.core.names import LINEAGE_KEYS

    assert tuple(f.name for f in fields(lineage.Lineage)) == LINEAGE_KEYS


def test_training_figures_and_dirty_paths_round_trip_through_the_tags() -> None:
    found = lineage.Lineage(git_dirty="true", dirty_paths=["src/train.py", "params.yaml"],
                            duration_s="12.500", duration_from="dvc_stage", cpu_s="20.125",
                            peak_rss_mb="512.0", host_cpus="8", host_memory_mb="32000")
    tags = found.to_tags()
    assert tags["modelyard.lineage.cpu_s"] == "20.125"
    assert lineage.Lineage.from_tags(tags) == found
    # A clean tree writes no dirty_paths tag; a damaged one reads as no paths.
    assert "modelyard.lineage.dirty_paths" not in lineage.Lineage(git_dirty="false").to_tags()
    assert lineage.Lineage.from_tags({"modelyard.lineage.dirty_paths": "{"}).dirty_paths == []


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("kwargs", "started", "seconds", "source"),
    [
        pytest.param({"duration_s": 30}, NOW - timedelta(seconds=30), 30.0, "caller",
                     id="caller-duration"),
        pytest.param({"started_at": NOW - timedelta(seconds=9)}, NOW - timedelta(seconds=9),
                     9.0, "caller", id="caller-start"),
        pytest.param({"run_start": NOW - timedelta(seconds=60), "process_age_s": 5.0,
                      "in_dvc_stage": True}, NOW - timedelta(seconds=60), 60.0, "mlflow_run",
                     id="active-run-wins-over-the-stage"),
        pytest.param({"process_age_s": 5.0, "in_dvc_stage": True},
                     NOW - timedelta(seconds=5), 5.0, "dvc_stage", id="dvc-stage"),
        pytest.param({"process_age_s": 5.0}, NOW, None, "", id="a-process-is-not-a-training"),
        pytest.param({"started_at": datetime(2026, 1, 2)}, datetime(2026, 1, 2), None, "",
                     id="a-start-without-time-zone-gives-no-duration"),
        pytest.param({"run_start": NOW + timedelta(seconds=3)}, NOW + timedelta(seconds=3),
                     0.0, "mlflow_run", id="clock-skew-is-not-negative"),
    ],
)
def test_training_time_takes_the_best_source(kwargs: dict[str, Any], started: datetime,
                                             seconds: float | None, source: str) -> None:
    assert lineage.training_time(NOW, **kwargs) == (started, seconds, source)


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                 st.text(max_size=20), st.booleans(), st.none()))
def test_a_callers_duration_is_a_number_of_seconds_or_refused(value: Any) -> None:
    try:
        started, seconds, source = lineage.training_time(NOW, duration_s=value)
    except InvalidInput as exc:
        assert "duration_s" in exc.message
        return
    if value is None:
        assert (seconds, source) == (None, "")
        return
    assert source == "caller" and seconds is not None and 0 <= seconds <= 1e9
    assert seconds == float(value) and started <= NOW
