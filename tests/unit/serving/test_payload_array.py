"""Numeric bodies are parsed straight into one float array (what a compiled copy is fed),
and that path accepts and refuses exactly what the per-value check does."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.serving.errors import SchemaMismatch
from modelyard.serving.payload import parse_body
from modelyard.serving.source import Column

COLUMNS = [Column("a", "double"), Column("b", "float"), Column("c", "double")]
_value = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(), st.none(), st.text(max_size=3),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=2),
)
_rows = st.lists(st.lists(_value, min_size=2, max_size=4), min_size=1, max_size=5)


def _outcome(body: bytes, *, fast: bool) -> tuple[str, object]:
    payload = parse_body(body, "application/json")
    if not fast:
        payload.literals = True  # the per-value check, as every body took it before
    try:
        block = payload.block(COLUMNS)
    except SchemaMismatch as exc:
        return "refused", exc.message
    return "ok", (block.rows, block.all_float)


@settings(max_examples=150, deadline=None)
@given(_rows, st.sampled_from(["dataframe_split", "instances"]))
def test_the_array_path_decides_as_the_per_value_check(rows: list[list[object]],
                                                       form: str) -> None:
    data = ({"dataframe_split": {"columns": ["a", "b", "c"], "data": rows}}
            if form == "dataframe_split" else {"instances": rows})
    body = json.dumps(data).encode()
    fast, slow = _outcome(body, fast=True), _outcome(body, fast=False)
    assert fast[0] == slow[0]
    if fast[0] == "ok":
        assert fast == slow
        block = parse_body(body, "application/json").block(COLUMNS)
        if block.all_float and not any(isinstance(v, bool) for r in rows for v in r):
            # every value a JSON number: the rows arrive as one float64 array
            assert block.array is not None and block.array.dtype == np.float64
            assert block.array.tolist() == [[float(v) for v in r] for r in block.rows]


def test_a_boolean_in_a_number_column_is_still_refused() -> None:
    body = b'{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, true, 2]]}}'
    with pytest.raises(SchemaMismatch, match="column 'b': expected a number, got True"):
        parse_body(body, "application/json").block(COLUMNS)


def test_a_numeric_body_arrives_as_one_array() -> None:
    body = b'{"dataframe_split": {"columns": ["c", "a", "b"], "data": [[3, 1.5, 2], [6, 4, 5]]}}'
    block = parse_body(body, "application/json").block(COLUMNS)
    assert block.columns == ["a", "b", "c"]
    assert block.array.tolist() == [[1.5, 2.0, 3.0], [4.0, 5.0, 6.0]]
