"""HistGradientBoosting compiles (skl2onnx 1.20 + onnx 1.23 refused it) and a scaler in front
of trees keeps parity: every label equal and probabilities within the tolerance, rows with
missing values included."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.serving.compiled import TOLERANCE, OnnxModel, convert
from modelyard.serving.source import Column

WIDTH = 12


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    features, labels = make_classification(n_samples=600, n_features=WIDTH, n_informative=6,
                                           random_state=3)
    features[::11, 2] = np.nan  # HistGradientBoosting learns where missing values go
    return features, labels


def _compiled(model: object) -> OnnxModel:
    columns = [Column(f"c{i}", "double") for i in range(WIDTH)]
    onnx, layout, converter = convert(model, columns)
    assert (layout, converter) == ("matrix", "skl2onnx")
    return OnnxModel(onnx, columns, layout)


@pytest.mark.parametrize("scaled", [False, True], ids=["alone", "scaler-pipeline"])
def test_hist_gradient_boosting_classifier_compiles_with_parity(
        data: tuple[np.ndarray, np.ndarray], scaled: bool) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = data
    trees = HistGradientBoostingClassifier(max_iter=40, random_state=0)
    model = make_pipeline(StandardScaler(), trees) if scaled else trees
    model.fit(features, labels)
    got_labels, got_proba = _compiled(model).run(features.tolist())
    assert (got_labels == model.predict(features)).all()
    assert np.abs(got_proba - model.predict_proba(features)).max() <= TOLERANCE


def test_hist_gradient_boosting_regressor_pipeline_compiles_with_parity(
        data: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = data
    target = features[:, 0] * 3.0 + labels
    model = make_pipeline(StandardScaler(), HistGradientBoostingRegressor(max_iter=40))
    model.fit(np.nan_to_num(features), target)
    compiled = _compiled(model)
    assert compiled.dtype == "float64"  # the scaler runs in float64, as in scikit-learn
    values, proba = compiled.run(np.nan_to_num(features).tolist())
    want = model.predict(np.nan_to_num(features))
    assert proba is None
    assert np.max(np.abs(values - want) / np.maximum(1.0, np.abs(want))) <= TOLERANCE
