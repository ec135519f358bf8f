"""Training-data profiles and drift: quantile bins for numbers, frequencies for categories.

A profile is a small JSON-ready dict recorded beside a version (``profiles/NAME/VERSION.json``
in the vault). ``psi`` compares any later frame with it, column by column, using the
Population Stability Index: sum over bins of (actual - expected) * ln(actual / expected).
Rules of thumb: below 0.1 stable, 0.1-0.2 moderate shift, above 0.2 (``DRIFT_THRESHOLD``) a
shift worth a look.

>>> profile = build_profile(train_frame)
>>> psi(profile, recent_frame)
{'tenure': 0.013, 'charges': 0.412}
>>> drifted(psi(profile, recent_frame))
['charges']

numpy and pandas are imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FORMAT = 1
DRIFT_THRESHOLD = 0.2
_EPSILON = 1e-4  # stands in for an empty bin, so ln() stays finite
MISSING = "__missing__"
OTHER = "__other__"


def build_profile(frame: Any, *, bins: int = 10, max_categories: int = 50) -> dict[str, Any]:
    """A profile of every column: numeric columns by quantile bins, others by frequency.

    >>> build_profile(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), bins=2)["columns"]["x"]
    {'kind': 'numeric', 'edges': [2.5], 'expected': [0.5, 0.5], 'missing': 0.0, ...}
    """
    import pandas as pd

    frame = pd.DataFrame(frame)
    rows = len(frame)
    if rows == 0:
        from modelyard.errors import InvalidInput

        raise InvalidInput("cannot profile an empty frame")
    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        if _is_numeric(series):
            columns[str(name)] = _numeric_profile(series, bins)
        else:
            columns[str(name)] = _categorical_profile(series, max_categories)
    return {"format": FORMAT, "rows": rows, "columns": columns}


def psi(profile: dict[str, Any], frame: Any) -> dict[str, float]:
    """PSI of each profiled column present in ``frame`` (columns absent from it are skipped)."""
    import pandas as pd

    frame = pd.DataFrame(frame)
    if len(frame) == 0:
        return {}
    scores: dict[str, float] = {}
    for name, spec in profile.get("columns", {}).items():
        if name not in frame.columns:
            continue
        series = frame[name]
        if spec.get("kind") == "numeric":
            actual = _numeric_fractions(series, spec["edges"])
            expected = [*spec["expected"], spec.get("missing", 0.0)]
        else:
            categories = list(spec["expected"])
            actual = _categorical_fractions(series, categories)
            expected = [*(spec["expected"][c] for c in categories), spec.get("other", 0.0),
                        spec.get("missing", 0.0)]
        scores[name] = round(_psi(expected, actual), 6)
    return scores


def drifted(scores: dict[str, float], threshold: float = DRIFT_THRESHOLD) -> list[str]:
    """Columns whose PSI is above the threshold, worst first."""
    return [c for c, s in sorted(scores.items(), key=lambda kv: -kv[1]) if s > threshold]


# -- pieces -------------------------------------------------------------------------------
def _is_numeric(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def _numbers(series: Any) -> Any:
    import pandas as pd

    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=math.nan)


def _numeric_profile(series: Any, bins: int) -> dict[str, Any]:
    import numpy as np

    values = _numbers(series)
    present = values[~np.isnan(values)]
    if present.size == 0:
        edges: list[float] = []
    else:
        quantiles = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])
        edges = [float(e) for e in np.unique(quantiles)]
    fractions = _numeric_fractions(series, edges)
    return {
        "kind": "numeric", "edges": edges, "expected": fractions[:-1], "missing": fractions[-1],
        "min": float(present.min()) if present.size else None,
        "max": float(present.max()) if present.size else None,
        "mean": float(present.mean()) if present.size else None,
    }


def _numeric_fractions(series: Any, edges: list[float]) -> list[float]:
    """Share of rows in each bin (len(edges) + 1 of them), then the share missing."""
    import numpy as np

    values = _numbers(series)
    total = len(values)
    missing = np.isnan(values)
    index = np.searchsorted(np.asarray(edges, dtype="float64"), values[~missing], side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return [float(c) / total for c in counts] + [float(missing.sum()) / total]


def _categorical_profile(series: Any, max_categories: int) -> dict[str, Any]:
    total = len(series)
    present = series[series.notna()].astype(str)
    counts = present.value_counts()
    top = counts.head(max_categories)
    return {
        "kind": "categorical",
        "expected": {str(k): float(v) / total for k, v in top.items()},
        "other": float(counts.iloc[len(top):].sum()) / total if len(counts) > len(top) else 0.0,
        "missing": float(total - len(present)) / total,
    }


def _categorical_fractions(series: Any, categories: list[str]) -> list[float]:
    """Share of rows per known category, then other values, then missing."""
    total = len(series)
    present = series[series.notna()].astype(str)
    counts = present.value_counts()
    known = [float(counts.get(c, 0)) / total for c in categories]
    other = float(len(present)) / total - sum(known)
    return [*known, max(0.0, other), float(total - len(present)) / total]


def _psi(expected: list[float], actual: list[float]) -> float:
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        if e <= 0 and a <= 0:
            continue
        e, a = max(e, _EPSILON), max(a, _EPSILON)
        total += (a - e) * math.log(a / e)
    return total


_PROFILED_SUFFIXES = (".csv", ".parquet")
_MAX_PROFILED_BYTES = 50 * 1024 * 1024


def training_frame(data: Sequence[Any], root: Path) -> Any:
    """The first table among a version's lineage data references (``.path``: CSV or Parquet,
    at most 50 MB), read from ``root``; None when there is none."""
    for ref in data:
        path = Path(ref.path)
        path = path if path.is_absolute() else root / path
        if path.suffix.lower() not in _PROFILED_SUFFIXES or not path.is_file():
            continue
        if path.stat().st_size > _MAX_PROFILED_BYTES:
            continue
        import pandas as pd

        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    return None


def profile_of(frame: Any) -> dict[str, Any]:
    """``profile.build_profile`` plus the share of duplicated rows (data-quality checks)."""
    import pandas as pd

    frame = pd.DataFrame(frame)
    profile = build_profile(frame)
    profile["duplicates"] = float(frame.duplicated().mean()) if len(frame) else 0.0
    return profile
