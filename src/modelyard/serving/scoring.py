"""One predict call over many requests' rows, and the answers split back per request.

``Scorer`` wraps a served model: it builds one pandas frame with the signature's dtypes from
the merged rows, calls the model once, and returns each request its own predictions (and, for
classifiers, the confidence of each prediction: the highest class probability).

>>> scorer = Scorer(served)
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
        self._proba = confidence and _has_proba(self.model)
        self._argmax = self._proba and _predict_is_argmax(self.model)
        self._forest = _ForestProba.for_model(self.model, self.columns) if self._argmax else None

    @property
    def fast(self) -> bool:
        """True when calls are short and predictable (a forest on the fast path)."""
        return self._forest is not None

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
        fast = self._fast(blocks) if self._forest is not None else None
        predictions: Any
        confidence: list[float] | None
        if fast is not None:
            predictions, confidence = fast
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

    def _fast(self, blocks: list[Block]) -> tuple[Any, list[float]] | None:
        """Forest classifiers on numeric rows: the model's own arithmetic, minus its overhead."""
        import numpy as np

        if self._forest is None or not all(b.all_float for b in blocks):
            return None
        rows = blocks[0].rows if len(blocks) == 1 else [r for b in blocks for r in b.rows]
        matrix = np.asarray(rows, dtype=np.float32)
        if not np.isfinite(matrix).all():
            return None  # missing values: let the model's own checks decide
        proba = self._forest(matrix)
        return self.model.classes_.take(proba.argmax(axis=1), axis=0), proba.max(axis=1).tolist()

    def frame(self, blocks: list[Block]) -> Any:
        import numpy as np
        import pandas as pd

        names = blocks[0].columns
        if len(blocks) == 1:
            rows = blocks[0].rows
        else:
            rows = [row for block in blocks for row in block.rows]
        if self.columns is not None and all(b.all_float for b in blocks):
            frame = pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=names)
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


class _ForestProba:
    """``predict_proba`` of an unmodified scikit-learn forest classifier, computed as the
    forest computes it (each tree's probabilities summed in tree order, then divided by the
    number of trees) but without the per-call input validation and joblib dispatch, which cost
    ten times the trees themselves on small batches. Used only on finite float32 rows whose
    columns are exactly the ones the forest was fitted on.

    Two ways to find the leaves, both giving the leaves the trees' own ``apply`` gives:

    - small batches walk all trees at once, level by level, over the trees' node arrays laid
      end to end (``_Levels``): depth-many vectorised numpy steps instead of tree-many calls,
      which is what a one-row call costs;
    - large batches call each tree's compiled ``tree_.apply``, whose cost grows more slowly
      with the rows.

    Each leaf's row of ``tree_.value`` (class fractions since scikit-learn 1.4) is the tree's
    probability row; the rows are added in tree order, as the forest adds them."""

    # Above this many rows per call, tree-by-tree compiled ``apply`` beats the level walk
    # (measured on 100 trees of depth <= 11: equal near 100 rows).
    LEVEL_ROWS = 64

    def __init__(self, trees: list[Any], n_classes: int) -> None:
        self.trees = trees
        self.n_classes = n_classes
        self._lookups: list[tuple[Any, Any]] | None = None
        self._levels: _Levels | None = None
        if _values_are_fractions():
            import numpy as np

            self._lookups = [
                (tree.tree_.apply, np.ascontiguousarray(tree.tree_.value[:, 0, :n_classes]))
                for tree in trees
            ]
            self._levels = _Levels(trees, n_classes)

    @classmethod
    def for_model(cls, model: Any, columns: list[Column] | None) -> _ForestProba | None:
        try:
            # scikit-learn exports the forests, not their common base class; the base is what
            # says "a forest whose predict_proba averages its trees" (issue #25 replaces this
            # path with ONNX Runtime).
            from sklearn.ensemble._forest import ForestClassifier
            from sklearn.tree import DecisionTreeClassifier
        except ImportError:  # pragma: no cover
            return None
        if columns is None or not isinstance(model, ForestClassifier):
            return None
        kind = type(model)
        if (kind.predict_proba is not ForestClassifier.predict_proba
                or kind.predict is not ForestClassifier.predict
                or getattr(model, "n_outputs_", 0) != 1
                or any(c.type not in ("double", "float") for c in columns)
                or getattr(model, "n_features_in_", -1) != len(columns)):
            return None
        names = getattr(model, "feature_names_in_", None)
        if names is not None and [str(n) for n in names] != [c.name for c in columns]:
            return None
        trees = list(getattr(model, "estimators_", []))
        if not trees or any(
            not isinstance(t, DecisionTreeClassifier)
            or type(t).predict_proba is not DecisionTreeClassifier.predict_proba
            for t in trees
        ):
            return None
        return cls(trees, int(model.n_classes_))

    def __call__(self, matrix: Any, *, levels: bool | None = None) -> Any:
        """Probabilities for float32 ``matrix``; ``levels`` forces one leaf finder (tests)."""
        import numpy as np

        if self._levels is not None and (
                levels if levels is not None else matrix.shape[0] <= self.LEVEL_ROWS):
            return self._levels(matrix)
        out = np.zeros((matrix.shape[0], self.n_classes), dtype=np.float64)
        if self._lookups is not None:
            for apply, table in self._lookups:  # the same rows, added in the same order
                out += table.take(apply(matrix), axis=0)
        else:
            for tree in self.trees:
                out += tree.predict_proba(matrix, check_input=False)
        out /= len(self.trees)
        return out


class _Levels:
    """All trees of a forest walked together, one level per step, with numpy.

    The trees' nodes are laid end to end in one record array (feature, threshold, left,
    right), with each leaf pointing to itself so that extra steps leave it where it is. Trees
    are stored deepest first, so the step at depth ``d`` only touches the prefix of trees
    deeper than ``d``. A step is what ``tree_.apply`` does at each node: go left when the row's
    value (float32, widened exactly to float64) is ``<=`` the node's threshold (float64)."""

    def __init__(self, trees: list[Any], n_classes: int) -> None:
        import numpy as np

        record = np.dtype([("feature", np.intp), ("threshold", np.float64),
                           ("left", np.intp), ("right", np.intp)])
        order = sorted(range(len(trees)), key=lambda i: -int(trees[i].tree_.max_depth))
        parts, values, roots, depths = [], [], [], []
        offset = 0
        for i in order:
            tree = trees[i].tree_
            n = int(tree.node_count)
            left = np.asarray(tree.children_left, dtype=np.intp)
            right = np.asarray(tree.children_right, dtype=np.intp)
            leaf = left < 0
            here = np.arange(n, dtype=np.intp)
            nodes = np.empty(n, dtype=record)
            nodes["feature"] = np.where(leaf, 0, tree.feature)
            nodes["threshold"] = np.where(leaf, 0.0, tree.threshold)
            nodes["left"] = np.where(leaf, here, left) + offset
            nodes["right"] = np.where(leaf, here, right) + offset
            parts.append(nodes)
            values.append(np.asarray(tree.value[:, 0, :n_classes], dtype=np.float64))
            roots.append(offset)
            depths.append(int(tree.max_depth))
            offset += n
        self.nodes = np.concatenate(parts)
        self.values = np.ascontiguousarray(np.concatenate(values))
        self.roots = np.asarray(roots, dtype=np.intp)
        self.n_trees = len(trees)
        self.n_classes = n_classes
        # Trees still walking at each step (deepest first), and each tree's stored position.
        self.walking = [sum(1 for d in depths if d > step) for step in range(max(depths))]
        self.stored = np.argsort(np.asarray(order, dtype=np.intp))

    def __call__(self, matrix: Any) -> Any:
        import numpy as np

        rows, width = matrix.shape
        flat = np.ascontiguousarray(matrix, dtype=np.float64).ravel()
        node = np.repeat(self.roots, rows)  # tree-major: tree t's rows at [t*rows, (t+1)*rows)
        offsets = (np.tile(np.arange(rows, dtype=np.intp) * width, self.n_trees)
                   if rows > 1 else None)
        nodes = self.nodes
        for trees in self.walking:
            end = trees * rows
            here = nodes.take(node[:end])
            feature = here["feature"] if offsets is None else here["feature"] + offsets[:end]
            node[:end] = np.where(flat.take(feature) <= here["threshold"],
                                  here["left"], here["right"])
        leaves = node.reshape(self.n_trees, rows).take(self.stored, axis=0)  # tree order
        proba = self.values.take(leaves.ravel(), axis=0).reshape(self.n_trees, rows,
                                                                  self.n_classes)
        out = np.add.reduce(proba, axis=0)  # tree after tree, as the forest's += loop
        out /= self.n_trees
        return out


def _values_are_fractions() -> bool:
    """scikit-learn >= 1.4 stores class fractions in ``tree_.value`` (no division left)."""
    import sklearn

    try:
        major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (1, 4)


def _has_proba(model: Any) -> bool:
    return callable(getattr(model, "predict_proba", None)) and hasattr(model, "classes_")


def _predict_is_argmax(model: Any) -> bool:
    """True for scikit-learn estimators whose ``predict`` is exactly argmax of probabilities."""
    try:
        # The forests' common base class is not exported (see _ForestProba.for_model).
        from sklearn.ensemble._forest import ForestClassifier
        from sklearn.tree import DecisionTreeClassifier
    except ImportError:  # pragma: no cover - sklearn absent: not an sklearn model
        return False
    kind = type(model)
    for base in (ForestClassifier, DecisionTreeClassifier):
        if isinstance(model, base) and kind.predict is base.predict:
            return getattr(model, "n_outputs_", 1) == 1
    return False
