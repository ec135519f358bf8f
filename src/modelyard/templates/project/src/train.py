"""Stage 2: cross-validate, fit and register the churn model.

The model is one scikit-learn Pipeline (feature engineering, scaling, estimator) built only from
scikit-learn's own transformers, so it unpickles anywhere scikit-learn is installed.

Writes ``models/model.joblib`` (read by the evaluate stage), ``metrics/train.json``
(cross-validation metrics) and ``model.json`` (the version modelyard registered), then prints
one line such as ``registered churn v1.0.0 (initial: first version)``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    OneHotEncoder,
    PolynomialFeatures,
    StandardScaler,
)

PARAMS_FILE = Path("params.yaml")
TRAIN_FILE = Path("data/prepared/train.csv")
TEST_FILE = Path("data/prepared/test.csv")
MODEL_FILE = Path("models/model.joblib")
METRICS_FILE = Path("metrics/train.json")
MODEL_INFO_FILE = Path("model.json")
TARGET = "churn"
ID_COLUMN = "customer_id"
MODEL_TYPES = ("random_forest", "gradient_boosting", "logistic_regression")
SCORERS = ("accuracy", "precision", "recall", "f1", "roc_auc")

# Derived features, each used when its source columns survived prepare.drop_columns.
LOG_COLUMNS = ("monthly_charges", "total_charges")
TENURE_COLUMN = "tenure_months"
INTERACTION_COLUMNS = ("tenure_months", "monthly_charges", "support_calls")


class StageError(Exception):
    """Invalid parameters or inputs, or a refused registration: reported as one line."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class TrainParams:
    model_type: str = "random_forest"
    n_estimators: int = 200
    max_depth: int | None = 8
    learning_rate: float = 0.1
    seed: int = 42
    cv_folds: int = 5


def load_params(path: Path = PARAMS_FILE) -> tuple[str, TrainParams]:
    """``(model_name, train params)`` from params.yaml."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StageError(f"{path}: cannot read parameters: {exc}".replace("\n", " ")) from None
    if not isinstance(document, dict):
        raise StageError(f"{path}: expected a mapping at the top level")
    name = document.get("model_name")
    if not isinstance(name, str) or not name.strip():
        raise StageError(f"{path}: model_name must be a non-empty string")
    section = document.get("train") or {}
    if not isinstance(section, dict):
        raise StageError(f"{path}: 'train' must be a mapping")
    known = set(TrainParams.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise StageError(f"{path}: unknown train parameter(s): {', '.join(unknown)}")
    try:
        params = TrainParams(**section)
    except TypeError as exc:
        raise StageError(f"{path}: {exc}") from None
    _check(params, path)
    return name.strip(), params


def _check(params: TrainParams, path: Path) -> None:
    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if params.model_type not in MODEL_TYPES:
        raise StageError(
            f"{path}: train.model_type must be one of {', '.join(MODEL_TYPES)}, "
            f"got {params.model_type!r}"
        )
    if not is_int(params.n_estimators) or params.n_estimators < 1:
        raise StageError(f"{path}: train.n_estimators must be a positive integer")
    if params.max_depth is not None and (not is_int(params.max_depth) or params.max_depth < 1):
        raise StageError(f"{path}: train.max_depth must be a positive integer or null")
    if not isinstance(params.learning_rate, (int, float)) or params.learning_rate <= 0:
        raise StageError(f"{path}: train.learning_rate must be a positive number")
    if not is_int(params.seed) or params.seed < 0:
        raise StageError(f"{path}: train.seed must be a non-negative integer")
    if not is_int(params.cv_folds) or params.cv_folds < 2:
        raise StageError(f"{path}: train.cv_folds must be an integer >= 2")


def load_split(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Features (the model's input columns) and target from a prepared CSV."""
    if not path.is_file():
        raise StageError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    frame = pd.read_csv(path, dtype={ID_COLUMN: str})
    if TARGET not in frame.columns:
        raise StageError(f"{path}: no '{TARGET}' column")
    features = frame.drop(columns=[c for c in (TARGET, ID_COLUMN) if c in frame.columns])
    # Plain object columns keep the model's input schema independent of pandas' string backend.
    for column in features.columns:
        if not pd.api.types.is_numeric_dtype(features[column]):
            features[column] = features[column].astype(object)
    return features, frame[TARGET].astype(int)


def build_features(features: pd.DataFrame) -> ColumnTransformer:
    """One-hot categoricals, scaled numerics plus derived features (log charges, tenure bands,
    pairwise interactions of tenure, charges and support calls)."""
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical = [c for c in features.columns if c not in numeric]
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(("numeric", StandardScaler(), numeric))
    logs = [c for c in LOG_COLUMNS if c in numeric]
    if logs:
        log1p = FunctionTransformer(np.log1p, feature_names_out="one-to-one")
        parts.append(("log", make_pipeline(log1p, StandardScaler()), logs))
    if TENURE_COLUMN in numeric:
        bands = KBinsDiscretizer(n_bins=4, encode="onehot-dense", strategy="uniform")
        parts.append(("tenure_band", bands, [TENURE_COLUMN]))
    pairs = [c for c in INTERACTION_COLUMNS if c in numeric]
    if len(pairs) >= 2:
        products = PolynomialFeatures(degree=2, interaction_only=True, include_bias=False)
        parts.append(("interactions", make_pipeline(StandardScaler(), products), pairs))
    if categorical:
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        parts.append(("categorical", onehot, categorical))
    if not parts:
        raise StageError("no feature columns left after prepare.drop_columns")
    return ColumnTransformer(parts, remainder="drop")


def build_estimator(params: TrainParams) -> Any:
    if params.model_type == "gradient_boosting":
        return HistGradientBoostingClassifier(
            max_iter=params.n_estimators,
            max_depth=params.max_depth,
            learning_rate=params.learning_rate,
            early_stopping=False,
            random_state=params.seed,
        )
    if params.model_type == "logistic_regression":
        return LogisticRegression(max_iter=2000, random_state=params.seed)
    return RandomForestClassifier(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        random_state=params.seed,
        n_jobs=-1,
    )


def build_pipeline(features: pd.DataFrame, params: TrainParams) -> Pipeline:
    return Pipeline([("features", build_features(features)), ("model", build_estimator(params))])


def cross_validation(
    pipeline: Pipeline, features: pd.DataFrame, target: pd.Series, params: TrainParams
) -> dict[str, float]:
    """Mean and standard deviation of each score over stratified folds."""
    smallest_class = int(target.value_counts().min()) if target.nunique() == 2 else 0
    if smallest_class < params.cv_folds:
        raise StageError(
            f"{TRAIN_FILE}: {params.cv_folds}-fold cross-validation needs at least "
            f"{params.cv_folds} rows of each class, the smallest class has {smallest_class}"
        )
    folds = StratifiedKFold(n_splits=params.cv_folds, shuffle=True, random_state=params.seed)
    scores = cross_validate(pipeline, features, target, cv=folds, scoring=list(SCORERS))
    result: dict[str, float] = {}
    for scorer in SCORERS:
        values = np.asarray(scores[f"test_{scorer}"], dtype=float)
        result[f"cv_{scorer}_mean"] = round(float(values.mean()), 6)
        result[f"cv_{scorer}_std"] = round(float(values.std()), 6)
    return result


def holdout_metrics(
    pipeline: Pipeline, features: pd.DataFrame, target: pd.Series
) -> dict[str, float]:
    predicted = pipeline.predict(features)
    probability = pipeline.predict_proba(features)[:, 1]
    metrics = {
        "accuracy": accuracy_score(target, predicted),
        "precision": precision_score(target, predicted, zero_division=0),
        "recall": recall_score(target, predicted, zero_division=0),
        "f1": f1_score(target, predicted, zero_division=0),
        "roc_auc": roc_auc_score(target, probability) if target.nunique() == 2 else 0.5,
    }
    return {key: round(float(value), 6) for key, value in metrics.items()}


def register(
    pipeline: Pipeline,
    name: str,
    *,
    metrics: Mapping[str, float],
    params: TrainParams,
    input_example: pd.DataFrame,
    description: str,
) -> Any:
    """Register the fitted pipeline with modelyard; returns the new model version."""
    try:
        from modelyard import Yard
        from modelyard.errors import YardError
    except ImportError as exc:
        raise StageError(f"cannot import modelyard ({exc}): pip install 'modelyard[dvc]'") from None
    try:
        return Yard().register(
            pipeline,
            name,
            metrics=dict(metrics),
            params=asdict(params),
            input_example=input_example,
            data=[str(TRAIN_FILE)],
            description=description,
            seed=params.seed,
            tags={"pipeline": name, "model_type": params.model_type},
        )
    except YardError as exc:
        raise StageError(str(exc), exit_code=exc.exit_code) from None


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def run() -> str:
    """The whole stage; returns the line to print."""
    name, params = load_params()
    x_train, y_train = load_split(TRAIN_FILE)
    x_test, y_test = load_split(TEST_FILE)
    if y_train.nunique() != 2:
        raise StageError(f"{TRAIN_FILE}: the '{TARGET}' column needs both classes (0 and 1)")
    pipeline = build_pipeline(x_train, params)
    cv = cross_validation(pipeline, x_train, y_train, params)
    write_json(METRICS_FILE, {**cv, "cv_folds": params.cv_folds, "train_rows": len(x_train)})

    pipeline.fit(x_train, y_train)
    MODEL_FILE.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, MODEL_FILE)

    metrics = {**holdout_metrics(pipeline, x_test, y_test), **cv}
    description = (
        f"{params.model_type} trained on {len(x_train)} rows of {TRAIN_FILE}; "
        f"{params.cv_folds}-fold cv accuracy {cv['cv_accuracy_mean']:.3f} "
        f"+/- {cv['cv_accuracy_std']:.3f}, holdout accuracy {metrics['accuracy']:.3f}"
    )
    version = register(
        pipeline,
        name,
        metrics=metrics,
        params=params,
        input_example=x_train.head(5),
        description=description,
    )
    info = {
        "name": version.name,
        "version": version.version,
        "semver": version.semver,
        "bump": version.bump,
        "bump_reason": version.bump_reason,
        "stage": getattr(version, "stage", None),
        "run_id": getattr(version, "run_id", None),
    }
    write_json(MODEL_INFO_FILE, info)
    return f"registered {version.name} v{version.semver} ({version.bump}: {version.bump_reason})"


def main() -> int:
    try:
        line = run()
    except StageError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
