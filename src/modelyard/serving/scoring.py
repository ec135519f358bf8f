"""One predict call over many requests' rows, and the answers split back per request.

``Scorer`` wraps a served model: with a compiled copy (``compiled.py``) the merged rows go
to ONNX Runtime as one array; otherwise it builds one pandas frame with the signature's dtypes
and calls the model's own flavor (pyfunc). Either way each request gets its own predictions
(and, for classifiers, the confidence of each prediction: the highest class probability).

>>> scorer = Scorer(served)
>>> scorer.runtime
'onnx'
>>> [(preds, conf)] = scorer.score([block])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelyard.serving.payload import Block
from modelyard.serving.source import Column, ServedModel

_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32",
           "boolean": "bool"}

Answer = tuple[list[Any], list[float] | None]


class Scorer:
    """Predictions (and confidences) for blocks of rows, in one model call per group."""

    def __init__(self, served: ServedModel, *, confidence: bool = True) -> None:
        self.served = served
        self.model = served.model
        self.columns = served.columns
        self._confidence = confidence
        self._proba = confidence and _has_proba(self.model)
        self._argmax = self._proba and _predict_is_argmax(self.model)
        compiled = served.compiled
        self.onnx = compiled.model if compiled is not None else None
        self.runtime = "onnx" if self.onnx is not None else "pyfunc"
        self.reason = None if compiled is None else compiled.reason

    @property
    def fast(self) -> bool:
        """True when calls are short and predictable (a compiled copy)."""
        return self.onnx is not None

    def score(self, blocks: Sequence[Block]) -> list[Answer]:
        """Answers for every block, in order. Blocks with other columns are scored apart."""
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, block in enumerate(blocks):
            groups.setdefault(tuple(block.columns), []).append(index)
        answers: list[Answer | None] = [None] * len(blocks)
        for indexes in groups.values():
            part = [blocks[i] for i in indexes]
            for i, answer in zip(indexes, self._score_group(part), strict=True):
                answers[i] = answer
        return [a for a in answers if a is not None]

    def _score_group(self, blocks: list[Block]) -> list[Answer]:
        predictions: Any
        confidence: list[float] | None
        if self.onnx is not None and self.columns is not None:
            rows: Any
            if all(b.array is not None for b in blocks):
                # Parsed straight into floats: no Python list is walked on this path.
                rows = blocks[0].array if len(blocks) == 1 else _stack([b.array for b in blocks])
            else:
                rows = blocks[0].rows if len(blocks) == 1 else [r for b in blocks
                                                                 for r in b.rows]
            predictions, proba = self.onnx.run(rows)
            # float32 probabilities: a sum of them may pass 1 by an ulp
            confidence = (proba.max(axis=1).clip(0.0, 1.0).tolist()
                          if proba is not None and self._confidence else None)
        else:
            predictions, confidence = self.predict_frame(self.frame(blocks))
        out: list[Answer] = []
        start = 0
        for block in blocks:
            end = start + block.n
            out.append((_rows(predictions, start, end),
                        None if confidence is None else confidence[start:end]))
            start = end
        return out

    def native(self, rows: list[list[Any]]) -> tuple[Any, Any]:
        """The model's own (labels or values, probabilities or None) for rows in signature
        order: what a compiled copy is checked against."""
        assert self.columns is not None
        frame = _typed_frame(rows, self.columns)
        proba = self.model.predict_proba(frame) if _has_proba(self.model) else None
        return self.model.predict(frame), proba

    def frame(self, blocks: list[Block]) -> Any:
        import numpy as np
        import pandas as pd

        names = blocks[0].columns
        if len(blocks) == 1:
            rows = blocks[0].rows
        else:
            rows = [row for block in blocks for row in block.rows]
        if self.columns is not None and all(b.all_float for b in blocks):
            arrays = [b.array for b in blocks]
            matrix = (_stack(arrays) if all(a is not None for a in arrays)
                      else np.asarray(rows, dtype=np.float64))
            frame = pd.DataFrame(matrix, columns=names)
            narrow = [c.name for c in self.columns if c.type == "float"]
            return frame.astype(dict.fromkeys(narrow, "float32")) if narrow else frame
        if self.columns is None:
            return pd.DataFrame(rows, columns=names)
        return _typed_frame(rows, self.columns)

    def predict_frame(self, frame: Any) -> tuple[Any, list[float] | None]:
        if not self._proba:
            return self.model.predict(frame), None
        proba = self.model.predict_proba(frame)
        if getattr(proba, "ndim", 0) != 2:
            return self.model.predict(frame), None
        confidence = proba.max(axis=1).tolist()
        if self._argmax:
            # What the model's own predict does, without computing the trees twice.
            return self.model.classes_.take(proba.argmax(axis=1), axis=0), confidence
        return self.model.predict(frame), confidence


def _stack(arrays: list[Any]) -> Any:
    import numpy as np

    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _typed_frame(rows: list[list[Any]], columns: list[Column]) -> Any:
    import numpy as np
    import pandas as pd

    data: dict[str, Any] = {}
    for index, column in enumerate(columns):
        values = [row[index] for row in rows]
        dtype = _DTYPES.get(column.type)
        has_null = any(v is None for v in values)
        if dtype is None:
            if column.type == "datetime":
                data[column.name] = pd.to_datetime(values)
            else:
                data[column.name] = np.array(values, dtype=object)
        elif has_null and dtype != "bool":
            data[column.name] = np.array([np.nan if v is None else v for v in values],
                                         dtype="float64")
        elif has_null:
            data[column.name] = np.array(values, dtype=object)
        else:
            data[column.name] = np.array(values, dtype=dtype)
    return pd.DataFrame(data)


def _rows(predictions: Any, start: int, end: int) -> list[Any]:
    """JSON-ready predictions for rows [start, end): as MLflow's scoring server renders them."""
    if hasattr(predictions, "iloc"):
        part = predictions.iloc[start:end]
        if hasattr(part, "to_dict") and getattr(part, "ndim", 1) == 2:
            return list(part.to_dict(orient="records"))
        return list(part.tolist())
    if hasattr(predictions, "tolist"):
        return list(predictions[start:end].tolist())
    return list(predictions[start:end])


def _has_proba(model: Any) -> bool:
    return callable(getattr(model, "predict_proba", None)) and hasattr(model, "classes_")


def _predict_is_argmax(model: Any) -> bool:
    """True for scikit-learn trees and forests whose ``predict`` is argmax of probabilities."""
    try:
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
        from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier
    except ImportError:  # pragma: no cover - sklearn absent: not an sklearn model
        return False
    kind = type(model)
    for base in (RandomForestClassifier, ExtraTreesClassifier, DecisionTreeClassifier,
                 ExtraTreeClassifier):
        if isinstance(model, base) and kind.predict is base.predict:
            return getattr(model, "n_outputs_", 1) == 1
    return False


def limit_threads(threads: int | None) -> None:
    """Keep the calling thread's native pools (OpenMP, BLAS) to ``threads``: a pyfunc model
    keeps to its worker's share of the cores, so workers (and neighbours) on one host do not
    oversubscribe it. Run once in the thread that predicts (OpenMP counts are per thread)."""
    if threads is None:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(limits=max(1, int(threads)))
