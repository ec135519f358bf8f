"""The compare, export, import and adopt commands: exit codes, one-line errors, --json."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.helpers import run_cli


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _register_two(yard: Any, name: str, trained: dict[str, Any]) -> None:
    frame = trained["X"].head(3)
    yard.register(trained["model"], name, metrics={"accuracy": 0.9}, params={"depth": 3},
                  input_example=frame)
    yard.register(trained["model"], name, metrics={"accuracy": 0.95}, params={"depth": 4},
                  input_example=frame)


def _other_env(root: Path) -> dict[str, str]:
    """Environment for a CLI pointed at a second, empty embedded registry."""
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri,
            "MODELYARD_HOME": str(root), "MODELYARD_VAULT": str(root / "vault")}


def test_compare_command(yard: Any, name: str, trained: dict[str, Any], tmp_path: Path) -> None:
    _register_two(yard, name, trained)
    table = run_cli("compare", name, check=True)
    for text in ("v1.0.0", "v1.0.1", "metrics.accuracy", "params.depth", "0.95"):
        assert text in table.stdout
    assert "differs: metrics.accuracy, params.depth" in table.stdout
    as_json = json.loads(run_cli("compare", name, "v1.0.1", "1", "--json", check=True).stdout)
    assert [v["semver"] for v in as_json["versions"]] == ["1.0.1", "1.0.0"]
    assert as_json["differences"] == ["metrics.accuracy", "params.depth"]
    plot = tmp_path / "metrics.png"
    plotted = json.loads(run_cli("compare", name, "--plot", str(plot), "--json",
                                 check=True).stdout)
    assert plotted["plot"] == {"path": str(plot), "metrics": ["accuracy"]}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _one_line_error(run_cli("compare", name, "v7.0.0"), 3, "no version matches 'v7.0.0'")
    _one_line_error(run_cli("compare", name + "-missing"), 3, "not found")
    bad_plot = tmp_path / "metrics.jpg"
    _one_line_error(run_cli("compare", name, "--plot", str(bad_plot)), 2, ".png")
    assert not bad_plot.exists()
    failed = run_cli("compare", name, "v7.0.0", "--json")
    assert failed.returncode == 3 and json.loads(failed.stderr)["error"] == "VersionNotFound"


def test_export_and_import_commands(yard: Any, name: str, trained: dict[str, Any],
                                    tmp_path: Path) -> None:
    _register_two(yard, name, trained)
    out = tmp_path / "exports" / "registry.json"
    summary = json.loads(run_cli("export", name, "--out", str(out), "--json",
                                 check=True).stdout)
    assert summary["models"] == 1 and summary["versions"] == 2 and summary["out"] == str(out)
    doc = json.loads(out.read_text())
    assert doc["format"] == "modelyard-export"
    assert [v["semver"] for v in doc["models"][0]["versions"]] == ["1.0.0", "1.0.1"]
    to_stdout = json.loads(run_cli("export", name, check=True).stdout)
    assert to_stdout["models"][0]["name"] == name
    _one_line_error(run_cli("export", name + "-missing", "--out", str(tmp_path / "x.json")), 3,
                    "not found")
    assert not (tmp_path / "x.json").exists()

    other = _other_env(tmp_path / "other")
    dry = run_cli("import", str(out), "--dry-run", env=other, check=True)
    assert "would create 2, skipped 0, failed 0" in dry.stdout
    assert "No models" in run_cli("list", env=other, check=True).stdout
    done = run_cli("import", str(out), "--json", env=other, check=True)
    result = json.loads(done.stdout)
    assert [c["semver"] for c in result["created"]] == ["1.0.0", "1.0.1"]
    again = run_cli("import", str(out), env=other, check=True)
    assert "created 0, skipped 2, failed 0" in again.stdout
    details = json.loads(run_cli("details", f"{name}@v1.0.1", "--json", env=other,
                                 check=True).stdout)
    assert details["metrics"] == {"accuracy": 0.95} and details["params"] == {"depth": "4"}
    verified = run_cli("verify", f"{name}@v1.0.0", env=other, check=True)
    assert "match the manifest" in verified.stdout


def test_import_command_refuses_bad_files(yard: Any, name: str, trained: dict[str, Any],
                                          tmp_path: Path) -> None:
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    doc = yard.export([name])
    other = _other_env(tmp_path / "other")

    traversal = json.loads(json.dumps(doc))
    traversal["models"][0]["versions"][0]["manifest"]["../../etc/passwd"] = {
        "sha256": "0" * 64, "size": 1}
    bad_semver = json.loads(json.dumps(doc))
    bad_semver["models"][0]["versions"][0]["semver"] = "one"
    marker = {**doc, "format": "something-else"}
    files = {
        "traversal.json": (json.dumps(traversal), "unsafe file path"),
        "semver.json": (json.dumps(bad_semver), "not a semantic version"),
        "marker.json": (json.dumps(marker), "not a modelyard export"),
        "garbage.json": ("{not json", "not valid JSON"),
    }
    for filename, (text, needle) in files.items():
        path = tmp_path / filename
        path.write_text(text)
        _one_line_error(run_cli("import", str(path), env=other), 2, filename, needle)
    # The backend under test refuses too.
    _one_line_error(run_cli("import", str(tmp_path / "traversal.json")), 2, "unsafe file path")
    _one_line_error(run_cli("import", str(tmp_path / "absent.json"), env=other), 2,
                    "no such file")
    as_json = run_cli("import", str(tmp_path / "marker.json"), "--json", env=other)
    assert as_json.returncode == 2
    assert json.loads(as_json.stderr)["error"] == "InvalidInput"
    assert "No models" in run_cli("list", env=other, check=True).stdout
    assert len(yard.versions(name)) == 1

    unreachable = json.loads(json.dumps(doc))
    unreachable["models"][0]["versions"][0]["artifact_location"] = (
        tmp_path / "gone").as_uri()
    unreachable["models"][0]["versions"][0]["source"] = "models:/m-0000"
    path = tmp_path / "unreachable.json"
    path.write_text(json.dumps(unreachable))
    done = run_cli("import", str(path), env=other)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "not imported" in done.stderr and "refused" in done.stderr
    assert "FAILED" in done.stdout


def test_adopt_command(yard: Any, name: str, trained: dict[str, Any]) -> None:
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(yard.tracking.tracking_uri)
    mlflow.set_registry_uri(yard.tracking.registry_uri)
    for depth in (3, 4):
        with mlflow.start_run():
            mlflow.log_param("depth", depth)
            mlflow.sklearn.log_model(
                trained["model"], name="model", registered_model_name=name,
                pip_requirements=["scikit-learn"],
                skops_trusted_types=["sklearn.tree._tree.Tree"],
                input_example=trained["X"].head(3),
            )
    done = run_cli("adopt", name, "--json", check=True)
    adopted = json.loads(done.stdout)
    assert [(a["version"], a["semver"], a["bump"]) for a in adopted] == [
        (1, "1.0.0", "initial"), (2, "1.0.1", "patch")]
    assert all(a["manifest_sha256"] for a in adopted)
    again = run_cli("adopt", name, check=True)
    assert "nothing to adopt" in again.stdout
    assert "match the manifest" in run_cli("verify", f"{name}@latest", check=True).stdout
    _one_line_error(run_cli("adopt", name + "-missing"), 3, "not found")
    _one_line_error(run_cli("adopt", "bad/name"), 2, "invalid model name")
