"""XGBoost and LightGBM end to end beyond serving: each version (registered through its own
MLflow flavor) is backed up and restored, exported and imported into another registry, and
drilled on a copy; every copy loads verified, as its own flavor, with the same predictions,
and serves compiled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.integration.test_exchange import _other_yard

COLUMNS = ["tenure", "charges", "calls", "age", "score"]


@pytest.fixture(scope="module")
def boosted() -> dict[str, tuple[Any, pd.DataFrame, np.ndarray]]:
    """One small fitted XGBoost and LightGBM classifier, with their frame and labels."""
    import lightgbm
    import xgboost
    from sklearn.datasets import make_classification

    features, target = make_classification(n_samples=200, n_features=5, random_state=2)
    frame = pd.DataFrame(features, columns=COLUMNS)
    return {
        "xgboost": (xgboost.XGBClassifier(n_estimators=6, max_depth=3).fit(frame, target),
                    frame, target),
        "lightgbm": (lightgbm.LGBMClassifier(n_estimators=6, verbose=-1).fit(frame, target),
                     frame, target),
    }


def _same(loaded: Any, model: Any, frame: pd.DataFrame) -> None:
    assert loaded.verified
    assert type(loaded.model) is type(model)  # its own flavor, not a pickle through sklearn
    assert loaded.model.predict(frame).tolist() == model.predict(frame).tolist()
    assert np.array_equal(loaded.model.predict_proba(frame), model.predict_proba(frame))


def test_boosting_versions_back_up_restore_export_and_import(
        make_yard: Callable[..., Any], name: str, tmp_path: Path,
        boosted: dict[str, tuple[Any, pd.DataFrame, np.ndarray]]) -> None:
    yard = make_yard(backup=str(tmp_path / "backup"))
    other = _other_yard(make_yard, tmp_path / "other")
    for family, (model, frame, labels) in boosted.items():
        model_name = f"{name}-{family}"
        mv = yard.register(model, model_name, input_example=frame.head(3),
                           training_data=frame.assign(label=labels))
        assert mv.tags["modelyard.flavor"] == family
        yard.promote(model_name, mv.version, to="production", force=True, reason="test")
        assert yard.protection.backup([(model_name, mv.version)])

        # Restore: the version is gone from the registry, and comes back from the backup.
        yard.tracking.delete_version(model_name, mv.version)
        report = yard.protection.restore(model_name, "v1.0.0")
        assert report.ok
        restored = report.restored[0].version
        _same(yard.load(model_name, restored), model, frame)
        assert yard.verify(model_name, "v1.0.0")["ok"]

        # Export from this backend, import into an embedded registry of its own.
        summary = other.import_registry(yard.export([model_name]))
        assert [c["semver"] for c in summary["created"]] == ["1.0.0"], summary
        assert summary["failed"] == []
        _same(other.load(model_name, "v1.0.0"), model, frame)
        assert other.get(model_name, "v1.0.0").tags["modelyard.flavor"] == family
        # The imported copy serves compiled, with parity, like the original.
        with other.predictor(model_name, "v1.0.0", poll_interval=0) as predictor:
            assert predictor.runtime == "onnx", predictor._current.served.compiled.reason
            assert predictor.predict(frame).predictions == model.predict(frame).tolist()


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # the sandbox is embedded
def test_boosting_drills_on_a_copy(
        make_yard: Callable[..., Any], name: str,
        boosted: dict[str, tuple[Any, pd.DataFrame, np.ndarray]]) -> None:
    yard = make_yard()
    try:
        for family, (model, frame, labels) in boosted.items():
            model_name = f"{name}-{family}"
            mv = yard.register(model, model_name, input_example=frame.head(3),
                               training_data=frame.assign(label=labels))
            yard.promote(model_name, mv.version, to="production", force=True, reason="test")
            before = yard.export([model_name])["models"][0]["versions"]
            # The sandbox imports a copy of the model (export -> import), breaks the copy's
            # artifacts, detects it, restores from the sandbox's vault and checks the copy's
            # predictions against those from before the incident.
            report = yard.incidents.drill("artifact-loss", model=model_name)
            assert report.sandbox and report.model == model_name, report.to_dict()
            assert report.detected and report.recovered and report.verified, report.to_dict()
            assert report.via == "vault"
            assert "predictions on the held-out sample equal the pre-incident ones" in \
                report.verification
            # The real registry is untouched.
            assert yard.export([model_name])["models"][0]["versions"] == before
            _same(yard.load(model_name, "production"), model, frame)
    finally:
        yard.incidents.close()
