"""Prometheus series of one serving app, labelled by model, version, semver, arm and runtime
(``onnx`` for a compiled copy, ``pyfunc`` for the model's own flavor).

Each app owns its ``CollectorRegistry`` (two apps in one process never mix their series).
Label sets are bound once per served version and arm, so a request pays no label look-up.

Several worker processes (``modelyard serve --workers N``) share one set of series through
prometheus-client's multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` names a folder (``serve
--workers`` sets it for its own workers; this module only reads it), every process writes its
values there and ``/metrics``, whichever worker answers it, sums them all.

>>> metrics = Metrics("churn")
>>> bound = metrics.bind("3", "1.2.0", "production", "onnx")
>>> bound.observe(latency=0.004, rows=1, confidence=[0.93])
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client import CollectorRegistry

LABELS = ("model", "version", "semver", "arm", "runtime")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The folder prometheus-client's multiprocess mode writes to, when it is on."""
    from prometheus_client import values

    folder = os.environ.get(MULTIPROC_ENV)  # read, never written
    # The mode is chosen once, when prometheus_client is first imported in this process.
    on = values.ValueClass is not values.MutexValue
    return folder if on and folder and os.path.isdir(folder) else None


class Metrics:
    def __init__(self, model: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.model = model
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("modelyard_requests", "Requests answered (any outcome)",
                                LABELS, registry=self.registry)
        self.errors = Counter("modelyard_errors", "Requests answered with an error",
                              (*LABELS, "error"), registry=self.registry)
        self.rows = Counter("modelyard_predicted_rows", "Rows predicted", LABELS,
                            registry=self.registry)
        self.latency = Histogram("modelyard_request_latency_seconds",
                                 "Time from request to answer", LABELS,
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch = Histogram("modelyard_batch_size", "Rows per model call", LABELS,
                               buckets=_BATCH_BUCKETS, registry=self.registry)
        # Observed a request at a time (a 100-row request is 100 observations): a collector of
        # its own, see ``Tally``.
        self.confidence = Tallies(_CONFIDENCE, _CONFIDENCE_HELP, _CONFIDENCE_BUCKETS)
        self.registry.register(self.confidence)
        # Across worker processes: 1 while any live worker serves the version on that arm.
        self.info = Gauge("modelyard_model_info", "1 for each version an arm serves now",
                          (*LABELS, "stage"), registry=self.registry,
                          multiprocess_mode="livemax")
        self.reload_failures = Counter("modelyard_reload_failures",
                                       "Reloads refused (the old version kept serving)",
                                       ("model", "arm", "version", "error"),
                                       registry=self.registry)
        self.shadow_dropped = Counter("modelyard_shadow_dropped",
                                      "Mirrored requests dropped because the shadow lagged",
                                      ("model",), registry=self.registry)
        self._multiprocess = multiprocess_dir()
        self._merged: CollectorRegistry | None = None

    def bind(self, version: str, semver: str, arm: str, runtime: str = "pyfunc") -> Bound:
        return Bound(self, (self.model, version, semver, arm, runtime))

    def error(self, labels: tuple[str, ...], error: str) -> None:
        self.requests.labels(*labels).inc()
        self.errors.labels(*labels, error).inc()


    def render(self) -> tuple[bytes, str]:
        """The exposition text: this app's series, or every worker's summed (multiprocess)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self._multiprocess is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        if self._merged is None:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            self._merged = CollectorRegistry()
            MultiProcessCollector(self._merged, path=self._multiprocess)
        return generate_latest(self._merged), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """This process stops serving: its live gauges leave the merged view."""
        if self._multiprocess is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid(), self._multiprocess)


class Bound:
    """The series of one (version, arm): bound children, no per-request label work."""

    def __init__(self, metrics: Metrics, labels: tuple[str, ...]) -> None:
        self.metrics = metrics
        self.labels = labels
        self._requests = metrics.requests.labels(*labels)
        self._rows = metrics.rows.labels(*labels)
        self._latency = metrics.latency.labels(*labels)
        self._batch = metrics.batch.labels(*labels)
        self._confidence = metrics.confidence.labels(labels)

    def observe(self, *, latency: float, rows: int, confidence: list[float] | None) -> None:
        self._requests.inc()
        self._rows.inc(rows)
        self._latency.observe(latency)
        if confidence:
            self._confidence.observe_many(confidence)

    def batch(self, rows: int) -> None:
        self._batch.observe(rows)

    def error(self, error: str, latency: float | None = None) -> None:
        self._requests.inc()
        self.metrics.errors.labels(*self.labels, error).inc()
        if latency is not None:
            self._latency.observe(latency)

    def serving(self, stage: str, on: bool) -> None:
        self.metrics.info.labels(*self.labels, stage).set(1 if on else 0)


_CONFIDENCE = "modelyard_prediction_confidence"
_CONFIDENCE_HELP = "Highest class probability of each classifier prediction"


class Tally:
    """One label set of a histogram that takes a request's values at once.

    prometheus-client's ``Histogram.observe`` takes one value, and each call takes a lock (and
    in multiprocess mode writes a memory-mapped file) twice: 100 confidences of a 100-row
    request cost about 0.3 ms of a worker's CPU, a fifth of the whole request. Here the values
    are counted per bucket first and each bucket is written once. The values are
    prometheus-client's own (``values.ValueClass``), so the multiprocess files, and the
    ``/metrics`` that sums them across workers, are the same as a ``Histogram``'s."""

    def __init__(self, name: str, help_text: str, bounds: tuple[float, ...],
                 labels: tuple[str, ...]) -> None:
        from prometheus_client import values
        from prometheus_client.utils import floatToGoString

        self.bounds = [*bounds, float("inf")]
        self.labels = labels
        make = values.ValueClass
        self._buckets = [make("histogram", name, f"{name}_bucket", (*LABELS, "le"),
                              (*labels, floatToGoString(b)), help_text) for b in self.bounds]
        self._sum = make("histogram", name, f"{name}_sum", LABELS, labels, help_text)

    def observe_many(self, values: list[float]) -> None:
        from bisect import bisect_left

        counts = [0] * len(self.bounds)
        for value in values:
            counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)
        self._sum.inc(float(sum(values)))

    def sample(self) -> tuple[list[tuple[str, float]], float]:
        """(cumulative buckets, sum), as the exposition format wants them."""
        from prometheus_client.utils import floatToGoString

        total, buckets = 0.0, []
        for bound, bucket in zip(self.bounds, self._buckets, strict=True):
            total += bucket.get()
            buckets.append((floatToGoString(bound), total))
        return buckets, self._sum.get()


class Tallies:
    """A collector of ``Tally`` label sets: this process's ``/metrics`` (in multiprocess mode
    the files are read instead, by prometheus-client's own collector)."""

    def __init__(self, name: str, help_text: str, bounds: tuple[float, ...]) -> None:
        self.name, self.help, self.bounds = name, help_text, bounds
        self._children: dict[tuple[str, ...], Tally] = {}

    def labels(self, labels: tuple[str, ...]) -> Tally:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = Tally(self.name, self.help, self.bounds, labels)
        return child

    def describe(self) -> list[Any]:
        from prometheus_client.core import HistogramMetricFamily

        return [HistogramMetricFamily(self.name, self.help, labels=LABELS)]

    def collect(self) -> list[Any]:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(self.name, self.help, labels=LABELS)
        for labels, child in list(self._children.items()):
            buckets, total = child.sample()
            family.add_metric(list(labels), buckets, total)
        return [family]


def no_labels(model: str) -> tuple[str, ...]:
    return (model, "", "", "", "")


__all__ = ["Bound", "Metrics", "no_labels"]
