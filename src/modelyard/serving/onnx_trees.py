"""skl2onnx conversions of tree models that need more than ``to_onnx``: HistGradientBoosting
(refused by skl2onnx 1.20 with onnx 1.23) and numeric pipelines ending in trees (compiled in
two parts for parity). Used by ``compiled.convert``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("modelyard.serving")


def _is_classifier(model: Any) -> bool:
    return callable(getattr(model, "predict_proba", None)) and hasattr(model, "classes_")


class _IntFlags:
    """A converter container that writes boolean flags in integer attributes as 0/1.

    skl2onnx 1.20 gives HistGradientBoosting's leaves ``missing = False`` beside the numpy
    integers of its branches in ``nodes_missing_value_tracks_true``; onnx 1.23's protobuf
    refuses a bool in an ``ints`` attribute ("Expected an int, got a boolean"), so every
    HistGradientBoosting model was refused. The values are the same; only their type is not.
    Everything else is the container's own."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attrs: Any) -> Any:
        for key, value in attrs.items():
            if isinstance(value, list) and any(type(v) is bool for v in value):
                attrs[key] = [int(v) for v in value]
        return self._container.add_node(*args, **attrs)


def tree_converters() -> dict[type, Callable[..., None]]:
    """skl2onnx's own HistGradientBoosting converters, given a container that writes their
    flags as integers (``_IntFlags``); for this call only, skl2onnx's registry is untouched."""
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    def flags(convert: Callable[..., None]) -> Callable[..., None]:
        def call(scope: Any, operator: Any, container: Any) -> None:
            convert(scope, operator, _IntFlags(container))
        return call

    return {HistGradientBoostingClassifier: flags(convert_sklearn_random_forest_classifier),
            HistGradientBoostingRegressor: flags(
                convert_sklearn_random_forest_regressor_converter)}


def split_pipeline(model: Any, width: int, opset: dict[str, int]) -> Any:
    """A numeric pipeline ending in trees, compiled in two parts joined by a cast: the
    transforms in float64, as scikit-learn runs them, then the trees on float32 (skl2onnx
    writes their thresholds in float32). Compiled whole, the scaler runs in float32 and moves
    rows across thresholds: on a scaler + HistGradientBoosting pipeline the labels stayed
    equal but probabilities were off by up to 0.05. None when the model is not such a
    pipeline or a part does not convert (then it is compiled whole)."""
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or len(model.steps) < 2:
        return None
    final = model.steps[-1][1]
    package = type(final).__module__
    if not hasattr(final, "n_features_in_") or not (
            package.startswith("sklearn.ensemble") or package.startswith("sklearn.tree")):
        return None
    try:
        from onnx import TensorProto, compose, helper
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

        prefix = convert_sklearn(Pipeline(model.steps[:-1]), name="transforms",
                                 initial_types=[("X", DoubleTensorType([None, width]))],
                                 target_opset=opset)
        inner = int(final.n_features_in_)
        options = {id(final): {"zipmap": False}} if _is_classifier(final) else None
        trees = convert_sklearn(final, name="trees",
                                initial_types=[("features", FloatTensorType([None, inner]))],
                                options=options, target_opset=opset,
                                custom_conversion_functions=tree_converters())
        produced = prefix.graph.output[0].name
        prefix.graph.node.append(helper.make_node("Cast", [produced], ["features32"],
                                                  to=TensorProto.FLOAT))
        del prefix.graph.output[:]
        prefix.graph.output.append(helper.make_tensor_value_info(
            "features32", TensorProto.FLOAT, [None, inner]))
        trees = compose.add_prefix(trees, "trees_")
        _same_opsets(prefix, trees)
        return compose.merge_models(prefix, trees, io_map=[("features32", "trees_features")])
    except Exception as exc:  # noqa: BLE001 - compiled whole instead, or refused there
        log.info("%s: split compilation not used (%s: %s)", type(model).__name__,
                 type(exc).__name__, str(exc)[:160])
        return None


def _same_opsets(*models: Any) -> None:
    """compose.merge_models takes two graphs that import the same opset versions."""
    from onnx import helper

    wanted: dict[str, int] = {}
    for model in models:
        for opset in model.opset_import:
            wanted[opset.domain] = max(wanted.get(opset.domain, 0), opset.version)
    for model in models:
        del model.opset_import[:]
        model.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(wanted.items()))
