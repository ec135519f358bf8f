"""The dashboard's pure parts: SVG charts (every finite value drawn once, every label
escaped) and paging (any page number is a page, a clean 400 or a clean 404)."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from modelyard.errors import InvalidInput, NotFound
from modelyard.ui.charts import line_chart
from modelyard.ui.paging import MAX_PAGE, MlflowLinks, page_number, paged, version_number

values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                   st.floats(-1e6, 1e6))
labels = st.text(max_size=20)


@hsettings(max_examples=200, deadline=None, database=None)
@given(series=st.dictionaries(labels, st.lists(st.tuples(labels, values), max_size=12),
                              max_size=4),
       marked=st.lists(labels, max_size=3))
def test_a_chart_draws_each_finite_value_once_and_escapes_every_label(
        series: dict[str, list[tuple[str, float | None]]], marked: list[str]) -> None:
    chart = line_chart(series, marked=marked, title="<b>t</b>")
    finite = sum(1 for points in series.values() for _, y in points
                 if y is not None and math.isfinite(y))
    assert chart.points == finite
    root = ET.fromstring(chart.svg)  # well-formed: no label broke out of its element
    circles = [e for e in root.iter() if e.tag.endswith("circle")]
    assert len(circles) == finite
    assert "<script" not in chart.svg.lower() and "<b>" not in chart.svg


def test_the_production_holder_is_marked_and_axes_read_round_numbers() -> None:
    chart = line_chart({"accuracy": [("v1.0.0", 0.81), ("v1.1.0", 0.84), ("v2.0.0", 0.86)]},
                       marked={"v1.1.0"})
    assert chart.points == 3 and 'class="marked"' in chart.svg
    ticks = re.findall(r'class="tick">([-0-9.e]+)</text>', chart.svg)
    assert ticks and all(len(t) <= 4 for t in ticks), ticks  # 0.8, 0.82, ... not 0.8028
    extreme = line_chart({"x": [("a", -1.7e308), ("b", 1.7e308), ("c", 0.0)]})
    assert extreme.points == 3 and "nan" not in extreme.svg and "inf" not in extreme.svg
    empty = line_chart({"accuracy": [("v1", None)]})
    assert empty.points == 0 and "nothing recorded yet" in empty.svg


@hsettings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=15))
def test_a_page_number_is_a_number_in_range_or_invalid_input(text: str) -> None:
    try:
        number = page_number(text)
    except InvalidInput:
        assert not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_PAGE) \
            or len(text) > 7
        return
    assert 1 <= number <= MAX_PAGE
    assert text == "" or number == int(text)


@hsettings(max_examples=200, deadline=None, database=None)
@given(total=st.integers(0, 200), page=st.integers(1, MAX_PAGE))
def test_a_page_past_the_end_is_not_found(total: int, page: int) -> None:
    items = list(range(total))
    pages = max(1, -(-total // 25))
    if page > pages:
        with pytest.raises(NotFound, match=f"no page {page}"):
            paged(items, page)
        return
    shown = paged(items, page, {"model": "m"})
    assert shown.items == items[(page - 1) * 25:page * 25]
    assert shown.query(page) == f"?model=m&page={page}"


def test_version_numbers_and_links() -> None:
    assert version_number("") is None and version_number("12") == 12
    for bad in ("0", "-1", "x", "1" * 13, "١٢"):
        with pytest.raises(InvalidInput):
            version_number(bad)
    links = MlflowLinks("http://mlflow:5000")
    assert links.version("a.b", 3) == "http://mlflow:5000/#/models/a.b/versions/3"
    assert links.model("<x>") == "http://mlflow:5000/#/models/%3Cx%3E"
    assert links.run(None) is None
    assert links.run("abc", "7") == "http://mlflow:5000/#/experiments/7/runs/abc"
