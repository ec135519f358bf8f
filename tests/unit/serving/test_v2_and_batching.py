"""The v2 body parser and the batcher's wait policy, without a server."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.serving.batching import Batcher
from modelyard.serving.errors import BadRequest
from modelyard.serving.source import Column
from modelyard.serving.v2 import parse_infer

COLUMNS = [Column("a", "double"), Column("plan", "string")]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
tensors = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["a", "plan", "x", ""]) | json_values,
    "shape": st.lists(st.integers(-1, 4), max_size=3) | json_values,
    "datatype": st.sampled_from(["FP64", "BYTES", "INT64", "BOOL", "FP99"]) | json_values,
    "data": st.lists(st.integers(0, 3) | st.text(max_size=3), max_size=6) | json_values,
    "parameters": st.fixed_dictionaries({"binary_data_size": st.integers(-1, 20)})
    | json_values,
})
bodies = st.fixed_dictionaries({}, optional={
    "inputs": st.lists(tensors, max_size=3) | json_values,
    "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=10)}), max_size=2)
    | json_values,
    "id": json_values,
})


@settings(max_examples=300, deadline=None)
@given(body=bodies, tail=st.binary(max_size=24), header=st.none() | st.integers(-5, 400))
def test_any_body_is_rows_or_one_bad_request(body: dict[str, Any], tail: bytes,
                                             header: int | None) -> None:
    raw = json.dumps(body).encode()
    try:
        payload, _ = parse_infer(raw + (tail if header is not None else b""),
                                 None if header is None else str(header))
        payload.block(COLUMNS)  # the rows meet the signature: a 4xx YardError at worst
    except BadRequest as exc:
        assert exc.message and exc.http_status == 400
    except Exception as exc:  # noqa: BLE001 - anything else must be a 4xx serving error
        assert getattr(exc, "http_status", 500) in (400, 422), repr(exc)


def test_column_and_row_tensors_and_binary_data() -> None:
    body = {"inputs": [{"name": "a", "shape": [2, 1], "datatype": "FP64", "data": [[1.5], [2]]},
                       {"name": "plan", "shape": [2], "datatype": "BYTES",
                        "data": ["basic", "pro"]}], "id": "x"}
    payload, request = parse_infer(json.dumps(body).encode(), None)
    assert payload.block(COLUMNS).rows == [[1.5, "basic"], [2, "pro"]] and request.id == "x"

    rows = {"inputs": [{"name": "rows", "shape": [2, 2], "datatype": "BYTES",
                        "data": ["1.0", "a", "2.0", "b"]}]}
    assert parse_infer(json.dumps(rows).encode(), None)[0].rows == [["1.0", "a"],
                                                                     ["2.0", "b"]]
    values = struct.pack("<2d", 0.25, 4.0)
    texts = b"".join(struct.pack("<I", len(t)) + t for t in (b"plus", b"pro"))
    header = json.dumps({"inputs": [
        {"name": "a", "shape": [2, 1], "datatype": "FP64",
         "parameters": {"binary_data_size": len(values)}},
        {"name": "plan", "shape": [2, 1], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(texts)}}]}).encode()
    payload, _ = parse_infer(header + values + texts, str(len(header)))
    assert payload.block(COLUMNS).rows == [[0.25, "plus"], [4.0, "pro"]]
    with pytest.raises(BadRequest, match="binary data does not match"):
        parse_infer(header + values + texts + b"extra", str(len(header)))


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_slow_model_is_never_held_back_and_a_fast_one_waits_at_most_its_cost() -> None:
    """The wait follows the measured cost of a call, capped by max_wait."""
    calls: list[int] = []

    def slow(items: Any) -> list[int]:
        calls.append(len(items))
        time.sleep(0.03)
        return list(items)

    async def lone_requests(batcher: Batcher[int, int]) -> float:
        batcher.start()
        await batcher.submit(0)  # measured once
        started = time.perf_counter()
        await batcher.submit(1)
        took = time.perf_counter() - started
        await batcher.close()
        return took

    slow_batcher: Batcher[int, int] = Batcher(slow, max_batch=8, max_wait=0.2)
    took = _run(lone_requests(slow_batcher))
    # One call costs ~30 ms, less than max_wait (200 ms): the batch waits at most one call.
    assert slow_batcher.call_cost is not None and slow_batcher.wait() == slow_batcher.call_cost
    assert took < 0.2
    slower: Batcher[int, int] = Batcher(slow, max_batch=8, max_wait=0.01)
    took = _run(lone_requests(slower))
    assert slower.wait() == 0.0  # a call costs more than max_wait: never held back
    assert took < 0.03 + 0.01 + 0.05

    fast: Batcher[int, int] = Batcher(lambda items: list(items), max_batch=8, max_wait=0.5,
                                      inline=True)
    took = _run(lone_requests(fast))
    assert fast.wait() < 0.01 and took < 0.1  # not the 500 ms max_wait


def test_a_pyfunc_model_keeps_to_its_share_of_native_threads() -> None:
    """The predicting thread's OpenMP and BLAS pools are limited to the worker's share."""
    import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime
    from threadpoolctl import threadpool_info

    from modelyard.serving.scoring import limit_threads

    def pools(items: Any) -> list[list[int]]:
        return [[p["num_threads"] for p in threadpool_info()] for _ in items]

    async def ask() -> list[int]:
        batcher: Batcher[int, list[int]] = Batcher(pools, initializer=lambda: limit_threads(1))
        batcher.start()
        answer = await batcher.submit(0)
        await batcher.close()
        return answer

    seen = _run(ask())
    assert seen and set(seen) == {1}
