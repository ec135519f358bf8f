"""A workspace's data is expected to match its own DVC files, not the production version's
lineage: a project whose data moved on is healthy, a file that differs from what DVC records
is a finding (and what recovery checks out is what DVC records)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.helpers import git_dvc_project


def test_data_that_moved_on_is_healthy_and_corrupt_data_is_found(
    yard: Any, name: str, trained: dict[str, Any], isolated: Path,
) -> None:
    project = isolated
    sh, git, dvc = git_dvc_project(project)
    data = project / "data" / "raw.csv"
    data.parent.mkdir()
    data.write_text("a,b\n1,2\n")
    sh(*dvc, "add", "-q", "data/raw.csv")
    sh(*git, "add", "-A")
    sh(*git, "commit", "-qm", "first data")
    mv = yard.register(trained["model"], name, data=["data/raw.csv"],
                       input_example=trained["X"].head(3))
    yard.promote(name, mv.version, to="production", force=True, reason="ship")
    assert [f for f in yard.incidents.detect(name) if f.kind == "data"] == []

    # The data moves on the way DVC users move it: a new version added and committed.
    data.write_text("a,b\n1,2\n3,4\n")
    sh(*dvc, "add", "-q", "data/raw.csv")
    sh(*git, "commit", "-qam", "second data")
    assert [f for f in yard.incidents.detect(name) if f.kind == "data"] == []
    assert yard.incidents.recover(name, dry_run=True).findings == []

    # Bytes changed behind DVC's back: a finding, with the hash DVC records as the target.
    recorded = (project / "data" / "raw.csv.dvc").read_text().split("md5: ")[1][:32]
    data.write_text("a,b\n9,9\n3,4\n")
    [finding] = [f for f in yard.incidents.detect(name) if f.kind == "data"]
    assert "DVC files record" in finding.problem and finding.detail["hash"] == recorded


def test_recover_never_rolls_back_over_a_metric_comparison(
    yard: Any, name: str, trained: dict[str, Any],
) -> None:
    """A spread that shrank (lower is better, but nothing says so) is not a bad promotion:
    which way is better is the policy gates' to say; recover proposes nothing."""
    for std in (0.0307, 0.0267):
        mv = yard.register(trained["model"], name, metrics={"cv_f1": 0.81, "cv_f1_std": std},
                           params={"std": std}, input_example=trained["X"].head(3))
        yard.promote(name, mv.version, to="production", force=True, reason="ship")
    assert yard.resolve(name, "production").version == 2
    assert [f for f in yard.incidents.detect(name) if f.kind == "promotion"] == []
    report = yard.incidents.recover(name, dry_run=True)
    assert report.findings == [] and report.plan == []
