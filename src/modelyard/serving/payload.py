"""Request bodies in, rows checked against the model's input signature out.

Accepts MLflow's scoring protocol (``dataframe_split``, ``dataframe_records``, ``instances``,
``inputs``; JSON, CSV or Parquet) and turns every form into one ``Block``: the column names
in the signature's order and one list of values per row. A value that does not fit its column
is refused with ``SchemaMismatch`` naming the column (HTTP 422).

>>> payload = parse_body(b'{"instances": [{"a": 1.0}]}', "application/json")
>>> payload.block([Column("a", "double")]).rows
[[1.0]]
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelyard.serving.errors import BadRequest, SchemaMismatch, UnsupportedMediaType
from modelyard.serving.source import Column

try:  # orjson is several times faster for the small bodies serving sees; json is the fallback
    import orjson

    def loads(data: bytes) -> Any:
        return orjson.loads(data)

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)

except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

    def loads(data: bytes) -> Any:
        return json.loads(data)

    def dumps(value: Any) -> bytes:
        return json.dumps(value, default=_default).encode()


def _default(value: Any) -> Any:  # pragma: no cover - json fallback only
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
REQUIRED_INPUT_FORMAT = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}"
)
_NUMERIC_FLOAT = frozenset({"double", "float"})


@dataclass
class Block:
    """Rows of one request, columns in the signature's order."""

    columns: list[str]
    rows: list[list[Any]]
    all_float: bool = False  # every column is double/float and every value a number
    # The rows as one float64 [n, k] array, when ``all_float``: built once by numpy from the
    # parsed lists (no per-value Python check), and what a compiled copy is fed.
    array: Any = None

    @property
    def n(self) -> int:
        return len(self.rows)


@dataclass
class Payload:
    """A parsed body before it meets a signature: ``records`` or positional ``rows``."""

    records: list[dict[str, Any]] | None = None
    rows: list[list[Any]] | None = None
    columns: list[str] | None = None  # names for positional rows, when the body gave them
    raw: dict[str, Any] | None = None
    # The body held a JSON true or false: numpy would read those as 1.0 and 0.0, so such a
    # body takes the per-value check (which refuses a boolean in a number column).
    literals: bool = True

    def field(self, name: str) -> Any:
        """The value of a named field in the first row (used for sticky routing)."""
        if self.records:
            return self.records[0].get(name)
        if self.rows and self.columns and name in self.columns:
            return self.rows[0][self.columns.index(name)]
        return None

    def block(self, columns: list[Column] | None) -> Block:
        """Align to the signature and check every value; 422 names the first bad column."""
        if not self.records and not self.rows:
            raise BadRequest(message="the request holds no rows")
        if columns is None:
            return self._unchecked()
        names = [c.name for c in columns]
        all_float = all(c.type in _NUMERIC_FLOAT for c in columns)
        in_order = self.rows is not None and (self.columns is None or self.columns == names)
        if all_float and not self.literals and in_order:
            # Rows already in the signature's order: numpy checks their shape and types.
            array = _float_array(self.rows or [], len(names))
            if array is not None:
                return Block(names, self.rows or [], all_float=True, array=array)
        if self.records is not None:
            rows = _rows_from_records(self.records, columns)
        else:
            rows = self._aligned_rows(columns)
        if all_float and not self.literals and not in_order:
            array = _float_array(rows, len(names))
            if array is not None:
                return Block(names, rows, all_float=True, array=array)
        if all_float and _fast_float_check(rows, len(names)):
            return Block(names, rows, all_float=True)
        _check_values(rows, columns)
        return Block(names, rows, all_float=False)

    def _aligned_rows(self, columns: list[Column]) -> list[list[Any]]:
        rows = self.rows or []
        if self.columns is None:
            width = len(columns)
            for row in rows:
                if not isinstance(row, list) or len(row) != width:
                    got = len(row) if isinstance(row, list) else "a scalar"
                    raise SchemaMismatch(
                        column=columns[min(len(row) if isinstance(row, list) else 0,
                                           width - 1)].name,
                        problem=f"expected {width} values per row in signature order, got {got}",
                    )
            return rows
        position = {name: i for i, name in enumerate(self.columns)}
        if list(self.columns) == [c.name for c in columns]:
            _check_widths(rows, len(columns), columns)
            return rows
        picks: list[int | None] = []
        for column in columns:
            index = position.get(column.name)
            if index is None and column.required:
                raise SchemaMismatch(column=column.name, problem="missing required column")
            picks.append(index)
        _check_widths(rows, len(self.columns), columns)
        return [[row[i] if i is not None else None for i in picks] for row in rows]

    def _unchecked(self) -> Block:
        if self.records is not None:
            names: list[str] = []
            seen: set[str] = set()
            for record in self.records:
                for key in record:
                    if key not in seen:
                        seen.add(key)
                        names.append(key)
            return Block(names, [[r.get(k) for k in names] for r in self.records])
        rows = self.rows or []
        names = list(self.columns) if self.columns else [
            str(i) for i in range(len(rows[0]) if rows and isinstance(rows[0], list) else 0)
        ]
        return Block(names, rows)


def _check_widths(rows: list[list[Any]], width: int, columns: list[Column]) -> None:
    for row in rows:
        if not isinstance(row, list) or len(row) != width:
            raise SchemaMismatch(column=columns[0].name,
                                 problem=f"every row needs {width} values")


def _rows_from_records(records: list[dict[str, Any]], columns: list[Column]) -> list[list[Any]]:
    names = [c.name for c in columns]
    try:
        return [[record[name] for name in names] for record in records]
    except (KeyError, TypeError):
        pass  # slow path: find the culprit, or fill optional columns
    rows = []
    for record in records:
        if not isinstance(record, dict):
            raise SchemaMismatch(column=names[0], problem="each record must be a JSON object")
        row = []
        for column in columns:
            if column.name in record:
                row.append(record[column.name])
            elif column.required:
                raise SchemaMismatch(column=column.name, problem="missing required column")
            else:
                row.append(None)
        rows.append(row)
    return rows


def _float_array(rows: list[list[Any]], width: int) -> Any:
    """The rows as a float64 [n, width] array when every value is a JSON number, else None.

    numpy reads the nested lists in C: a string makes a text array, a null an object array,
    a ragged row an error, a nested list a third dimension; each of those is None here and the
    rows take the per-value check, which names the column. (JSON true/false are kept off this
    path by the caller: numpy would read them as numbers.)"""
    import numpy as np

    try:
        array = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.ndim != 2 or array.shape[1] != width or array.dtype.kind not in "fi":
        return None
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def _fast_float_check(rows: list[list[Any]], width: int) -> bool:
    """True when every value is an int or float (JSON numbers): the common numeric case."""
    for row in rows:
        if len(row) != width:
            return False
        for value in row:
            kind = type(value)
            if kind is not float and kind is not int:
                return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "double": (_is_number, "expected a number"),
    "float": (_is_number, "expected a number"),
    "long": (lambda v: isinstance(v, int) and not isinstance(v, bool), "expected an integer"),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "expected an integer"),
    "boolean": (lambda v: isinstance(v, bool), "expected true or false"),
    "string": (lambda v: isinstance(v, str), "expected a string"),
    "datetime": (lambda v: isinstance(v, str), "expected an ISO 8601 date-time string"),
    "binary": (lambda v: isinstance(v, str), "expected base64 text"),
}


def _check_values(rows: list[list[Any]], columns: list[Column]) -> None:
    checks = [_CHECKS.get(c.type) for c in columns]
    for row in rows:
        for value, column, check in zip(row, columns, checks, strict=False):
            if value is None:
                if column.required:
                    raise SchemaMismatch(column=column.name, problem="null in a required column")
                continue
            if check is not None and not check[0](value):
                shown = repr(value)
                shown = shown if len(shown) <= 40 else shown[:37] + "..."
                raise SchemaMismatch(column=column.name, problem=f"{check[1]}, got {shown}")


# -- bodies --------------------------------------------------------------------------------
def parse_body(body: bytes, content_type: str | None, *, strict: bool = True) -> Payload:
    """Parse a request body. ``strict``: exactly one MLflow format key (``/invocations``)."""
    mime = (content_type or "application/json").split(";")[0].strip().lower()
    if mime in ("application/json", "") or mime.endswith("+json"):
        return parse_json(body, strict=strict)
    if mime == "text/csv":
        return _from_frame(_read_frame(body, "csv"))
    if mime in ("application/vnd.apache.parquet", "application/parquet"):
        return _from_frame(_read_frame(body, "parquet"))
    raise UnsupportedMediaType(
        message="This predictor only supports the following content types: "
        f"['text/csv', 'application/json', 'application/vnd.apache.parquet']. "
        f"Got '{content_type}'."
    )


def parse_json(body: bytes, *, strict: bool = True) -> Payload:
    try:
        data = loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(message=f"Ensure that input is a valid JSON formatted string: {exc}"
                         ) from exc
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        raise BadRequest(message=f"{REQUIRED_INPUT_FORMAT}. Received {kind}.")
    present = [key for key in FORMATS if key in data]
    if len(present) != 1:
        raise BadRequest(
            message=f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: "
            f"{list(data.keys())}."
        )
    key = present[0]
    value = data[key]
    if key == "dataframe_split":
        payload = _split(value, data)
    elif key == "dataframe_records":
        if not isinstance(value, list):
            raise BadRequest(message="Dataframe records format must be a list of records.")
        payload = _listed(value, data)
    else:
        payload = _tensor_like(value, data)
    # A byte search in C; a column named "true" only sends its body the slower way.
    payload.literals = b"true" in body or b"false" in body
    return payload


def _split(value: Any, raw: dict[str, Any]) -> Payload:
    if not isinstance(value, dict) or "data" not in value or set(value) - {
        "columns", "data", "index"
    }:
        raise BadRequest(message="Dataframe split format must have 'data' field and optionally "
                                 "'columns' and 'index' fields.")
    rows = value["data"]
    if not isinstance(rows, list):
        raise BadRequest(message="dataframe_split 'data' must be a list of rows")
    columns = value.get("columns")
    if columns is not None and not isinstance(columns, list):
        raise BadRequest(message="dataframe_split 'columns' must be a list of names")
    if rows and not isinstance(rows[0], list):
        rows = [[v] for v in rows]  # a single column given as a flat list
    return Payload(rows=rows, columns=[str(c) for c in columns] if columns else None, raw=raw)


def _listed(value: list[Any], raw: dict[str, Any]) -> Payload:
    if not value:
        raise BadRequest(message="the request holds no rows")
    if all(isinstance(item, dict) for item in value):
        return Payload(records=value, raw=raw)
    if all(isinstance(item, list) for item in value):
        return Payload(rows=value, raw=raw)
    if not any(isinstance(item, (dict, list)) for item in value):
        return Payload(rows=[[item] for item in value], raw=raw)  # one column of scalars
    raise BadRequest(message="rows must all be objects or all be lists")


def _tensor_like(value: Any, raw: dict[str, Any]) -> Payload:
    if isinstance(value, list):
        return _listed(value, raw)
    if isinstance(value, dict):  # columnar: {"col": [v, ...]} or one row {"col": v}
        if not value:
            raise BadRequest(message="the request holds no rows")
        names = [str(k) for k in value]
        columns = list(value.values())
        if all(isinstance(c, list) for c in columns):
            lengths = {len(c) for c in columns}
            if len(lengths) != 1:
                raise BadRequest(message="columnar inputs must all have the same length")
            rows = [list(r) for r in zip(*columns, strict=True)]
            return Payload(rows=rows, columns=names, raw=raw)
        return Payload(rows=[columns], columns=names, raw=raw)
    raise BadRequest(message=f"{REQUIRED_INPUT_FORMAT}. Received a scalar.")


def _read_frame(body: bytes, kind: str) -> Any:
    import pandas as pd

    try:
        if kind == "csv":
            return pd.read_csv(io.BytesIO(body))
        return pd.read_parquet(io.BytesIO(body))
    except Exception as exc:  # any parser failure is the client's input
        raise BadRequest(message=f"Failed to parse input as a Pandas DataFrame ({kind}): "
                                 f"{type(exc).__name__}") from exc


def _from_frame(frame: Any) -> Payload:
    records = frame.to_dict(orient="records")
    cleaned = [{str(k): _plain(v) for k, v in r.items()} for r in records]
    return Payload(records=cleaned)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN from an empty CSV cell
        return None
    return value
