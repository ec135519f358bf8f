"""compare, export, import and adopt on both backends."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import Conflict, InvalidInput, ModelNotFound, VersionNotFound
from modelyard.registry.compare import plot_comparison
from modelyard.registry.export_format import parse_export


def _other_yard(make_yard: Callable[..., Any], root: Path, **policy: Any) -> Any:
    """A second, empty registry: an embedded store in its own folder (``policy``: settings)."""
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    # registry_uri too: MLflow's set_registry_uri leaks the first Yard's URI into the process
    # environment (MLFLOW_REGISTRY_URI), which a later Yard would otherwise read.
    return make_yard(home=str(root), tracking_uri=uri, registry_uri=uri,
                     vault=str(root / "vault"), **policy)


def _register_two(yard: Any, name: str, trained: dict[str, Any]) -> tuple[Any, Any]:
    frame = trained["X"].head(3)
    first = yard.register(trained["model"], name, metrics={"accuracy": 0.9, "f1": 0.8},
                          params={"depth": 3}, input_example=frame, description="first one",
                          tags={"team": "risk"})
    second = yard.register(trained["model"], name, metrics={"accuracy": 0.93, "f1": 0.8},
                           params={"depth": 4}, input_example=frame)
    return first, second


def _model_names(yard: Any) -> set[str]:
    return {m["name"] for m in yard.list_models()}


def test_compare_lists_versions_and_differences(yard: Any, name: str,
                                                trained: dict[str, Any]) -> None:
    _register_two(yard, name, trained)
    result = yard.compare(name)
    rows = result["versions"]
    assert [(r["version"], r["semver"]) for r in rows] == [(1, "1.0.0"), (2, "1.0.1")]
    assert rows[0]["metrics"] == {"accuracy": 0.9, "f1": 0.8}
    assert rows[1]["params"] == {"depth": "4"}
    assert rows[1]["bump"] == "patch" and "depth 3 -> 4" in rows[1]["bump_reason"]
    assert [c["name"] for c in rows[0]["input_schema"]] == list(trained["X"].columns)
    assert rows[0]["stage"] == "none" and rows[0]["data"] == {}
    assert "metrics.accuracy" in result["differences"]
    assert "params.depth" in result["differences"]
    assert "metrics.f1" not in result["differences"]
    assert "input_schema" not in result["differences"]
    # References of any kind; the same version twice is shown once.
    picked = yard.compare(name, ["v1.0.1", "1", "latest"])
    assert [r["version"] for r in picked["versions"]] == [2, 1]
    single = yard.compare(name, ["latest"])
    assert single["differences"] == []
    with pytest.raises(VersionNotFound):
        yard.compare(name, ["v9.9.9"])
    with pytest.raises(ModelNotFound):
        yard.compare(name + "-missing")


def test_compare_plot_writes_png_with_metrics(yard: Any, name: str, trained: dict[str, Any],
                                              tmp_path: Path) -> None:
    from PIL import Image

    _register_two(yard, name, trained)
    target = tmp_path / "plots" / "metrics.png"
    drawn = plot_comparison(yard.compare(name), target)
    assert drawn == ["accuracy", "f1"]
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(target) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
        assert image.info["Description"] == "metrics: accuracy, f1"


# -- export -------------------------------------------------------------------------------
def test_export_document(yard: Any, name: str, trained: dict[str, Any]) -> None:
    first, _ = _register_two(yard, name, trained)
    yard.tracking.set_alias(name, "champion", 1)
    doc = yard.export([name])
    assert doc["format"] == "modelyard-export" and doc["format_version"] == 1
    assert doc["exported_at"] and doc["tracking_uri"] == yard.tracking.tracking_uri
    [model] = doc["models"]
    assert model["name"] == name and model["aliases"] == {"champion": 1}
    one, two = model["versions"]
    assert (one["version"], one["semver"], two["semver"]) == (1, "1.0.0", "1.0.1")
    assert one["description"] == "first one" and one["tags"]["team"] == "risk"
    assert one["aliases"] == ["champion"] and one["stage"] == "none"
    assert one["bump"] == "initial" and two["bump"] == "patch"
    assert one["manifest_sha256"] == first.manifest_sha256
    assert "MLmodel" in one["manifest"] and len(one["manifest"]["MLmodel"]["sha256"]) == 64
    assert one["metrics"] == {"accuracy": 0.9, "f1": 0.8} and one["params"] == {"depth": "3"}
    assert one["run_id"] and one["source"].startswith("models:/m-")
    assert one["artifact_location"] and one["status"] == "READY"
    assert one["lineage"]["trained_by"] == "alice"
    for dropped in ("current_stage", "run_link"):
        assert dropped not in one
    parse_export(json.dumps(doc))  # what export writes, import accepts
    text = json.dumps(doc)
    for var, value in os.environ.items():  # nothing from the environment leaks
        if var.startswith("AWS_SECRET") and value:
            assert value not in text
    whole = yard.export()
    assert name in [m["name"] for m in whole["models"]]
    with pytest.raises(ModelNotFound):
        yard.export([name + "-missing"])
    with pytest.raises(InvalidInput):
        yard.export(["bad/name"])


def test_export_redacts_tracking_password(yard: Any, name: str, trained: dict[str, Any]
                                          ) -> None:
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    _ = yard.tracking.client  # connected; now pretend the URI carried a password
    real = yard.tracking.tracking_uri
    yard.tracking.tracking_uri = "https://bob:hunter2-secret@mlflow.example.com"
    try:
        doc = yard.export([name])
    finally:
        yard.tracking.tracking_uri = real
    assert doc["tracking_uri"] == "https://bob:***@mlflow.example.com"
    assert "hunter2-secret" not in json.dumps(doc)


# -- import -------------------------------------------------------------------------------
def _check_imported(target: Any, name: str, trained: dict[str, Any]) -> None:
    versions = target.versions(name)
    assert [v.tags["modelyard.semver"] for v in versions] == ["1.0.0", "1.0.1"]
    one = target.get(name, "v1.0.0")
    assert one.description == "first one" and one.tags["team"] == "risk"
    assert one.metrics == {"accuracy": 0.9, "f1": 0.8} and one.params == {"depth": "3"}
    assert one.bump == "initial" and "champion" in one.aliases
    assert one.tags["modelyard.imported_from"]
    two = target.get(name, "production")
    assert two.semver == "1.0.1" and two.stage == "production" and two.bump == "patch"
    loaded = target.load(name, "v1.0.1")
    assert loaded.verified
    assert list(loaded.model.predict(trained["X"].head(5))) == list(
        trained["model"].predict(trained["X"].head(5)))
    assert target.verify(name, "v1.0.0")["ok"]


def _prepare_source(source: Any, name: str, trained: dict[str, Any]) -> None:
    _register_two(source, name, trained)
    source.tracking.set_alias(name, "champion", 1)
    source.tracking.set_alias(name, "production", 2)
    source.tracking.set_version_tags(name, 2, {"modelyard.stage": "production"})


def test_import_from_this_backend_into_another_registry(
    yard: Any, make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
    tmp_path: Path,
) -> None:
    _prepare_source(yard, name, trained)
    doc = yard.export([name])
    other = _other_yard(make_yard, tmp_path / "other")
    dry = other.import_registry(doc, dry_run=True)
    assert [v["semver"] for v in dry["would_create"]] == ["1.0.0", "1.0.1"]
    assert name not in _model_names(other)
    summary = other.import_registry(json.dumps(doc))
    assert [c["semver"] for c in summary["created"]] == ["1.0.0", "1.0.1"]
    assert summary["failed"] == []
    assert {(a["alias"], a["version"]) for a in summary["aliases"]} == {
        ("champion", 1), ("production", 2)}
    _check_imported(other, name, trained)
    # The audit trail travels with the export: the source's events, then what the import
    # did, as one intact chain whose newest event names the holders here.
    source_events = yard.history(name)
    trail = other.history(name, verify=True)
    assert [e.hash for e in trail[:len(source_events)]] == [e.hash for e in source_events]
    # The exported trail is not signed with a key this registry holds: production is earned
    # here through the promotion policy, after the import event.
    assert [e.action for e in trail[-2:]] == ["import", "promote"]
    assert trail[-2].stages["production"] is None
    assert trail[-1].stages["production"] == other.resolve(name, "production").version
    again = other.import_registry(doc)  # idempotent
    assert again["created"] == [] and len(again["skipped"]) == 2
    assert len(other.versions(name)) == 2


def test_import_from_another_registry_into_this_backend(
    yard: Any, make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
    tmp_path: Path,
) -> None:
    other = _other_yard(make_yard, tmp_path / "other")
    _prepare_source(other, name, trained)
    doc = other.export()
    summary = yard.import_registry(doc)
    assert [c["semver"] for c in summary["created"]] == ["1.0.0", "1.0.1"]
    _check_imported(yard, name, trained)
    assert yard.import_registry(doc)["created"] == []
    assert len(yard.versions(name)) == 2
    # A later registration here continues from the imported semvers.
    nxt = yard.register(trained["model"], name, params={"depth": 5},
                        input_example=trained["X"].head(3))
    assert nxt.semver == "1.0.2"


def _valid_doc(yard: Any, name: str, trained: dict[str, Any]) -> dict[str, Any]:
    yard.register(trained["model"], name, metrics={"accuracy": 0.9}, params={"depth": 3},
                  input_example=trained["X"].head(3))
    return dict(yard.export([name]))


def _hostile(doc: dict[str, Any], new_name: str) -> list[tuple[str, Any]]:
    """(what is wrong, document) pairs; each names a model absent from the target."""
    base = copy.deepcopy(doc)
    base["models"][0]["name"] = new_name
    for version in base["models"][0]["versions"]:
        version["name"] = new_name
    cases: list[tuple[str, Any]] = []

    def variant(label: str, change: Callable[[dict[str, Any]], Any]) -> None:
        mutated = copy.deepcopy(base)
        result = change(mutated)
        cases.append((label, mutated if result is None else result))

    version = base["models"][0]["versions"][0]

    def traversal(d: dict[str, Any]) -> None:
        v = d["models"][0]["versions"][0]
        v["manifest"]["../../etc/passwd"] = {"sha256": "0" * 64, "size": 1}

    def absolute(d: dict[str, Any]) -> None:
        d["models"][0]["versions"][0]["manifest"]["/etc/passwd"] = {"sha256": "0" * 64,
                                                                    "size": 1}

    def duplicate(d: dict[str, Any]) -> None:
        twin = copy.deepcopy(d["models"][0]["versions"][0])
        twin["version"] = 99
        d["models"][0]["versions"].append(twin)

    variant("path traversal", traversal)
    variant("absolute path", absolute)
    variant("bad semver", lambda d: d["models"][0]["versions"][0].update(semver="1.0"))
    variant("hostile semver", lambda d: d["models"][0]["versions"][0].update(
        semver="1.0.0; rm -rf /"))
    variant("wrong format marker", lambda d: d.update(format="mlflow-export"))
    variant("missing format marker", lambda d: d.pop("format"))
    variant("future format version", lambda d: d.update(format_version=2))
    variant("huge description", lambda d: d["models"][0]["versions"][0].update(
        description="x" * 1_000_000))
    variant("tag key too long", lambda d: d["models"][0]["versions"][0]["tags"].update(
        {"k" * 300: "v"}))
    variant("duplicate semver", duplicate)
    variant("bad model name", lambda d: d["models"][0].update(name="../evil"))
    variant("unknown field", lambda d: d["models"][0]["versions"][0].update(shell="rm"))
    variant("wrong type", lambda d: d["models"][0]["versions"][0].update(metrics={"a": "x"}))
    variant("manifest does not hash to its tag", lambda d: d["models"][0]["versions"][0].update(
        manifest_sha256="f" * 64))
    variant("audit event edited", lambda d: d["models"][0]["audit"][0].update(
        reason="edited after the fact"))
    variant("audit event dropped", lambda d: d["models"][0]["audit"].pop(0))
    variant("non-JSON", lambda d: "{this is not json")
    variant("JSON list", lambda d: "[1, 2]")
    variant("huge document", lambda d: b" " * (65 * 1024 * 1024))
    assert version["manifest"]  # the base case carries a manifest to tamper with
    assert base["models"][0]["audit"]  # ... and an audit trail
    return cases


def test_import_refuses_hostile_documents_and_changes_nothing(
    yard: Any, make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
    tmp_path: Path,
) -> None:
    doc = _valid_doc(yard, name, trained)
    other = _other_yard(make_yard, tmp_path / "other")
    new_name = name + "-copy"
    before = _model_names(yard)
    for label, hostile in _hostile(doc, new_name):
        for target in (yard, other):
            with pytest.raises(InvalidInput) as info:
                target.import_registry(hostile)
            assert "\n" not in info.value.message, label
    assert _model_names(other) == set()
    assert _model_names(yard) == before
    assert new_name not in _model_names(yard)
    assert len(yard.versions(name)) == 1
    with pytest.raises(InvalidInput) as traversal:
        other.import_registry(_hostile(doc, new_name)[0][1])
    assert "unsafe file path" in traversal.value.message


def test_import_refuses_a_semver_taken_by_other_contents(
    yard: Any, make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
    tmp_path: Path,
) -> None:
    other = _other_yard(make_yard, tmp_path / "other")
    other.register(trained["model"], name, params={"depth": 3},
                   input_example=trained["X"].head(3))
    other.register(trained["model"], name, params={"depth": 4},
                   input_example=trained["X"].head(3))
    doc = other.export([name])
    # The target already has its own, different 1.0.0 of this model.
    yard.register(trained["model"], name, input_example=trained["X"].head(4), seed=1,
                  tags={"different": "yes"}, metrics={"accuracy": 0.5})
    mine = yard.get(name, "v1.0.0")
    assert mine.manifest_sha256 != doc["models"][0]["versions"][0]["manifest_sha256"]
    with pytest.raises(Conflict) as info:
        yard.import_registry(doc)
    assert "1.0.0" in info.value.message and "nothing changed" in info.value.message
    assert [v.version for v in yard.versions(name)] == [1]  # 1.0.1 was not imported either


def test_import_fails_unreachable_versions_clearly(
    yard: Any, make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
    tmp_path: Path,
) -> None:
    doc = _valid_doc(yard, name, trained)
    other = _other_yard(make_yard, tmp_path / "other")
    version = doc["models"][0]["versions"][0]
    version["artifact_location"] = (tmp_path / "gone" / "artifacts").as_uri()
    version["source"] = "models:/m-00000000000000000000000000000000"
    summary = other.import_registry(doc)
    assert summary["created"] == []
    [failed] = summary["failed"]
    assert failed["semver"] == "1.0.0" and "refused" in failed["error"]
    assert other.versions(name) == [] if name in _model_names(other) else True


def test_import_detects_files_that_differ_from_the_manifest(
    yard: Any, make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
    tmp_path: Path,
) -> None:
    """An export pointing at other bytes than its manifest describes is not imported."""
    doc = _valid_doc(yard, name, trained)
    other_name = name + "-b"
    yard.register(trained["model"], other_name, input_example=trained["X"].head(3),
                  params={"depth": 9}, metrics={"accuracy": 0.1})
    elsewhere = yard.export([other_name])["models"][0]["versions"][0]
    version = doc["models"][0]["versions"][0]
    version["artifact_location"] = elsewhere["artifact_location"]
    version["source"] = elsewhere["source"]
    target = _other_yard(make_yard, tmp_path / "other")
    summary = target.import_registry(doc)
    [failed] = summary["failed"]
    assert "Integrity check failed" in failed["error"]
    assert summary["created"] == []


# -- adopt --------------------------------------------------------------------------------
def _plain_mlflow_versions(yard: Any, name: str, trained: dict[str, Any], count: int) -> None:
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(yard.tracking.tracking_uri)
    mlflow.set_registry_uri(yard.tracking.registry_uri)
    for index in range(count):
        with mlflow.start_run():
            mlflow.log_params({"depth": 3 + index})
            mlflow.log_metric("accuracy", 0.8 + index / 100)
            mlflow.sklearn.log_model(
                trained["model"], name="model", registered_model_name=name,
                pip_requirements=["scikit-learn"],
                skops_trusted_types=["sklearn.tree._tree.Tree"],
                input_example=trained["X"].head(3),
            )


def test_adopt_plain_mlflow_versions(yard: Any, name: str, trained: dict[str, Any]) -> None:
    _plain_mlflow_versions(yard, name, trained, 2)
    yard.tracking.set_alias(name, "production", 1)
    unmanaged = yard.get(name, "1")
    assert unmanaged.semver is None and not unmanaged.managed
    adopted = yard.adopt(name)
    assert [(mv.version, mv.semver, mv.bump) for mv in adopted] == [
        (1, "1.0.0", "initial"), (2, "1.0.1", "patch")]
    assert adopted[0].stage == "production" and adopted[1].stage == "none"
    assert "adopted from plain MLflow" in (adopted[1].bump_reason or "")
    assert "depth 3 -> 4" in (adopted[1].bump_reason or "")
    loaded = yard.load(name, "latest")
    assert loaded.verified and loaded.version.semver == "1.0.1"
    assert list(loaded.model.predict(trained["X"].head(5))) == list(
        trained["model"].predict(trained["X"].head(5)))
    assert yard.load(name, "production").version.semver == "1.0.0"
    assert yard.verify(name, "v1.0.0")["ok"]
    assert yard.adopt(name) == []  # idempotent
    # modelyard's own registrations continue from the adopted semvers ...
    nxt = yard.register(trained["model"], name, input_example=trained["X"].head(3))
    assert nxt.semver == "1.0.2"
    # ... and a later plain-MLflow version is adopted after it.
    _plain_mlflow_versions(yard, name, trained, 1)
    [late] = yard.adopt(name)
    assert (late.version, late.semver) == (4, "1.0.3")
    # An adopted registry exports and imports like any other.
    assert all(v["manifest"] for v in yard.export([name])["models"][0]["versions"])


def test_adopt_refuses_versions_older_than_managed_ones(
    yard: Any, name: str, trained: dict[str, Any]
) -> None:
    _plain_mlflow_versions(yard, name, trained, 1)
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    with pytest.raises(Conflict) as info:
        yard.adopt(name)
    assert "#1" in info.value.message
    assert yard.get(name, "1").semver is None
    with pytest.raises(ModelNotFound):
        yard.adopt(name + "-missing")
    with pytest.raises(InvalidInput):
        yard.adopt("bad name")


def test_import_cannot_go_round_the_promotion_policy(
    yard: Any, make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An export edited to mark a version production puts nothing in production past the
    target's gates and approvals: the version arrives in stage none, the gate's failure (or
    the approval request) is reported, and the trail verifies."""
    _register_two(yard, name, trained)
    doc = yard.export([name])
    edited = copy.deepcopy(doc)
    for version in edited["models"][0]["versions"]:
        if version["semver"] == "1.0.1":
            version["stage"] = "production"
            version["aliases"] = ["production"]
    monkeypatch.setenv("MODELYARD_USER", "mallory")
    gated = _other_yard(make_yard, tmp_path / "gated", production_approval_required=True,
                        gates=["accuracy >= 0.99"])
    summary = gated.import_registry(edited)
    assert [c["semver"] for c in summary["created"]] == ["1.0.0", "1.0.1"]
    assert gated.tracking.alias_holder(name, "production") is None
    assert all(v.tags["modelyard.stage"] == "none" for v in gated.versions(name))
    assert any("not put in production" in w and "accuracy >= 0.99" in w
               for w in summary["warnings"]), summary["warnings"]
    assert not any(a["alias"] == "production" for a in summary["aliases"])
    gated.history(name, verify=True)

    approving = _other_yard(make_yard, tmp_path / "approving",
                            production_approval_required=True)
    summary = approving.import_registry(edited)
    assert approving.tracking.alias_holder(name, "production") is None
    [request] = approving.requests(name)
    assert request["version"] == approving.resolve(name, "v1.0.1").version
    assert request["requested_by"] == "mallory"
    assert any("needs approval" in w for w in summary["warnings"]), summary["warnings"]
    approving.history(name, verify=True)


def test_import_keeps_stages_a_trail_signed_with_this_registrys_key_proves(
    make_yard: Callable[..., Any], name: str, trained: dict[str, Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELYARD_AUDIT_KEY", "a shared audit key for both registries")
    source = _other_yard(make_yard, tmp_path / "source")
    _register_two(source, name, trained)
    source.promote(name, 2, to="production", force=True, reason="ship")
    doc = source.export([name])
    target = _other_yard(make_yard, tmp_path / "target", gates=["accuracy >= 0.99"])
    summary = target.import_registry(doc)
    assert target.resolve(name, "production").tags["modelyard.semver"] == "1.0.1"
    assert summary["warnings"] == []
    trail = target.history(name, verify=True)
    assert trail[-1].action == "import"
    assert trail[-1].stages["production"] == target.resolve(name, "production").version
    # The same document with its stages edited no longer verifies under the key.
    edited = copy.deepcopy(doc)
    edited["models"][0]["versions"][0]["stage"] = "production"
    other = _other_yard(make_yard, tmp_path / "other", gates=["accuracy >= 0.99"])
    other.import_registry(edited)
    assert other.resolve(name, "production").tags["modelyard.semver"] == "1.0.1"
