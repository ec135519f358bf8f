"""The structural promises: no process-wide state, the user's own run, the project root,
one registration pipeline, and the layout's edges."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import InvalidInput
from tests.support.helpers import run_cli


def test_yard_leaves_mlflow_and_the_environment_alone(
    yard: Any, name: str, trained: dict[str, Any],
) -> None:
    import mlflow

    before_uri = mlflow.get_tracking_uri()
    before_env = dict(os.environ)
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    yard.load(name, "latest")
    yard.promote(name, "latest", to="staging")
    assert mlflow.get_tracking_uri() == before_uri
    assert dict(os.environ) == before_env
    # The user's own fluent calls still go where the user's settings say, not to modelyard.
    assert yard.tracking.tracking_uri != before_uri or "MLFLOW_TRACKING_URI" in before_env


def test_register_inside_the_users_run_on_the_same_uri(
    yard: Any, name: str, trained: dict[str, Any],
) -> None:
    import mlflow

    mlflow.set_tracking_uri(yard.tracking.tracking_uri)  # the user's own choice
    with mlflow.start_run() as run:
        mv = yard.register(trained["model"], name, metrics={"accuracy": 0.9},
                           input_example=trained["X"].head(3))
    assert mv.run_id == run.info.run_id
    assert yard.get(name, mv.version).metrics["accuracy"] == 0.9
    # The run it is logged into timed the training: from the run's start to the registration.
    lin = yard.get(name, mv.version).lineage
    assert lin.duration_from == "mlflow_run" and float(lin.duration_s) >= 0
    assert lin.started_at == datetime.fromtimestamp(run.info.start_time / 1000, timezone.utc
                                                    ).isoformat(timespec="seconds")
    assert float(lin.cpu_s) > 0 and float(lin.peak_rss_mb) > 0
    # A caller's duration that is no number of seconds is refused before anything is created.
    with pytest.raises(InvalidInput, match="duration_s"):
        yard.register(trained["model"], name, duration_s=float("nan"))
    assert [v.version for v in yard.versions(name)] == [mv.version]


def test_register_inside_a_run_on_another_uri_uses_its_own_run(
    yard: Any, name: str, trained: dict[str, Any], tmp_path: Path,
) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'users-own.db'}")
    with mlflow.start_run() as run:
        mv = yard.register(trained["model"], name, input_example=trained["X"].head(3))
    assert mv.run_id and mv.run_id != run.info.run_id
    assert yard.load(name, mv.version).verified


def test_a_subfolder_opens_the_projects_registry(
    isolated: Path, trained: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelyard import Yard

    (isolated / "modelyard.toml").write_text('experiment = "modelyard"\n')
    Yard().register(trained["model"], name, input_example=trained["X"].head(3))
    deep = isolated / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert [m.name for m in Yard().list_models()] == [name]
    assert not (deep / ".modelyard").exists()
    listed = run_cli("list", "--json", check=True)
    assert name in listed.stdout


def test_register_directory_refuses_a_link_out_of_the_folder(
    yard: Any, name: str, trained: dict[str, Any], tmp_path: Path,
) -> None:
    import mlflow.sklearn

    saved = tmp_path / "saved"
    mlflow.sklearn.save_model(trained["model"], str(saved), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])  # no inference subprocess
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of the model")
    (saved / "leak.txt").symlink_to(secret)
    with pytest.raises(InvalidInput, match="symlink pointing outside"):
        yard.register_directory(saved, name)
    with pytest.raises(Exception, match="not found"):
        yard.versions(name)
    mv = yard.register_directory(saved, name, follow_links=True)
    out = tmp_path / "out"
    yard.download(name, mv.version, out)
    assert (out / "leak.txt").read_text() == "not part of the model"
    assert not (out / "leak.txt").is_symlink()


def test_load_to_never_writes_through_a_link(
    yard: Any, name: str, trained: dict[str, Any], tmp_path: Path,
) -> None:
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    yard.download(name, "latest", dest)
    (dest / "MLmodel").unlink()
    (dest / "MLmodel").symlink_to(outside / "victim")  # a link planted inside a loaded DEST
    yard.download(name, "latest", dest)
    assert not (outside / "victim").exists()
    assert (dest / "MLmodel").is_file() and not (dest / "MLmodel").is_symlink()
    link = tmp_path / "link"
    link.symlink_to(outside)
    with pytest.raises(InvalidInput, match="is a link"):
        yard.download(name, "latest", link)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(InvalidInput, match="is a file"):
        yard.download(name, "latest", afile)
    assert list(outside.iterdir()) == []


def test_load_to_never_deletes_what_it_did_not_write(
    yard: Any, name: str, trained: dict[str, Any], tmp_path: Path,
) -> None:
    """``load --to`` writes into a new or empty folder, or replaces one an earlier load wrote;
    the registry's own folders, the project root and a folder holding a user's files are
    refused in one line with nothing changed."""
    from modelyard.registry.loading import LOAD_MARK

    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    listed = yard.versions(name)
    home = yard.ctx.settings.home_path
    home.mkdir(parents=True, exist_ok=True)
    before = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
    for dest in (home, home / "vault", home.parent, yard.ctx.cache_dir, home / "new-inside"):
        with pytest.raises(InvalidInput, match=r"holds|inside"):
            yard.download(name, "latest", dest)
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == before
    assert [v.version for v in yard.versions(name)] == [v.version for v in listed]
    yard.load(name, "latest")  # the registry and its vault are whole

    kept = tmp_path / "d5"
    kept.mkdir()
    (kept / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match=r"did not write \(e.g. keep.txt\)"):
        yard.download(name, "latest", kept)
    assert (kept / "keep.txt").read_text() == "mine" and len(list(kept.iterdir())) == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    yard.download(name, "latest", empty)
    assert (empty / "MLmodel").is_file() and (empty / LOAD_MARK).is_file()
    yard.download(name, "latest", empty)  # a folder a load wrote is replaced whole
    (empty / "notes.txt").write_text("added by hand")
    with pytest.raises(InvalidInput, match=r"notes\.txt, which no earlier load wrote"):
        yard.download(name, "latest", empty)
    assert (empty / "notes.txt").read_text() == "added by hand"


def test_load_to_cli_refuses_the_registry_home_in_one_line(
    yard: Any, name: str, trained: dict[str, Any],
) -> None:
    from tests.support.helpers import run_cli

    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    result = run_cli("load", f"{name}@latest", "--to", ".modelyard")
    assert result.returncode != 0
    assert "registry's home" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert [v.version for v in yard.versions(name)]


def test_corrupt_cache_record_is_one_line_not_a_traceback(
    yard: Any, name: str, trained: dict[str, Any],
) -> None:
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    yard.load(name, "latest")
    refs = yard.ctx.cache_dir / "refs" / yard.ctx.registry_id / name
    for record in refs.glob("*.json"):
        record.write_text("{not json")
    assert yard._loader._load_remembered(name, "latest", True) is None


def test_stage_uris_follow_promotion(yard: Any, name: str, trained: dict[str, Any]) -> None:
    """The seeds load ``models:/NAME/Production``: MLflow's stage field follows promote."""
    import mlflow.pyfunc

    first = yard.register(trained["model"], name, input_example=trained["X"].head(3))
    yard.promote(name, first.version, to="staging")
    yard.promote(name, first.version, to="production")
    uri = f"models:/{name}/Production"
    from mlflow import MlflowClient

    client = MlflowClient(yard.tracking.tracking_uri)
    assert client.get_model_version(name, str(first.version)).current_stage == "Production"
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(yard.tracking.tracking_uri)  # as the seeds' serving code does
    try:
        model = mlflow.pyfunc.load_model(uri)
    finally:
        mlflow.set_tracking_uri(previous)
    assert list(model.predict(trained["X"].head(3))) == list(
        trained["model"].predict(trained["X"].head(3)))
    second = yard.register(trained["model"], name, params={"n": 2},
                           input_example=trained["X"].head(3))
    yard.promote(name, second.version, to="production", force=True, reason="hotfix")
    assert client.get_model_version(name, str(first.version)).current_stage == "Archived"
    assert client.get_model_version(name, str(second.version)).current_stage == "Production"


def test_a_dead_tracking_server_is_one_line_within_ten_seconds(
    isolated: Path, trained: dict[str, Any],
) -> None:
    import time

    from modelyard import Yard
    from modelyard.errors import YardError
    from tests.support.devstack import free_port

    uri = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = run_cli("list", env={"MLFLOW_TRACKING_URI": uri})
    assert time.monotonic() - started < 10
    assert done.returncode == 6, done.stderr
    assert f"127.0.0.1:{uri.rsplit(':', 1)[1]}" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1

    started = time.monotonic()
    with pytest.raises(YardError) as info:
        Yard(tracking_uri=uri).register(trained["model"], "m",
                                        input_example=trained["X"].head(3))
    assert time.monotonic() - started < 10
    assert "127.0.0.1" in info.value.message and "s3cret" not in info.value.message
