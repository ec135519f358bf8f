"""Pickles of unknown origin (registry/pickles.py): scikit-learn's pass the allowlist, anything
naming another global is refused before it runs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.registry.pickles import check_pickles


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, ...]]:
        return (os.system, (f"touch {self.marker}",))


def test_sklearn_pickles_pass_and_a_malicious_one_is_named_and_never_runs(
        tmp_path: Path) -> None:
    import cloudpickle
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.random.default_rng(0).normal(size=(40, 3))
    target = features[:, 0] > 0
    folder = tmp_path / "model"
    folder.mkdir()
    for index, model in enumerate((RandomForestClassifier(n_estimators=3).fit(features, target),
                                   make_pipeline(StandardScaler()).fit(features))):
        (folder / f"model{index}.pkl").write_bytes(cloudpickle.dumps(model))
        (folder / f"raw{index}").write_bytes(pickle.dumps(model, protocol=5))
    check_pickles(folder, "churn")
    marker = tmp_path / "ran"
    (folder / "sub").mkdir()
    (folder / "sub" / "weights").write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(InvalidInput) as refused:
        check_pickles(folder, "churn")
    assert "sub/weights (imports posix.system" in refused.value.message or \
        "sub/weights (imports nt.system" in refused.value.message
    assert "model0.pkl" not in refused.value.message
    assert not marker.exists()
    # A pickle the check cannot read through is refused too: unknown is not safe.
    (folder / "sub" / "weights").write_bytes((folder / "raw0").read_bytes()[:-40])
    with pytest.raises(InvalidInput, match=r"sub/weights \(not a pickle the allowlist check"):
        check_pickles(folder, "churn")
