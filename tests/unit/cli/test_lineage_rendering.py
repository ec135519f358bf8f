"""The lineage as `details` and `lineage` print it: every figure on one line, and a tag written
around modelyard (plain MLflow can set anything) shown as it is, never a traceback."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelyard.cli.render import dirty_summary, lineage_rows, training_summary
from modelyard.core.names import LINEAGE_KEYS


def test_training_and_the_dirty_paths_read_as_one_line_each() -> None:
    lin = {"duration_s": "12.34", "duration_from": "dvc_stage", "cpu_s": "3",
           "peak_rss_mb": "100.5", "host_cpus": "2", "host_memory_mb": "24576",
           "git_dirty": "true", "dirty_paths": ["src/train.py", "params.yaml"]}
    assert training_summary(lin) == ("12.3 s wall (dvc_stage), 3.0 s CPU, peak 100.5 MiB RSS; "
                                     "host 2 cores, 24.0 GiB")
    assert dirty_summary(lin) == "yes: src/train.py, params.yaml"
    assert dirty_summary({"git_dirty": "false"}) == "no" and dirty_summary({}) == "-"
    assert training_summary({}) == "-"
    rows = dict(lineage_rows(lin))
    assert rows["git dirty"] == "yes: src/train.py, params.yaml"
    assert rows["training"] == training_summary(lin)


@given(st.dictionaries(st.sampled_from(LINEAGE_KEYS), st.text(max_size=12), max_size=10))
def test_any_tag_value_renders(lin: dict[str, str]) -> None:
    lin.pop("data", None)
    lin.pop("packages", None)
    lin.pop("dirty_paths", None)
    assert training_summary(lin)
    assert all(isinstance(text, str) for _, text in lineage_rows(lin))
