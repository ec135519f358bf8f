"""Refusals that tell the truth, on both backends (#31.12): non-finite metrics change
nothing, the ``--follow-links`` the symlink refusal recommends exists, and ``verify --all``
names an unaudited stage holder as the reason it exits 5."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import InvalidInput
from tests.support.helpers import run_cli


def test_non_finite_metrics_are_refused_and_change_nothing(
        yard: Any, name: str, trained: dict[str, Any]) -> None:
    for value in (float("nan"), float("inf"), float("-inf"), "1e999"):
        with pytest.raises(InvalidInput, match=r"^metric 'accuracy' must be a finite number"):
            yard.register(trained["model"], name, metrics={"accuracy": value})
    assert name not in [m["name"] for m in yard.list_models()]


def test_register_follow_links_is_the_option_the_refusal_names(
        yard: Any, name: str, trained: dict[str, Any], tmp_path: Path) -> None:
    import mlflow.sklearn

    saved = tmp_path / "saved"
    mlflow.sklearn.save_model(trained["model"], str(saved), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    (tmp_path / "notes.txt").write_text("outside the folder")
    (saved / "notes.txt").symlink_to(tmp_path / "notes.txt")
    refused = run_cli("register", str(saved), "--name", name)
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "pass --follow-links" in line
    done = run_cli("--json", "register", str(saved), "--name", name, "--follow-links")
    assert done.returncode == 0, done.stderr
    version = json.loads(done.stdout)["version"]
    out = tmp_path / "out"
    yard.download(name, version, out)
    assert (out / "notes.txt").read_text() == "outside the folder"
    assert not (out / "notes.txt").is_symlink()


def test_verify_all_names_an_unaudited_holder_as_what_is_wrong(
        yard: Any, name: str, trained: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    yard.register(trained["model"], name)
    yard.promote(name, 1, to="production", force=True, reason="first")
    yard.register(trained["model"], name, bump="patch")
    MlflowClient(yard.tracking.tracking_uri).set_registered_model_alias(name, "production", 2)
    done = run_cli("verify", "--all", name)
    assert done.returncode == 5, done.stderr
    assert "0 version(s) damaged" not in done.stdout
    assert "production is held by #2 in MLflow but the audit trail says #1" in done.stdout
    summary = done.stdout.strip().splitlines()[-1]
    assert "1 stage holder(s) no audit event explains" in summary
    assert f"modelyard recover {name}" in summary
