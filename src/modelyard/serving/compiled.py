"""A version's compiled copy: ONNX, converted by skl2onnx or onnxmltools, run by ONNX Runtime.

When a version is first served, or promoted to staging, ``prepare`` looks for its compiled
copy in the vault: ``compiled/NAME/MANIFEST_SHA256.json`` names an object in the vault's
content-addressed store, read back and checked by its SHA-256 like every file of the version.
Without one, it converts the model (scikit-learn estimators and pipelines, ColumnTransformer
and encoders included, through skl2onnx; XGBoost and LightGBM through onnxmltools), checks
parity on the version's input example and the rows recorded at registration (every label
equal, every probability within ``TOLERANCE``) and keeps the copy. A model the converters
refuse, or a copy that misses parity, is served through its own flavor, and the reason is
recorded (and kept, so the next worker does not convert again with the same libraries).

Registration never converts: the cost is paid once, off the request path.

>>> compiled = prepare(store, served, native)     # native(rows) -> (labels, probabilities)
>>> compiled.runtime, compiled.reason, compiled.parity
('onnx', None, {'rows': 259, 'labels_equal': 1.0, 'max_abs_diff': 6.5e-07})
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import YardError
from modelyard.serving.onnx_trees import split_pipeline, tree_converters
from modelyard.serving.source import Column, ServedModel
from modelyard.store.files import sha256_stream
from modelyard.store.vault import compiled_key, object_key, sample_key

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.lifecycle.stages import StageChange
    from modelyard.serving.source import Registry
    from modelyard.store.storage import ObjectStore

log = logging.getLogger("modelyard.serving")

TOLERANCE = 1e-5
FORMAT = "modelyard-compiled-copy/1"  # the vault record's format
_NUMERIC = frozenset({"double", "float", "long", "integer", "boolean"})
# onnxmltools' tree converters stop at opset 15; skl2onnx takes the newer one.
_OPSET_SKLEARN = {"": 17, "ai.onnx.ml": 3}
_OPSET_TREES = 15

Native = Callable[[list[list[Any]]], tuple[Any, Any]]


class Refused(Exception):
    """The model cannot be served compiled; the message says why (shown as the reason)."""


@dataclass
class Compiled:
    """Which runtime answers for a version, and why."""

    runtime: str  # "onnx" or "pyfunc"
    reason: str | None = None  # why not onnx
    parity: dict[str, Any] | None = None
    model: OnnxModel | None = None
    convert_s: float | None = None  # conversion time, when this process converted
    size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "reason": self.reason, "parity": self.parity,
                "convert_s": self.convert_s, "bytes": self.size}


def pyfunc(reason: str) -> Compiled:
    return Compiled("pyfunc", reason=reason)


# -- running a compiled copy --------------------------------------------------------------
class OnnxModel:
    """An ONNX Runtime session over one compiled copy: one intra-op thread, so each worker
    process keeps to one core and a busy neighbour cannot stretch its tail."""

    def __init__(self, data: bytes, columns: list[Column], layout: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # warnings about declared output shapes are noise
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.columns = columns
        self.layout = layout
        inputs = self.session.get_inputs()
        self.inputs = [i.name for i in inputs]
        # A pipeline compiled in two parts takes float64 (its transforms run as in
        # scikit-learn); every other matrix model takes float32.
        self.dtype = "float64" if inputs and inputs[0].type == "tensor(double)" else "float32"
        outputs = self.session.get_outputs()
        self.outputs = [o.name for o in outputs]
        self.classifier = len(outputs) >= 2

    def run(self, rows: Any) -> tuple[Any, Any]:
        """(labels or values, probabilities or None) for rows in the signature's order: a
        list of lists, or (numeric models) a float [n, k] array."""
        import numpy as np

        if self.layout == "matrix":
            feed = {self.inputs[0]: np.asarray(rows, dtype=self.dtype)}
        else:
            if isinstance(rows, np.ndarray):
                rows = rows.tolist()
            feed = {}
            for index, column in enumerate(self.columns):
                values = [row[index] for row in rows]
                if column.type in _NUMERIC:
                    feed[column.name] = np.array(values, dtype=np.float32).reshape(-1, 1)
                else:
                    feed[column.name] = np.array(["" if v is None else str(v) for v in values],
                                                 dtype=object).reshape(-1, 1)
        got = self.session.run(None, feed)
        if self.classifier:
            return np.asarray(got[0]).ravel(), np.asarray(got[1])
        return np.asarray(got[0]).ravel(), None


# -- converting ---------------------------------------------------------------------------
def convert(model: Any, columns: list[Column] | None) -> tuple[bytes, str, str]:
    """(ONNX bytes, input layout, converter) for a model, or ``Refused`` saying why."""
    if not columns:
        raise Refused("the version records no input schema to compile against")
    numeric = all(c.type in _NUMERIC for c in columns)
    family = type(model).__module__.split(".")[0]
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    if family in ("xgboost", "lightgbm"):
        if not numeric:
            raise Refused(f"{type(model).__name__} takes only numeric columns compiled")
        converter = "onnxmltools"
        try:
            from onnxmltools.convert import convert_lightgbm, convert_xgboost
            from onnxmltools.convert.common.data_types import FloatTensorType as TreeFloat
        except ImportError as exc:
            raise Refused(f"onnxmltools is not installed ({exc.name})") from exc
        inputs = [("X", TreeFloat([None, len(columns)]))]
        try:
            if family == "xgboost":
                clone = copy.deepcopy(model)
                # onnxmltools reads features as f0, f1, ... from the booster's dump; the
                # column names the booster remembers would not parse.
                clone.get_booster().feature_names = None
                onx = convert_xgboost(clone, initial_types=inputs, target_opset=_OPSET_TREES)
            else:
                onx = convert_lightgbm(model, initial_types=inputs, zipmap=False,
                                       target_opset=_OPSET_TREES)
        except Exception as exc:  # any converter failure is a refusal
            raise Refused(_refusal(converter, kind, exc)) from exc
        return onx.SerializeToString(), "matrix", converter
    if family != "sklearn" and not _is_sklearn(model):
        raise Refused(f"no ONNX converter for {kind}")
    converter = "skl2onnx"
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    except ImportError as exc:
        raise Refused(f"skl2onnx is not installed ({exc.name})") from exc
    layout = "columns" if _takes_columns(model) else "matrix"
    if layout == "matrix":
        if not numeric:
            raise Refused("non-numeric columns compile only through a ColumnTransformer")
        types: list[tuple[str, Any]] = [("X", FloatTensorType([None, len(columns)]))]
    else:
        types = [(c.name, FloatTensorType([None, 1]) if c.type in _NUMERIC
                  else StringTensorType([None, 1])) for c in columns]
    options = {"zipmap": False} if _is_classifier(model) else None
    onx = split_pipeline(model, len(columns), _OPSET_SKLEARN) if layout == "matrix" else None
    if onx is None:
        try:
            onx = convert_sklearn(model, name=f"ONNX({type(model).__name__})",
                                  initial_types=types, options=options,
                                  target_opset=_OPSET_SKLEARN,
                                  custom_conversion_functions=tree_converters())
        except Exception as exc:  # any converter failure is a refusal
            raise Refused(_refusal(converter, kind, exc)) from exc
    return onx.SerializeToString(), layout, converter


def _refusal(converter: str, kind: str, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{converter} could not convert {kind}: {type(exc).__name__}: {first[:160]}"


def _is_sklearn(model: Any) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, BaseEstimator)


def _is_classifier(model: Any) -> bool:
    return callable(getattr(model, "predict_proba", None)) and hasattr(model, "classes_")


def _takes_columns(model: Any) -> bool:
    """A ColumnTransformer up front picks columns by name: one ONNX input per column."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline) and model.steps:
        model = model.steps[0][1]
    return isinstance(model, ColumnTransformer)


def versions() -> dict[str, str]:
    """The libraries a compiled copy depends on, as a refusal record keeps them."""
    out = {}
    for package in ("onnxruntime", "skl2onnx", "onnxmltools", "onnx", "scikit-learn",
                    "xgboost", "xgboost-cpu", "lightgbm"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


# -- parity -------------------------------------------------------------------------------
def samples(store: ObjectStore | None, served: ServedModel) -> list[list[Any]]:
    """The rows parity is checked on: the version's input example and the sample recorded at
    registration, in the signature's order (rows that do not fit the signature are left out)."""
    from modelyard.serving.payload import Payload, parse_body

    columns = served.columns
    rows: list[list[Any]] = []
    example = Path(served.path) / "serving_input_example.json"
    if columns and example.is_file():
        try:
            rows += parse_body(example.read_bytes(), "application/json",
                               strict=False).block(columns).rows
        except (YardError, OSError) as exc:
            log.info("%s v%s: input example not usable for parity: %s", served.name,
                     served.semver, exc)
    if columns and store is not None:
        try:
            data = json.loads(store.get_bytes(sample_key(served.name, served.version)))
            payload = Payload(rows=[list(r) for r in data["rows"]],
                              columns=[str(c) for c in data["columns"]])
            rows += payload.block(columns).rows
        except (YardError, ValueError, KeyError, TypeError):
            pass  # no sample recorded (or one of other columns): the example alone decides
    return rows


def parity(native: Native, compiled: OnnxModel, rows: list[list[Any]]) -> dict[str, Any]:
    """Labels equal and probabilities within ``TOLERANCE``, measured on ``rows``."""
    import numpy as np

    want_labels, want_proba = native(rows)
    got_labels, got_proba = compiled.run(rows)
    want = np.asarray(want_labels).ravel()
    if want_proba is not None and got_proba is not None:
        equal = float(np.mean([str(a) == str(b) for a, b in zip(want, got_labels,
                                                                 strict=True)]))
        diff = float(np.max(np.abs(np.asarray(want_proba, dtype=np.float64)
                                   - np.asarray(got_proba, dtype=np.float64))))
    elif want_proba is None and got_proba is None:
        values = np.asarray(want, dtype=np.float64)
        diff = float(np.max(np.abs(values - np.asarray(got_labels, dtype=np.float64))
                            / np.maximum(1.0, np.abs(values))))
        equal = 1.0
    else:
        return {"rows": len(rows), "labels_equal": 0.0, "max_abs_diff": None}
    return {"rows": len(rows), "labels_equal": equal, "max_abs_diff": diff}


def passes(figures: dict[str, Any]) -> bool:
    diff = figures.get("max_abs_diff")
    return figures.get("labels_equal") == 1.0 and diff is not None and diff <= TOLERANCE


# -- the vault's copy -------------------------------------------------------------------------
def read_record(store: ObjectStore, name: str, manifest_sha256: str) -> dict[str, Any] | None:
    key = compiled_key(name, manifest_sha256)
    try:
        if not store.exists(key):
            return None
        record: dict[str, Any] = json.loads(store.get_bytes(key))
    except (YardError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def prepare(store: ObjectStore | None, served: ServedModel, native: Native) -> Compiled:
    """The runtime a served version answers with: its verified compiled copy, or pyfunc and
    why. Never raises for a model it cannot compile."""
    if not served.manifest_sha256:
        return pyfunc("the version has no manifest hash to key a compiled copy by")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return pyfunc("onnxruntime is not installed (pip install 'modelyard[serve]')")
    record = read_record(store, served.name, served.manifest_sha256) if store else None
    if record is not None:
        if record.get("runtime") == "pyfunc" and record.get("libraries") == versions():
            return pyfunc(str(record.get("reason")))
        if record.get("runtime") == "onnx":
            kept = _kept(store, served, record)
            if kept is not None:
                return kept
    return _convert(store, served, native)


def _kept(store: ObjectStore | None, served: ServedModel, record: dict[str, Any]
          ) -> Compiled | None:
    assert store is not None
    oid = str(record.get("object", ""))
    try:
        data = store.get_bytes(object_key(oid))
    except YardError as exc:
        log.warning("%s v%s: compiled copy unreadable (%s); converting again", served.name,
                    served.semver, exc.message)
        return None
    if sha256_stream([data])[0] != oid or len(data) != record.get("size"):
        log.warning("%s v%s: compiled copy does not match its recorded SHA-256; converting "
                    "again", served.name, served.semver)
        return None
    assert served.columns is not None
    model = OnnxModel(data, served.columns, str(record.get("layout")))
    return Compiled("onnx", parity=record.get("parity"), model=model, size=len(data))


def _convert(store: ObjectStore | None, served: ServedModel, native: Native) -> Compiled:
    started = time.perf_counter()
    try:
        data, layout, converter = convert(served.model, served.columns)
        assert served.columns is not None
        model = OnnxModel(data, served.columns, layout)
        rows = samples(store, served)
        if not rows:
            raise Refused("no input example or registered sample to check parity on")
        figures = parity(native, model, rows)
        if not passes(figures):
            raise Refused(f"parity missed on {figures['rows']} rows: labels equal "
                          f"{figures['labels_equal']:.4f}, largest difference "
                          f"{figures['max_abs_diff']} (allowed {TOLERANCE:g})")
    except Refused as exc:
        reason = str(exc)
        log.info("%s v%s served through pyfunc: %s", served.name, served.semver, reason)
        _write(store, served, {"runtime": "pyfunc", "reason": reason})
        return pyfunc(reason)
    except Exception as exc:  # noqa: BLE001 - a broken copy never stops serving
        reason = _refusal("ONNX Runtime", type(served.model).__name__, exc)
        log.warning("%s v%s served through pyfunc: %s", served.name, served.semver, reason)
        return pyfunc(reason)
    seconds = round(time.perf_counter() - started, 3)
    oid = sha256_stream([data])[0]
    if store is not None:
        try:
            # Written even when the key exists: a damaged copy there is replaced.
            store.put_bytes(object_key(oid), data)
        except YardError as exc:
            log.warning("%s v%s: compiled copy not kept in the vault: %s", served.name,
                        served.semver, exc.message)
            store = None
    if store is not None:
        _write(store, served, {"runtime": "onnx", "object": oid, "size": len(data),
                               "layout": layout, "converter": converter, "parity": figures,
                               "convert_s": seconds})
    log.info("%s v%s compiled with %s in %.2fs (parity on %d rows, largest difference %s)",
             served.name, served.semver, converter, seconds, figures["rows"],
             figures["max_abs_diff"])
    return Compiled("onnx", parity=figures, model=model, convert_s=seconds, size=len(data))


def _write(store: ObjectStore | None, served: ServedModel, body: dict[str, Any]) -> None:
    if store is None:
        return
    record = {"format": FORMAT, "name": served.name, "version": served.version,
              "semver": served.semver, "manifest_sha256": served.manifest_sha256,
              **body, "libraries": versions(),
              "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        store.put_bytes(compiled_key(served.name, served.manifest_sha256),
                        json.dumps(record, indent=1, default=str).encode())
    except YardError as exc:
        log.warning("%s v%s: compiled record not written: %s", served.name, served.semver,
                    exc.message)


# -- on promotion to staging ------------------------------------------------------------------
def _by_registration(change: StageChange) -> bool:
    """A move the registration itself made (``default_stage``, ``auto_promote``): converting
    there would put the conversion on the registration path; serving converts it instead."""
    reason = change.reason or ""
    return reason == "default_stage policy" or reason.startswith("auto-promotion: ")


def compile_on_move(registry: Registry, change: StageChange) -> StageChange:
    """A version entering staging is compiled (and its parity checked) now, so production
    never waits for a conversion; returns ``change`` for the next hook. Never fails the move:
    a problem is logged and serving converts (or falls back) when it first loads the version."""
    if change.to != "staging" or change.status == "pending" or _by_registration(change):
        return change
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return change  # no compiled runtime here: nothing to prepare
    from modelyard.serving.source import ModelSource

    try:
        ModelSource(registry, change.name, purpose="compile").load(change.version)
    except Exception as exc:  # noqa: BLE001 - the move is done; compiling is a convenience
        message = exc.message if isinstance(exc, YardError) else type(exc).__name__
        log.warning("%s #%s entered staging; compiling it for serving failed: %s",
                    change.name, change.version, message)
    return change


def summary(store: ObjectStore, name: str, manifest_sha256: str | None) -> dict[str, Any]:
    """What ``details`` shows: whether a compiled copy exists, its parity figures, or why the
    version is served through pyfunc (``runtime`` None: not converted yet)."""
    record = read_record(store, name, manifest_sha256) if manifest_sha256 else None
    if record is None:
        return {"exists": False, "runtime": None, "parity": None, "reason": None}
    onnx = record.get("runtime") == "onnx"
    return {"exists": onnx, "runtime": record.get("runtime"), "parity": record.get("parity"),
            "reason": record.get("reason"), "bytes": record.get("size"),
            "converter": record.get("converter"), "at": record.get("at")}
