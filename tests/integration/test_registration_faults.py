"""Promises under concurrency and faults: distinct semvers, no half-registered versions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import ModelNotFound, RegistrationFailed, StorageError
from modelyard.store.vault import Vault
from tests.support import processes
from tests.support.workers import register_once


# On the embedded default the same promise, from a fresh folder with eight processes, is
# tests/integration/test_tracking.py::test_eight_processes_on_a_fresh_embedded_folder.
@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_concurrent_registrations_get_distinct_increasing_semvers(
    yard: Any, name: str, trained: dict[str, Any], isolated: Path
) -> None:
    import mlflow.sklearn

    yard.register(trained["model"], name, input_example=trained["X"].head(3))  # 1.0.0
    # The processes register one saved folder (they import neither scikit-learn nor pandas):
    # they race on the registry, not on fitting or serialising a model.
    saved = isolated / "saved-model"
    mlflow.sklearn.save_model(trained["model"], str(saved), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    env = dict(os.environ)
    workers = 4
    with processes.context().Pool(workers) as pool:
        results = pool.map(processes.call,
                           [(env, str(isolated), register_once,
                             (name, env, str(isolated), str(saved), i))
                            for i in range(workers)])
    semvers = [semver for _, semver in sorted(results)]
    assert len(set(semvers)) == workers, results
    parsed = [tuple(int(p) for p in s.split(".")) for s in semvers]
    assert parsed == sorted(parsed), f"semvers must rise with MLflow version numbers: {results}"
    visible = yard.versions(name)
    assert [v.version for v in visible] == list(range(1, workers + 2))
    assert all(v.tags.get("modelyard.status") == "ready" for v in visible)


def test_s3_failure_mid_registration_leaves_nothing(
    make_yard: Any, name: str, trained: dict[str, Any], backend: str,
    stack_or_none: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The vault's object store goes away after the version was created, before its manifest.

    On the server backend the S3 endpoint is really stopped at that moment; on the embedded
    backend the vault sits on an S3 endpoint that stops answering the same way.
    """
    from tests.support.devstack import free_port

    yard = make_yard()
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    dead = f"http://127.0.0.1:{free_port()}"
    original = Vault.write_manifest

    def fail_first(self: Vault, *args: Any, **kwargs: Any) -> None:
        # Point the vault at an endpoint where nothing listens: a real connection failure.
        from modelyard.store.s3 import S3Store

        self.store = S3Store("modelyard", "vault", dead)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Vault, "write_manifest", fail_first)
    with pytest.raises(RegistrationFailed) as info:
        yard.register(trained["model"], name, params={"try": 2},
                      input_example=trained["X"].head(3))
    assert "unreachable" in info.value.message
    monkeypatch.setattr(Vault, "write_manifest", original)

    fresh = make_yard()
    assert [v.version for v in fresh.versions(name)] == [1]
    assert [v.version for v in fresh.tracking.versions(name)] == [1], "version left behind"
    later = fresh.register(trained["model"], name, params={"try": 3},
                           input_example=trained["X"].head(3))
    assert later.semver == "1.0.1"
    assert fresh.load(name, later.semver).verified


def test_s3_down_during_upload_registers_nothing(
    make_yard: Any, name: str, trained: dict[str, Any], backend: str, stack_or_none: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The artifact upload itself fails: no model version is created at all."""
    if backend == "server":
        # MLflow's client retries 5xx answers for minutes by default; keep the test short.
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        stack_or_none.stop_s3()
        try:
            with pytest.raises(RegistrationFailed):
                make_yard().register(trained["model"], name, input_example=trained["X"].head(3))
        finally:
            stack_or_none.start_s3()
    else:
        from tests.support.devstack import free_port

        yard = make_yard(vault="s3://bucket/vault", s3_endpoint_url=(
            f"http://127.0.0.1:{free_port()}"))
        with pytest.raises(RegistrationFailed) as info:
            yard.register(trained["model"], name, input_example=trained["X"].head(3))
        assert isinstance(info.value.__cause__, StorageError)
    with pytest.raises(ModelNotFound):
        make_yard().tracking.versions(name)
