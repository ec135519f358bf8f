"""Stage 3: score the trained pipeline on the held-out test set.

Writes ``metrics/evaluate.json`` (flat numbers, for ``dvc metrics show/diff``) and
``plots/confusion_matrix.csv`` (one ``actual,predicted`` row per test customer, the shape DVC's
``confusion`` plot template expects).

Business metrics come from the unit costs in ``params.yaml`` (``evaluate`` section); the model
flags customers as likely churners and each flagged customer gets a retention offer:

* ``value_captured = tp * value_true_positive + tn * value_true_negative``
* ``campaign_cost = (tp + fp) * cost_per_contact``  (every flagged customer is contacted)
* ``cost_of_errors = fp * cost_false_positive + fn * cost_false_negative``
* ``net_value = value_captured - campaign_cost - cost_of_errors``
* ``spend = campaign_cost + fp * cost_false_positive``  (money actually paid out)
* ``roi = (value_captured - spend) / spend``  (0 when nothing is spent)
* ``net_value_per_customer = net_value / (tn + fp + fn + tp)``
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

PARAMS_FILE = Path("params.yaml")
TEST_FILE = Path("data/prepared/test.csv")
MODEL_FILE = Path("models/model.joblib")
METRICS_FILE = Path("metrics/evaluate.json")
CONFUSION_FILE = Path("plots/confusion_matrix.csv")
TARGET = "churn"
ID_COLUMN = "customer_id"
LABELS = ("stay", "churn")

UNIT_COSTS: dict[str, float] = {
    "cost_per_contact": 0.0,
    "cost_false_positive": 0.0,
    "cost_false_negative": 0.0,
    "value_true_positive": 0.0,
    "value_true_negative": 0.0,
}


class StageError(Exception):
    """Invalid parameters or inputs: reported as one line, exit code 1."""


def business_metrics(
    tn: int, fp: int, fn: int, tp: int, costs: Mapping[str, float]
) -> dict[str, float]:
    """Money figures for a confusion matrix (see the module docstring for the formulas).

    Missing unit costs count as 0.
    """
    unit = {**UNIT_COSTS, **{key: float(value) for key, value in costs.items()}}
    value_captured = tp * unit["value_true_positive"] + tn * unit["value_true_negative"]
    campaign_cost = (tp + fp) * unit["cost_per_contact"]
    cost_of_errors = fp * unit["cost_false_positive"] + fn * unit["cost_false_negative"]
    net_value = value_captured - campaign_cost - cost_of_errors
    spend = campaign_cost + fp * unit["cost_false_positive"]
    roi = (value_captured - spend) / spend if spend > 0 else 0.0
    customers = tn + fp + fn + tp
    return {
        "value_captured": value_captured,
        "campaign_cost": campaign_cost,
        "cost_of_errors": cost_of_errors,
        "net_value": net_value,
        "net_value_per_customer": net_value / customers if customers else 0.0,
        "roi": roi,
    }


def load_params(path: Path = PARAMS_FILE) -> tuple[float, dict[str, float]]:
    """``(decision threshold, unit costs)`` from the ``evaluate`` section of params.yaml."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StageError(f"{path}: cannot read parameters: {exc}".replace("\n", " ")) from None
    section = document.get("evaluate") if isinstance(document, dict) else None
    section = section or {}
    if not isinstance(section, dict):
        raise StageError(f"{path}: 'evaluate' must be a mapping")
    unknown = sorted(set(section) - set(UNIT_COSTS) - {"threshold"})
    if unknown:
        raise StageError(f"{path}: unknown evaluate parameter(s): {', '.join(unknown)}")
    threshold = section.get("threshold", 0.5)
    if not _is_number(threshold) or not 0 < threshold < 1:
        raise StageError(f"{path}: evaluate.threshold must be a number between 0 and 1")
    costs: dict[str, float] = {}
    for key in UNIT_COSTS:
        value = section.get(key, 0.0)
        if not _is_number(value) or value < 0:
            raise StageError(f"{path}: evaluate.{key} must be a number >= 0, got {value!r}")
        costs[key] = float(value)
    return float(threshold), costs


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_inputs() -> tuple[Any, pd.DataFrame, np.ndarray]:
    for path, stage in ((MODEL_FILE, "train"), (TEST_FILE, "prepare")):
        if not path.is_file():
            raise StageError(f"{path} not found: run the {stage} stage first (dvc repro {stage})")
    model = joblib.load(MODEL_FILE)
    frame = pd.read_csv(TEST_FILE, dtype={ID_COLUMN: str})
    if TARGET not in frame.columns:
        raise StageError(f"{TEST_FILE}: no '{TARGET}' column")
    features = frame.drop(columns=[c for c in (TARGET, ID_COLUMN) if c in frame.columns])
    for column in features.columns:
        if not pd.api.types.is_numeric_dtype(features[column]):
            features[column] = features[column].astype(object)
    return model, features, frame[TARGET].to_numpy(dtype=int)


def evaluate(
    model: Any,
    features: pd.DataFrame,
    actual: np.ndarray,
    threshold: float,
    costs: Mapping[str, float],
) -> tuple[dict[str, float], np.ndarray]:
    """``(flat metrics, predicted labels)`` for the test set."""
    probability = model.predict_proba(features)[:, 1]
    predicted = (probability >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(actual, predicted, labels=[0, 1]).ravel())
    both_classes = len(np.unique(actual)) == 2
    metrics: dict[str, float] = {
        "accuracy": accuracy_score(actual, predicted),
        "precision": precision_score(actual, predicted, zero_division=0),
        "recall": recall_score(actual, predicted, zero_division=0),
        "f1": f1_score(actual, predicted, zero_division=0),
        "roc_auc": roc_auc_score(actual, probability) if both_classes else 0.5,
        "threshold": threshold,
        "test_rows": len(actual),
        "true_negatives": tn,
        "false_positives": fp,
        "false_negatives": fn,
        "true_positives": tp,
        **business_metrics(tn, fp, fn, tp, costs),
    }
    rounded = {
        key: value if isinstance(value, int) else round(float(value), 6)
        for key, value in metrics.items()
    }
    return rounded, predicted


def write_outputs(metrics: Mapping[str, float], actual: np.ndarray, predicted: np.ndarray) -> None:
    METRICS_FILE.parent.mkdir(parents=True, exist_ok=True)
    METRICS_FILE.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    CONFUSION_FILE.parent.mkdir(parents=True, exist_ok=True)
    with CONFUSION_FILE.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows((LABELS[a], LABELS[p]) for a, p in zip(actual, predicted, strict=True))


def main() -> int:
    try:
        threshold, costs = load_params()
        model, features, actual = load_inputs()
        metrics, predicted = evaluate(model, features, actual, threshold, costs)
        write_outputs(metrics, actual, predicted)
    except StageError as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"evaluate: accuracy {metrics['accuracy']:.3f}, roc_auc {metrics['roc_auc']:.3f}, "
        f"net value {metrics['net_value']:,.2f} (roi {metrics['roi']:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
