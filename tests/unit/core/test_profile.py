"""Training-data profiles and PSI drift: pure logic, no services."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modelyard.core.profile import DRIFT_THRESHOLD, build_profile, drifted, psi


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({
        "income": rng.normal(50_000, 8_000, 4000),
        "age": rng.integers(18, 80, 4000),
        "plan": rng.choice(["basic", "plus", "pro"], 4000, p=[0.6, 0.3, 0.1]),
    })
    later = pd.DataFrame({
        "income": rng.normal(50_000, 8_000, 1000),
        "age": rng.integers(18, 80, 1000),
        "plan": rng.choice(["basic", "plus", "pro"], 1000, p=[0.6, 0.3, 0.1]),
    })
    return train, later


def test_same_distribution_is_not_drift(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, later = frames
    profile = build_profile(train)
    scores = psi(profile, later)
    assert set(scores) == {"income", "age", "plan"}
    assert all(score < 0.05 for score in scores.values()), scores
    assert drifted(scores) == []
    assert psi(profile, train)["income"] < 1e-9  # the training data against itself


def test_shifted_numbers_and_new_categories_are_flagged(
        frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, later = frames
    profile = build_profile(train)
    shifted = later.assign(income=later["income"] + 12_000,
                           plan=np.where(np.arange(len(later)) % 2 == 0, "enterprise", "basic"))
    scores = psi(profile, shifted)
    assert scores["income"] > DRIFT_THRESHOLD
    assert scores["plan"] > DRIFT_THRESHOLD
    assert scores["age"] < 0.05
    assert drifted(scores) == sorted(["income", "plan"], key=lambda c: -scores[c])


def test_profile_shape_is_json_and_counts_missing() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, None], "c": ["a", "a", "b", None, "a"]})
    profile = json.loads(json.dumps(build_profile(frame, bins=2)))
    x = profile["columns"]["x"]
    assert x["kind"] == "numeric" and x["edges"] == [2.5]
    assert x["expected"] == [0.4, 0.4] and x["missing"] == pytest.approx(0.2)
    c = profile["columns"]["c"]
    assert c["kind"] == "categorical"
    assert c["expected"] == {"a": 0.6, "b": 0.2} and c["missing"] == pytest.approx(0.2)
    # More missing values later is drift too.
    assert psi(profile, pd.DataFrame({"x": [None] * 8 + [1.0, 4.0]}))["x"] > DRIFT_THRESHOLD


def test_constant_and_absent_columns() -> None:
    profile = build_profile(pd.DataFrame({"k": [7.0] * 50, "z": range(50)}))
    assert profile["columns"]["k"]["edges"] == [7.0]
    scores = psi(profile, pd.DataFrame({"k": [7.0] * 20}))
    assert scores == {"k": 0.0}  # z absent: skipped, not an error
    assert psi(profile, pd.DataFrame({"k": [8.0] * 20}))["k"] == 0.0  # same bin (>= 7)
    assert psi(profile, pd.DataFrame({"k": [6.0] * 20}))["k"] > DRIFT_THRESHOLD
