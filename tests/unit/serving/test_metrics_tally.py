"""The confidence histogram takes a request's values at once and shows exactly what
prometheus-client's own Histogram shows for the same values, one at a time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.serving.metrics import _CONFIDENCE_BUCKETS, LABELS, Tallies

LABELLED = ("churn", "3", "1.2.0", "production", "onnx")
_confidences = st.lists(st.sampled_from([0.0, 0.5, 0.55, 0.6, 0.95, 0.99, 1.0, 1.5])
                        | st.floats(min_value=0.0, max_value=1.0), max_size=40)


def _series(registry: object) -> dict[str, float]:
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()  # type: ignore[arg-type]
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("c_") and not line.startswith("c_created")}


@settings(max_examples=60, deadline=None)
@given(st.lists(_confidences, min_size=1, max_size=4))
def test_tally_shows_what_a_histogram_shows(requests: list[list[float]]) -> None:
    from prometheus_client import CollectorRegistry, Histogram

    theirs, ours = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("c", "h", LABELS, buckets=_CONFIDENCE_BUCKETS, registry=theirs)
    tallies = Tallies("c", "h", _CONFIDENCE_BUCKETS)
    ours.register(tallies)
    for values in requests:
        for value in values:
            histogram.labels(*LABELLED).observe(value)
        if values:
            tallies.labels(LABELLED).observe_many(values)
    want, got = _series(theirs), _series(ours)
    if not any(requests):
        want = {}  # a Histogram shows a label set once it is touched; a tally when observed
        got = {}
    assert set(got) == set(want)
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key
