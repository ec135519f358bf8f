"""Drills: each scenario breaks the sandbox on purpose, and modelyard must detect it with its
own checks, recover through the expected layer, verify, and leave the real registry as it was.

One sandbox (a generated DVC project at the seeds' 4,000 rows, built once: ~30 s) is shared by
the module; the scenarios run in an order that leaves it usable (the registry scenarios last).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import corrupt_version, run_cli


def _settings(home: Path, cache: Path) -> Any:
    from modelyard.core.config import load_settings

    return load_settings({"home": str(home), "cache_dir": str(cache), "user": "alice"},
                         environ={}, cwd=home.parent)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, trained: dict[str, Any]) -> Iterator[Any]:
    """A 'real' registry with one production model, and the facade that drills from it."""
    from modelyard import Yard

    folder = tmp_path_factory.mktemp("real")
    yard = Yard(_settings(folder / ".modelyard", folder / "cache"))
    mv = yard.register(trained["model"], "real-model", metrics={"accuracy": 0.9},
                       input_example=trained["X"].head(5), pip_requirements=["scikit-learn"])
    yard.promote("real-model", mv.version, to="production", force=True, reason="test")
    yield yard
    yard.incidents.close()


def _snapshot(yard: Any) -> str:
    """The registry as export sees it; the audit trail and its head tag aside (a drill is
    recorded in the model's audit trail, on purpose)."""
    from modelyard.core.names import T_AUDIT_HEAD

    doc = yard.export()
    doc.pop("exported_at", None)
    for model in doc["models"]:
        model["tags"].pop(T_AUDIT_HEAD, None)
        model.pop("audit", None)
        model.pop("last_updated_timestamp", None)
    return json.dumps(doc, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def before(real: Any) -> str:
    return _snapshot(real)


def _drill(real: Any, before: str, scenario: str, **options: Any) -> Any:
    report = real.incidents.drill(scenario, **options)
    assert _snapshot(real) == before, "a sandbox drill changed the real registry"
    assert report.sandbox
    assert report.detected, json.dumps(report.to_dict(), default=str)
    return report


def _assert_ok(report: Any, layer: str, check: str) -> None:
    assert check in report.detected_by, json.dumps(report.to_dict(), default=str)
    assert report.layer == layer, json.dumps(report.to_dict(), default=str)
    assert report.recovered and report.verified, json.dumps(report.to_dict(), default=str)
    assert "predictions on the held-out sample equal the pre-incident ones" in \
        report.verification
    assert set(report.phases) == {"inject", "detect", "recover", "verify"}
    assert report.mttr == pytest.approx(sum(report.phases[p]
                                            for p in ("detect", "recover", "verify")))


def test_scenarios_are_listed() -> None:
    done = run_cli("drill", "list", "--json", check=True)
    names = [row["name"] for row in json.loads(done.stdout)]
    assert names == ["data-noise", "data-missing", "data-duplicates", "model-corruption",
                     "model-deletion", "artifact-loss", "pipeline-failure", "registry-loss",
                     "storage-outage", "bad-promotion"]


def test_unknown_scenario_is_one_line() -> None:
    done = run_cli("drill", "run", "meteor-strike")
    assert done.returncode != 0
    assert "unknown drill 'meteor-strike'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_model_corruption_recovers_from_the_local_cache(real: Any, before: str,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    from modelyard.cli.drill import _render_drills

    report = _drill(real, before, "model-corruption")
    _assert_ok(report, "L1", "manifest")
    assert "flipped in the artifact store" in report.injected
    _render_drills([report.to_dict()])  # the table `drill run` prints
    table = " ".join(capsys.readouterr().out.split())
    assert "model-corruption" in table and "MTTR" in table and "L1" in table


def test_artifact_loss_recovers_from_the_vault(real: Any, before: str) -> None:
    report = _drill(real, before, "artifact-loss")
    _assert_ok(report, "L2", "manifest")
    assert report.via == "vault"


def test_storage_outage_serves_the_verified_cached_copy(real: Any, before: str) -> None:
    report = _drill(real, before, "storage-outage")
    _assert_ok(report, "L1", "artifact store reachable")


def test_bad_promotion_is_caught_by_the_gates_and_rolled_back(real: Any, before: str) -> None:
    report = _drill(real, before, "bad-promotion")
    _assert_ok(report, "L1", "policy gates")
    assert report.via == "rollback (audit trail)"


@pytest.mark.parametrize(("scenario", "quality"), [
    ("data-noise", "distribution shift"),
    ("data-missing", "nulls"),
    ("data-duplicates", "duplicated rows"),
])
def test_data_corruption_is_checked_out_from_dvc(real: Any, before: str, scenario: str,
                                                 quality: str) -> None:
    report = _drill(real, before, scenario)
    _assert_ok(report, "L1", "data hash vs lineage + data quality")
    assert any(quality in finding for finding in report.findings), report.findings
    assert report.via == "DVC cache"


def test_pipeline_failure_resumes_from_the_failed_stage(real: Any, before: str) -> None:
    # evaluate: the cheapest stage to re-run (train would register a new sandbox version).
    report = _drill(real, before, "pipeline-failure", stage="evaluate")
    _assert_ok(report, "L4", "dvc.lock vs workspace")
    assert report.stage == "evaluate"
    assert "stage evaluate" in report.findings[0]


def test_drills_are_recorded(real: Any) -> None:
    real.incidents.drill("artifact-loss")  # whatever else this worker ran before it
    runs = real.tracking.client.search_runs(
        [real.tracking.experiment_id("modelyard-drills")], max_results=50)
    assert "artifact-loss" in {r.data.params["scenario"] for r in runs}
    assert all("mttr_s" in r.data.metrics for r in runs)
    keys = real.vault.store.list("drills/")
    assert len(keys) >= len(runs)


def test_model_deletion_is_detected_from_the_audit_trail(real: Any, before: str) -> None:
    report = _drill(real, before, "model-deletion")
    assert "audit trail vs registry" in report.detected_by
    _assert_ok(report, "L2", "audit trail vs registry")
    assert report.via == "backup store restore"


def test_registry_loss_is_detected_from_the_audit_trail(real: Any, before: str) -> None:
    report = _drill(real, before, "registry-loss")
    assert "audit trail vs registry" in report.detected_by
    _assert_ok(report, "L2", "audit trail vs registry")
    assert report.via == "backup store restore"


# -- a real model copied into the sandbox, on both backends ---------------------------------
def test_drill_on_a_copy_of_a_real_model(yard: Any, name: str, trained: dict[str, Any]
                                         ) -> None:
    mv = yard.register(trained["model"], name, metrics={"accuracy": 0.9},
                       input_example=trained["X"].head(5), pip_requirements=["scikit-learn"])
    yard.promote(name, mv.version, to="production", force=True, reason="test")
    start = _snapshot(yard)
    try:
        report = yard.incidents.drill("model-corruption", model=name)
        assert report.model == name
        _assert_ok(report, "L1", "manifest")
        assert _snapshot(yard) == start
        assert yard.verify(name, "production").ok
        # the drill is in the model's audit trail
        assert yard.history(name)[-1].action == "drill"
        # The model, registry and storage scenarios on the same copy of this backend's model.
        for scenario, layer, check in (
                ("model-deletion", "L2", "audit trail vs registry"),
                ("registry-loss", "L2", "audit trail vs registry"),
                ("storage-outage", "L1", None)):
            report = yard.incidents.drill(scenario, model=name)
            assert report.model == name
            _assert_ok(report, layer, check or report.detected_by[0])
        assert _snapshot(yard) == start
    finally:
        yard.incidents.close()


# -- recover on the real registry ----------------------------------------------------------


def test_recover_dry_run_changes_nothing_and_recover_fixes(yard: Any, name: str,
                                                           trained: dict[str, Any]) -> None:
    from modelyard.errors import IntegrityError

    mv = yard.register(trained["model"], name, metrics={"accuracy": 0.9},
                       input_example=trained["X"].head(5), pip_requirements=["scikit-learn"])
    yard.promote(name, mv.version, to="production", force=True, reason="test")
    yard.load(name, "production")  # the local cache holds a verified copy
    corrupt_version(yard, name)
    events = len(yard.history(name))

    dry = run_cli("recover", name, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] and plan["findings"][0]["kind"] == "model-files"
    assert "L1 local cache" in plan["plan"][0]
    with pytest.raises(IntegrityError):
        yard.verify(name, "production")
    assert len(yard.history(name)) == events

    done = run_cli("recover", name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "recovered and verified" in done.stdout
    assert yard.verify(name, "production").ok
    assert yard.history(name)[-1].action == "recover"
    assert run_cli("recover", name, "--json", check=True).stdout.count('"findings": []') == 1


def test_live_needs_yes_and_snapshots_first_and_ends_as_it_began(real: Any, before: str
                                                                 ) -> None:
    no_yes = run_cli("drill", "run", "model-corruption", "--live", "--model", "real-model")
    assert no_yes.returncode != 0 and "--yes" in no_yes.stderr
    assert _snapshot(real) == before
    holder = real.resolve("real-model", "production").version
    report = real.incidents.drill("model-corruption", model="real-model", live=True)
    assert not report.sandbox
    _assert_ok(report, report.layer or "?", report.detected_by[0] if report.detected_by else "?")
    assert "registry matches the snapshot taken first" in report.notes
    tags = [s.tag for s in real.protection.snapshots.list()]
    assert any(t.startswith("drill-") for t in tags)  # taken before anything was broken
    assert real.resolve("real-model", "production").version == holder
    assert real.protection.verify_all("real-model").ok


def test_recover_unknown_model_is_one_line() -> None:
    done = run_cli("recover", "no-such-model", "--dry-run")
    assert done.returncode != 0
    assert "no-such-model" in done.stderr and "Traceback" not in done.stderr


def test_health_of_an_empty_registry_is_healthy() -> None:
    done = run_cli("health", "--json")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["status"] == "healthy"


def test_drill_all_runs_each_scenario_from_the_same_state(real: Any, before: str) -> None:
    """The scenarios that broke the next one in a shared sandbox (issue #24.5): a pipeline
    stage killed midway, the production version deleted, the registry emptied; each starts
    from the state the sandbox was built in, and each has its own result."""
    from modelyard.incidents.scenarios import SCENARIOS

    names = ["pipeline-failure", "model-deletion", "registry-loss"]
    seen: list[str] = []
    reports = real.incidents.drill_all(scenarios=names,
                                       progress=lambda r: seen.append(r.scenario))
    assert _snapshot(real) == before
    order = [s.name for s in SCENARIOS]
    assert [r.scenario for r in reports] == sorted(names, key=order.index)
    assert sorted(seen) == sorted(names)
    for report in reports:
        assert report.ok, json.dumps(report.to_dict(), default=str)
