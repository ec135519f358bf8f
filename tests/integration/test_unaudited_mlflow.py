"""Holders moved around modelyard with other MLflow APIs (issue #24.7-#24.9): MLflow's stage
field (``transition_model_version_stage``), a holder deleted with ``delete_model_version``,
and ``adopt`` of a registry whose versions have MLflow stages. Each fault is caused for real
with the bound MlflowClient, acting as a plain MLflow user; the healthy states next to them
(audited promote, rollback, import, restore from a backup, adopt, a ``models:/`` load) must
leave every detector quiet."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import run_cli


def _transition(yard: Any, name: str, version: int, stage: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MLflow's stage API is deprecated
        yard.tracking.client.transition_model_version_stage(
            name, str(version), stage, archive_existing_versions=True)


def _fields(yard: Any, name: str) -> dict[int, str]:
    client = yard.tracking.client
    return {int(mv.version): mv.current_stage
            for mv in client.search_model_versions(f"name = '{name}'")}


def _holder_checks(yard: Any, name: str) -> list[Any]:
    return [c for c in yard.incidents.health(models=[name]).checks
            if c.check == "audited holders" and c.target == name]


def _quiet(yard: Any, name: str) -> None:
    """Every detector of unaudited holders says nothing of ``name``."""
    assert yard.governance.unaudited(name) == []
    yard.governance.check_unaudited(name)
    yard.history(name, verify=True)
    assert [c.level for c in _holder_checks(yard, name)] == ["ok"]
    verify = run_cli("history", name, "--verify")
    assert verify.returncode == 0, verify.stderr
    rows = json.loads(run_cli("--json", "list").stdout)
    assert next(r for r in rows if r["name"] == name)["unaudited"] == []


def _two(yard: Any, name: str, trained: dict[str, Any]) -> None:
    frame = trained["X"].head(3)
    yard.register(trained["model"], name, params={"depth": 3}, input_example=frame)
    yard.register(trained["model"], name, params={"depth": 4}, input_example=frame)


# -- #24.7 MLflow's stage field ---------------------------------------------------------------
def test_a_stage_field_move_is_caught_and_undone(yard: Any, name: str,
                                                 trained: dict[str, Any]) -> None:
    _two(yard, name, trained)
    yard.promote(name, 1, to="production", force=True, reason="first")
    assert _fields(yard, name) == {1: "Production", 2: "None"}
    _quiet(yard, name)

    _transition(yard, name, 2, "Production")  # plain MLflow: 1 is archived by MLflow
    assert _fields(yard, name) == {1: "Archived", 2: "Production"}
    moved = yard.governance.unaudited(name)
    assert [(d.stage, d.holder_version, d.audited_version) for d in moved] == [
        ("production", 2, 1)]
    assert "stage field" in moved[0].detail and f"models:/{name}/Production" in moved[0].detail
    verify = run_cli("history", name, "--verify")
    assert verify.returncode != 0 and "#2" in verify.stderr and "unaudited" in verify.stderr
    [check] = _holder_checks(yard, name)
    assert check.level == "critical" and "#2" in check.detail
    listed = run_cli("list")
    assert "unaudited" in listed.stderr and "\u26a0" in listed.stdout
    details = json.loads(run_cli("--json", "details", f"{name}@2").stdout)
    assert details["unaudited"] and details["unaudited"][0]["holder_version"] == 2

    changes = yard.governance.undo_unaudited(name)
    assert [(c.version, c.from_stage, c.to) for c in changes] == [(2, "production", "none")]
    assert _fields(yard, name) == {1: "Production", 2: "None"}
    _quiet(yard, name)
    assert yard.history(name)[-1].reason == "undo unaudited move"


def test_a_staging_field_set_without_archiving_is_caught(yard: Any, name: str,
                                                         trained: dict[str, Any]) -> None:
    _two(yard, name, trained)
    yard.promote(name, 1, to="staging")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # Both say Staging now; models:/NAME/Staging loads the newest, #2.
        yard.tracking.client.transition_model_version_stage(name, "2", "Staging")
    assert [(d.stage, d.holder_version) for d in yard.governance.unaudited(name)] == [
        ("staging", 2)]
    yard.governance.undo_unaudited(name)
    assert _fields(yard, name) == {1: "Staging", 2: "None"}
    _quiet(yard, name)


def test_audited_moves_and_plain_loads_leave_the_detectors_quiet(
        yard: Any, name: str, trained: dict[str, Any]) -> None:
    import mlflow.pyfunc

    _two(yard, name, trained)
    yard.promote(name, 1, to="staging")
    yard.promote(name, 1, to="production", force=True, reason="first")
    yard.promote(name, 2, to="production", force=True, reason="better")
    assert _fields(yard, name)[2] == "Production"
    _quiet(yard, name)
    yard.rollback(name, reason="worse after all")
    assert yard.resolve(name, "production").version == 1
    assert _fields(yard, name)[1] == "Production"
    _quiet(yard, name)
    # A plain MLflow user loading by stage reads; it moves nothing.
    mlflow.set_tracking_uri(yard.tracking.tracking_uri)
    mlflow.set_registry_uri(yard.tracking.registry_uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/Production")
    assert loaded.metadata.run_id == yard.tracking.get_version(name, 1).run_id
    _quiet(yard, name)


# -- #24.8 a deleted holder -------------------------------------------------------------------
def test_a_deleted_holder_is_reported(yard: Any, name: str, trained: dict[str, Any]) -> None:
    _two(yard, name, trained)
    yard.promote(name, 1, to="production", force=True, reason="first")
    yard.tracking.client.delete_model_version(name, "1")  # plain MLflow

    moved = yard.governance.unaudited(name)
    assert [(d.stage, d.holder_version, d.audited_version) for d in moved] == [
        ("production", None, 1)]
    assert "gone from the registry" in moved[0].detail
    verify = run_cli("history", name, "--verify")
    assert verify.returncode != 0 and "#1" in verify.stderr and "gone" in verify.stderr
    [check] = _holder_checks(yard, name)
    assert check.level == "critical" and "#1" in check.detail
    listed = run_cli("list")
    assert "gone from the registry" in listed.stderr and "\u26a0" in listed.stdout
    assert yard.governance.undo_unaudited(name) == []  # nothing to put back: no crash
    assert len(yard.governance.unaudited(name)) == 1


def test_restore_of_a_deleted_holder_leaves_the_detectors_quiet(
        backend: str, stack_or_none: Any, tmp_path: Path, name: str,
        trained: dict[str, Any]) -> None:
    from modelyard import Yard
    from tests.integration.test_backup_restore import _backup_url

    yard = Yard(backup=_backup_url(stack_or_none, tmp_path))
    mv = yard.register(trained["model"], name, input_example=trained["X"].head(3))
    yard.promote(name, mv.version, to="production", force=True, reason="first")
    assert yard.protection.backup([(name, None)]).ok
    yard.tracking.client.delete_model_version(name, str(mv.version))
    assert len(yard.governance.unaudited(name)) == 1
    yard.protection.restore(name, "v1.0.0", aliases=True)
    assert yard.resolve(name, "production").version != mv.version
    _quiet(yard, name)


def test_an_import_leaves_the_detectors_quiet(
        yard: Any, make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
        tmp_path: Path) -> None:
    from tests.integration.test_exchange import _other_yard

    _two(yard, name, trained)
    yard.promote(name, 2, to="production", force=True, reason="first")
    other = _other_yard(make_yard, tmp_path / "other")
    other.import_registry(yard.export([name]))
    assert other.governance.unaudited(name) == []
    other.history(name, verify=True)


# -- #24.9 adopt with MLflow stages -----------------------------------------------------------
def _plain_versions(yard: Any, name: str, trained: dict[str, Any], count: int) -> None:
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(yard.tracking.tracking_uri)
    mlflow.set_registry_uri(yard.tracking.registry_uri)
    for depth in range(count):
        with mlflow.start_run():
            mlflow.log_param("depth", depth)
            mlflow.sklearn.log_model(
                trained["model"], name="model", registered_model_name=name,
                pip_requirements=["scikit-learn"],
                skops_trusted_types=["sklearn.tree._tree.Tree"],
                input_example=trained["X"].head(3))


def test_adopt_maps_mlflow_stages(yard: Any, name: str, trained: dict[str, Any],
                                  caplog: pytest.LogCaptureFixture) -> None:
    _plain_versions(yard, name, trained, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client = yard.tracking.client
        client.transition_model_version_stage(name, "1", "Production")
        client.transition_model_version_stage(name, "2", "Staging")
        client.transition_model_version_stage(name, "3", "Production")  # two hold it
    with caplog.at_level("WARNING", logger="modelyard.adopt"):
        adopted = yard.adopt(name)
    assert [(a.version, a.stage) for a in adopted] == [
        (1, "archived"), (2, "staging"), (3, "production"), (4, "none")]
    assert "#1, #3 hold production" in caplog.text
    assert yard.resolve(name, "production").version == 3
    assert yard.resolve(name, "staging").version == 2
    assert yard.load(name, "production").model is not None
    assert _fields(yard, name) == {1: "Archived", 2: "Staging", 3: "Production", 4: "None"}
    last = yard.history(name, verify=True)[-1]
    assert last.stages["production"] == 3 and last.stages["staging"] == 2
    _quiet(yard, name)


def test_adopt_with_stage_aliases_is_quiet(yard: Any, name: str,
                                           trained: dict[str, Any]) -> None:
    _plain_versions(yard, name, trained, 2)
    yard.tracking.client.set_registered_model_alias(name, "production", 1)
    adopted = yard.adopt(name)
    assert [(a.version, a.stage) for a in adopted] == [(1, "production"), (2, "none")]
    assert _fields(yard, name) == {1: "Production", 2: "None"}
    _quiet(yard, name)


def test_adopt_keeps_the_audited_holder_over_a_newer_stage_field(
        yard: Any, name: str, trained: dict[str, Any]) -> None:
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    yard.promote(name, 1, to="production", force=True, reason="first")
    _plain_versions(yard, name, trained, 1)
    _transition(yard, name, 2, "Production")  # plain MLflow archives #1's field
    assert [d.holder_version for d in yard.governance.unaudited(name)] == [2]
    adopted = yard.adopt(name)
    assert [(a.version, a.stage) for a in adopted] == [(2, "archived")]
    assert yard.resolve(name, "production").version == 1
    assert _fields(yard, name) == {1: "Production", 2: "Archived"}
    _quiet(yard, name)
