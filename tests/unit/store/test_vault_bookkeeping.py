"""The one rule for files beside a version's manifest (``vault.mlflow_bookkeeping``): only
MLflow's exact record for this model, unlisted, at the top of the folder, is not a stranger."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import UnexpectedFiles
from modelyard.store.vault import (
    MLFLOW_RECORD,
    Manifest,
    drop_mlflow_bookkeeping,
    mlflow_bookkeeping,
    quarantine_key,
)

RECORD = b"model_name: churn\nmodel_version: '3'\n"


def _reader(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    return lambda rel: files.get(rel)


def test_only_mlflows_exact_record_for_this_model_is_bookkeeping() -> None:
    files = {"MLmodel": b"x", MLFLOW_RECORD: RECORD}
    assert mlflow_bookkeeping(files, {"MLmodel"}, "churn", _reader(files)) == {MLFLOW_RECORD}
    assert mlflow_bookkeeping(files, {"MLmodel"}, "other", _reader(files)) == set()
    # listed in the manifest: the version's own file, checked like any other
    assert mlflow_bookkeeping(files, {"MLmodel", MLFLOW_RECORD}, "churn", _reader(files)) == set()
    for stranger in (b"model_name: churn\nmodel_version: '3'\nloader_module: evil\n",
                     b"model_name: churn\nmodel_version: three\n", b"\x00\xff", b"[]",
                     RECORD + b"#" * 5000):
        files[MLFLOW_RECORD] = stranger
        assert mlflow_bookkeeping(files, {"MLmodel"}, "churn", _reader(files)) == set()
    nested = {f"sub/{MLFLOW_RECORD}": RECORD}
    assert mlflow_bookkeeping(nested, set(), "churn", _reader(nested)) == set()


def test_unexpected_names_every_other_unlisted_file() -> None:
    manifest = Manifest({"MLmodel": ("0" * 64, 1)})
    files = {"MLmodel": b"x", MLFLOW_RECORD: RECORD, "sitecustomize.py": b"import os"}
    assert manifest.unexpected(files, "churn", _reader(files)) == ["sitecustomize.py"]
    assert manifest.unexpected(files, "other", _reader(files)) == [
        MLFLOW_RECORD, "sitecustomize.py"]


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=200), rel=st.sampled_from(
    [MLFLOW_RECORD, "sitecustomize.py", f"a/{MLFLOW_RECORD}", "MLmodel.bak"]))
def test_nothing_but_a_genuine_record_is_exempt(content: bytes, rel: str) -> None:
    files = {"MLmodel": b"x", rel: content}
    exempt = mlflow_bookkeeping(files, {"MLmodel"}, "churn", _reader(files))
    assert exempt <= {MLFLOW_RECORD}
    if exempt:
        import yaml

        record = yaml.safe_load(content)
        assert rel == MLFLOW_RECORD and record["model_name"] == "churn"
        assert set(record) == {"model_name", "model_version"}


def test_verify_directory_and_drop_follow_the_rule(tmp_path: Path) -> None:
    tmp_path = tmp_path / "version"
    tmp_path.mkdir()
    (tmp_path / "MLmodel").write_bytes(b"x")
    manifest = Manifest.of_directory(tmp_path)
    (tmp_path / MLFLOW_RECORD).write_bytes(RECORD)
    manifest.verify_directory(tmp_path, label="churn", semver="1.0.0")
    (tmp_path / "sitecustomize.py").write_bytes(b"import os")
    with pytest.raises(UnexpectedFiles) as caught:
        manifest.verify_directory(tmp_path, label="churn", semver="1.0.0")
    assert caught.value.fields["files"] == ["sitecustomize.py"]
    assert drop_mlflow_bookkeeping(tmp_path, "churn", manifest.files) == [MLFLOW_RECORD]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MLmodel", "sitecustomize.py"]


def test_quarantine_key() -> None:
    assert quarantine_key("churn", 3, "20260101T000000Z", "a/sitecustomize.py") == (
        "quarantine/churn/3/20260101T000000Z/a/sitecustomize.py")
