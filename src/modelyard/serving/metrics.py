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
from typing import TYPE_CHECKING

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
        self.confidence = Histogram("modelyard_prediction_confidence",
                                    "Highest class probability of each classifier prediction",
                                    LABELS, buckets=_CONFIDENCE_BUCKETS, registry=self.registry)
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
        self._confidence = metrics.confidence.labels(*labels)

    def observe(self, *, latency: float, rows: int, confidence: list[float] | None) -> None:
        self._requests.inc()
        self._rows.inc(rows)
        self._latency.observe(latency)
        if confidence:
            observe = self._confidence.observe
            for value in confidence:
                observe(value)

    def batch(self, rows: int) -> None:
        self._batch.observe(rows)

    def error(self, error: str, latency: float | None = None) -> None:
        self._requests.inc()
        self.metrics.errors.labels(*self.labels, error).inc()
        if latency is not None:
            self._latency.observe(latency)

    def serving(self, stage: str, on: bool) -> None:
        self.metrics.info.labels(*self.labels, stage).set(1 if on else 0)


def no_labels(model: str) -> tuple[str, ...]:
    return (model, "", "", "", "")


__all__ = ["Bound", "Metrics", "no_labels"]
