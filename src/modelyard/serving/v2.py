"""The Open Inference Protocol (v2), which KServe, Triton and Seldon speak: bodies in and out.

An inference request names its inputs as tensors. Two forms are taken:

- one tensor per column, named as the signature's columns, each of shape ``[n]`` or
  ``[n, 1]`` (KServe's and MLServer's pandas form);
- one two-dimensional tensor ``[n, k]`` holding the rows, its ``k`` values in the signature's
  column order.

Tensor data comes as JSON (flat or nested, row-major) or in the binary tensor extension
(``Inference-Header-Content-Length``: JSON header, then each input's raw little-endian bytes),
which tritonclient sends by default. Answers are JSON: ``predict`` (labels or values) and, for
classifiers, ``confidence`` (the highest class probability). A body that does not fit is
refused with one line naming the problem (400, or 422 for a value a column does not take).

>>> payload, request = parse_infer(body, None)
>>> reply = infer_response(name, version, request, predictions, confidence)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from modelyard.serving.errors import BadRequest
from modelyard.serving.payload import Payload, loads
from modelyard.serving.source import Column

# v2 datatype -> numpy dtype for binary tensors (BYTES is length-prefixed, decoded apart)
_NUMPY = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
          "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
          "FP32": "<f4", "FP64": "<f8"}
DATATYPES = (*_NUMPY, "BYTES")
OUTPUTS = ("predict", "confidence")
_COLUMN_TYPES = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32",
                 "boolean": "BOOL", "string": "BYTES", "binary": "BYTES"}
_MAX_INPUTS = 4096


@dataclass
class InferRequest:
    id: str | None = None
    outputs: list[str] = field(default_factory=lambda: list(OUTPUTS))


def parse_infer(body: bytes, header_length: str | None) -> tuple[Payload, InferRequest]:
    """A v2 inference body as rows (``Payload``) and what the caller asked back."""
    binary = b""
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise BadRequest(message="Inference-Header-Content-Length must be an integer"
                             ) from None
        if not 0 < split <= len(body):
            raise BadRequest(message="Inference-Header-Content-Length is outside the body")
        body, binary = body[:split], body[split:]
    try:
        data = loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(message="the inference request must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest(message="the inference request must be a JSON object")
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(message="'inputs' must be a non-empty list of tensors")
    if len(inputs) > _MAX_INPUTS:
        raise BadRequest(message=f"at most {_MAX_INPUTS} inputs")
    request = InferRequest(id=_request_id(data.get("id")), outputs=_outputs(data.get("outputs")))
    offset = 0
    tensors: list[tuple[str, list[int], list[Any]]] = []
    for tensor in inputs:
        name, shape, values, used = _tensor(tensor, binary, offset)
        offset += used
        tensors.append((name, shape, values))
    if offset != len(binary):
        raise BadRequest(message="binary data does not match the inputs' binary_data_size")
    return _payload(tensors), request


def _request_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise BadRequest(message="'id' must be a string of at most 256 characters")
    return value


def _outputs(value: Any) -> list[str]:
    if value is None:
        return list(OUTPUTS)
    if not isinstance(value, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in value):
        raise BadRequest(message="'outputs' must be a list of {\"name\": ...} objects")
    names = [o["name"] for o in value]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise BadRequest(message=f"unknown output {unknown[0]!r:.60}; this model answers "
                                 f"{', '.join(OUTPUTS)}")
    return names


def _tensor(tensor: Any, binary: bytes, offset: int) -> tuple[str, list[int], list[Any], int]:
    import numpy as np

    if not isinstance(tensor, dict):
        raise BadRequest(message="each input must be a JSON object")
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str) or not name:
        raise BadRequest(message="each input needs a 'name'")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise BadRequest(message=f"input {name!r:.60}: 'shape' must be a list of one or two "
                                 "non-negative integers")
    if datatype not in DATATYPES:
        raise BadRequest(message=f"input {name!r:.60}: unknown datatype {datatype!r:.20} "
                                 f"(one of {', '.join(DATATYPES)})")
    count = int(np.prod(shape)) if shape else 0
    parameters = tensor.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise BadRequest(message=f"input {name!r:.60}: binary_data_size does not fit "
                                     "the body")
        values = _from_binary(name, datatype, binary[offset:offset + size], count)
        return name, shape, values, size
    if "data" not in tensor:
        raise BadRequest(message=f"input {name!r:.60} has no 'data'")
    flat = _flatten(tensor["data"], name)
    if len(flat) != count:
        raise BadRequest(message=f"input {name!r:.60}: shape {shape} needs {count} values, "
                                 f"got {len(flat)}")
    return name, shape, flat, 0


def _flatten(data: Any, name: str) -> list[Any]:
    if not isinstance(data, list):
        raise BadRequest(message=f"input {name!r:.60}: 'data' must be a list")
    if not any(isinstance(item, list) for item in data):
        return data
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item, name))
        else:
            out.append(item)
    return out


def _from_binary(name: str, datatype: str, raw: bytes, count: int) -> list[Any]:
    import numpy as np

    if datatype != "BYTES":
        dtype = np.dtype(_NUMPY[datatype])
        if len(raw) != count * dtype.itemsize:
            raise BadRequest(message=f"input {name!r:.60}: {len(raw)} bytes do not hold "
                                     f"{count} {datatype} values")
        return list(np.frombuffer(raw, dtype=dtype).tolist())
    values: list[Any] = []
    at = 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise BadRequest(message=f"input {name!r:.60}: truncated BYTES element")
        (length,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + length > len(raw):
            raise BadRequest(message=f"input {name!r:.60}: truncated BYTES element")
        try:
            values.append(raw[at:at + length].decode())
        except UnicodeDecodeError:
            raise BadRequest(message=f"input {name!r:.60}: BYTES must be UTF-8 text") from None
        at += length
    if len(values) != count:
        raise BadRequest(message=f"input {name!r:.60}: expected {count} BYTES elements, got "
                                 f"{len(values)}")
    return values


def _payload(tensors: list[tuple[str, list[int], list[Any]]]) -> Payload:
    """One [n, k] tensor (rows in signature order) or one [n] / [n, 1] tensor per column."""
    if len(tensors) == 1 and len(tensors[0][1]) == 2 and tensors[0][1][1] != 1:
        _, (n, k), flat = tensors[0]
        return Payload(rows=[[_text(v) for v in flat[i * k:(i + 1) * k]] for i in range(n)])
    names, columns = [], []
    length = None
    for name, shape, flat in tensors:
        if len(shape) == 2 and shape[1] != 1:
            raise BadRequest(message=f"input {name!r:.60}: a column tensor has shape [n] or "
                                     "[n, 1]; send rows as one [n, k] tensor")
        if length is not None and shape[0] != length:
            raise BadRequest(message=f"input {name!r:.60} has {shape[0]} rows, the others "
                                     f"{length}")
        if name in names:
            raise BadRequest(message=f"input {name!r:.60} is given twice")
        length = shape[0]
        names.append(name)
        columns.append([_text(v) for v in flat])
    return Payload(rows=[list(row) for row in zip(*columns, strict=True)], columns=names)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def datatype_of(values: list[Any]) -> str:
    if values and all(isinstance(v, bool) for v in values):
        return "BOOL"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def infer_response(name: str, version: int, semver: str, runtime: str, request: InferRequest,
                   predictions: list[Any], confidence: list[float] | None) -> dict[str, Any]:
    outputs = []
    if "predict" in request.outputs:
        kind = datatype_of(predictions)
        data = [str(p) for p in predictions] if kind == "BYTES" else predictions
        outputs.append({"name": "predict", "datatype": kind, "shape": [len(predictions)],
                        "data": data})
    if "confidence" in request.outputs and confidence is not None:
        outputs.append({"name": "confidence", "datatype": "FP64", "shape": [len(confidence)],
                        "data": confidence})
    body: dict[str, Any] = {"model_name": name, "model_version": str(version),
                            "parameters": {"semver": semver, "runtime": runtime},
                            "outputs": outputs}
    if request.id is not None:
        body["id"] = request.id
    return body


def metadata(name: str, versions: list[int], runtime: str, columns: list[Column] | None,
             classifier: bool) -> dict[str, Any]:
    inputs = ([{"name": c.name, "datatype": _COLUMN_TYPES.get(c.type, "BYTES"),
                "shape": [-1, 1]} for c in columns] if columns else [])
    outputs = [{"name": "predict", "datatype": "BYTES", "shape": [-1]}]
    if classifier:
        outputs.append({"name": "confidence", "datatype": "FP64", "shape": [-1]})
    return {"name": name, "versions": [str(v) for v in versions],
            "platform": "onnxruntime_onnx" if runtime == "onnx" else "mlflow",
            "inputs": inputs, "outputs": outputs}
