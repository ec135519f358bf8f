"""Registration, semver, manifests and verified loading on both backends."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import IntegrityError, InvalidInput, VersionConflict, VersionNotFound


def test_register_and_load_roundtrip(yard: Any, name: str, trained: dict[str, Any],
                                     capfd: pytest.CaptureFixture[str]) -> None:
    mv = yard.register(
        trained["model"], name, metrics={"accuracy": 0.9}, params={"n_estimators": 10},
        input_example=trained["X"].head(3), seed=7,
    )
    assert (mv.version, mv.semver, mv.bump) == (1, "1.0.0", "initial")
    loaded = yard.load(name, "latest")
    assert loaded.verified and loaded.source == "registry"
    # The library never prints: no MLflow "Downloading artifacts" bars on a registry load.
    assert "Downloading artifacts" not in capfd.readouterr().err
    assert list(loaded.model.predict(trained["X"].head(5))) == list(
        trained["model"].predict(trained["X"].head(5))
    )
    again = yard.load(name, "v1.0.0")
    assert again.source == "cache"
    details = yard.get(name, "1")
    assert details.metrics == {"accuracy": 0.9}
    assert details.params == {"n_estimators": "10"}
    assert details.lineage.seed == "7"
    assert details.manifest_sha256 and details.artifact_location


def test_semver_follows_changes(yard: Any, name: str, trained: dict[str, Any]) -> None:
    model, frame = trained["model"], trained["X"]
    first = yard.register(model, name, params={"depth": 3}, input_example=frame.head(3))
    same = yard.register(model, name, params={"depth": 4}, input_example=frame.head(3))
    assert (first.semver, same.semver, same.bump) == ("1.0.0", "1.0.1", "patch")
    assert "depth 3 -> 4" in same.bump_reason
    forced = yard.register(model, name, params={"depth": 4}, input_example=frame.head(3),
                           bump="major")
    assert forced.semver == "2.0.0"
    explicit = yard.register(model, name, input_example=frame.head(3), version="3.1.0")
    assert explicit.semver == "3.1.0"
    with pytest.raises(VersionConflict):
        yard.register(model, name, input_example=frame.head(3), version="3.1.0")
    assert [v.tags["modelyard.semver"] for v in yard.versions(name)] == [
        "1.0.0", "1.0.1", "2.0.0", "3.1.0"]


def test_unknown_ref_names_nearest(yard: Any, name: str, trained: dict[str, Any]) -> None:
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    with pytest.raises(VersionNotFound) as info:
        yard.get(name, "v1.0.1")
    assert "v1.0.0" in info.value.message


def test_bad_input_changes_nothing(yard: Any, name: str, trained: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        yard.register(trained["model"], name, data=["missing.csv"])
    with pytest.raises(InvalidInput):
        yard.register(trained["model"], "bad/name")
    with pytest.raises(InvalidInput):
        yard.register(trained["model"], name, metrics={"accuracy": "high"})
    assert name not in [m["name"] for m in yard.list_models()]


def test_tampered_artifact_refuses_to_load(yard: Any, name: str, trained: dict[str, Any],
                                           backend: str, stack_or_none: Any) -> None:
    mv = yard.register(trained["model"], name, input_example=trained["X"].head(3))
    assert yard.verify(name, "latest")["ok"]
    _flip_one_byte(mv.artifact_location, "model.skops", stack_or_none)
    with pytest.raises(IntegrityError) as info:
        yard.load(name, "latest")
    assert "model.skops" in info.value.message
    with pytest.raises(IntegrityError, match=r"model\.skops"):
        yard.verify(name, "latest")
    assert yard.get(name, "latest").semver == "1.0.0"  # details still work


def _flip_one_byte(location: str, filename: str, stack: Any) -> None:
    from pathlib import Path
    from urllib.parse import urlparse

    if location.startswith("file://"):
        path = Path(urlparse(location).path) / filename
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    assert location.startswith(("s3://", "mlflow-artifacts:")), location
    client = stack.s3_client()
    prefix = location.split("/models/", 1)[1]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=stack.bucket)["Contents"]
            if prefix in o["Key"] and o["Key"].endswith(filename)]
    assert len(keys) == 1, keys
    body = bytearray(client.get_object(Bucket=stack.bucket, Key=keys[0])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=stack.bucket, Key=keys[0], Body=bytes(body))


def test_the_manifest_covers_every_file_a_load_reads(
    yard: Any, name: str, trained: dict[str, Any], tmp_path: Path,
) -> None:
    import mlflow.sklearn

    saved = tmp_path / "saved"
    mlflow.sklearn.save_model(trained["model"], str(saved), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])  # no inference subprocess
    (saved / "__pycache__").mkdir()
    (saved / "__pycache__" / "helper.cpython-311.pyc").write_bytes(b"compiled")
    # The name MLflow gives the record its registry downloads add: no content is exempt.
    (saved / "registered_model_meta").write_text("model_name: x\nloader_module: evil\n")
    mv = yard.register_directory(saved, name)
    manifest = yard._loader.manifest_of(yard.get(name, mv.version))
    assert {"__pycache__/helper.cpython-311.pyc", "registered_model_meta"} <= set(manifest.files)
    for tampered in ("__pycache__/helper.cpython-311.pyc", "registered_model_meta"):
        local = tmp_path / f"copy-{len(tampered)}"
        shutil.copytree(saved, local)
        (local / tampered).write_bytes(b"tampered")
        with pytest.raises(IntegrityError):
            manifest.verify_directory(local, label=name, semver="1.0.0")
    # A downloaded version has exactly its manifest's files: the load path verifies it.
    assert yard.load(name, mv.version, verify=True).verified
    # Beyond the manifest, a folder may hold only MLflow's own record of this very version
    # (its registry downloads write one into a local store); any other content is refused.
    plain = tmp_path / "plain"
    mlflow.sklearn.save_model(trained["model"], str(plain), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])  # no inference subprocess
    bare = yard.register_directory(plain, name)
    bare_manifest = yard._loader.manifest_of(yard.get(name, bare.version))
    (plain / "registered_model_meta").write_text(
        f"model_name: {name}\nmodel_version: '{bare.version}'\n")
    bare_manifest.verify_directory(plain, label=name, semver=str(bare.semver))
    for stranger in ("model_name: other\nmodel_version: '1'\n",
                     f"model_name: {name}\nmodel_version: '1'\nflavor: evil\n", "\x00\xff"):
        (plain / "registered_model_meta").write_text(stranger)
        with pytest.raises(IntegrityError, match="unexpected"):
            bare_manifest.verify_directory(plain, label=name, semver=str(bare.semver))
