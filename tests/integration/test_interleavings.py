"""Random interleavings of promote, rollback, approve and reject from several processes on
the embedded default (issue 31, "Done when"): afterwards the audit chain verifies, one
version or none holds production (alias, stage tag and MLflow's stage field agree), every
move that succeeded is one event of the trail, and ``health`` raises no false alarm.

Two examples only, the processes started once and reused (forked from a server that imported
modelyard and MLflow once: tests/support/processes.py)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import processes
from tests.support.helpers import run_cli
from tests.support.workers import interleave

OPS = st.lists(st.tuples(st.sampled_from(["staging", "production", "approve", "reject",
                                          "rollback"]), st.integers(1, 3)),
               min_size=2, max_size=3)
WORKERS = 3


@pytest.fixture(scope="module")
def template_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("interleave")


@pytest.fixture
def template(template_root: Path, trained: dict[str, Any], isolated: Path) -> Path:
    """An embedded registry with three versions of "m", copied for every example. Built on
    first use inside a test, once ``isolated`` has cleared the environment and MLflow's
    process globals that earlier tests on this worker may have left."""
    home = template_root / "home"
    if (home / "mlflow.db").exists():
        return home
    import mlflow.sklearn

    from modelyard import Yard

    saved = template_root / "saved"
    mlflow.sklearn.save_model(trained["model"], str(saved), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    yard = Yard(home=str(home), user="alice")
    for i in range(3):
        yard.register_directory(saved, "m", params={"i": i})
    return home


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    with processes.context().Pool(WORKERS) as workers:
        yield workers


@settings(max_examples=2, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=st.lists(OPS, min_size=WORKERS, max_size=WORKERS))
def test_random_interleavings_keep_one_audited_holder(
        plans: list[list[tuple[str, int]]], template: Path, pool: Any,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from modelyard import Yard

    home = tmp_path_factory.mktemp("example") / "home"
    shutil.copytree(template, home)
    env, cwd = dict(os.environ), os.getcwd()
    results = pool.map(processes.call, [(env, cwd, interleave, (str(home), f"user{i}", plan))
                                        for i, plan in enumerate(plans)])
    yard = Yard(home=str(home), user="alice", production_approval_required=True)
    events = yard.history("m", verify=True)  # the chain verifies, no unaudited holder
    moved = [seq for done in results for _, outcome, seq in done if outcome == "ok" and seq]
    assert len(moved) == len(set(moved)), f"a move audited twice: {results}"
    by_seq = {e.seq: e for e in events}
    assert all(by_seq[s].action in ("promote", "approve", "rollback") for s in moved), results

    records = yard.tracking.versions("m")
    holder = yard.tracking.alias_holder("m", "production")
    tagged = [r.version for r in records if r.tags.get("modelyard.stage") == "production"]
    fields = [r.version for r in records if r.current_stage == "Production"]
    assert tagged == fields == ([] if holder is None else [holder]), (results, tagged, fields)
    assert events[-1].stages.get("production") == holder
    assert yard.governance.unaudited("m") == []

    health = json.loads(run_cli("health", "--json", env={"MODELYARD_HOME": str(home)}).stdout)
    alarms = [c for c in health["checks"] if c["level"] in ("degraded", "critical")
              and c["check"] in ("audited holders", "audit chain", "debris", "verified")]
    assert alarms == [], alarms
