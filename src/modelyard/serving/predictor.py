"""In-process predictions with the server's verified loading, hot reload and tracking.

For code that calls the model directly (a batch job, an RCA system) rather than over HTTP:
``Predictor`` loads ``NAME@REF`` verified, follows the alias from a background thread (a
failed reload keeps the old version and says so), scores through the same scorer as the
server, keeps Prometheus series in its own registry and writes sampled capture records to the
vault, so ``monitor`` and ``ab report`` see these predictions too.

>>> with Predictor(yard, "churn", capture_rate=0.1) as predictor:
...     result = predictor.predict(frame)
...     result.predictions, result.version, result.semver
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from modelyard.errors import YardError
from modelyard.serving.capture import CaptureLog
from modelyard.serving.errors import NotReady
from modelyard.serving.metrics import Bound, Metrics
from modelyard.serving.payload import Payload
from modelyard.serving.scoring import Scorer
from modelyard.serving.source import ModelSource, ServedModel, store_of

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.serving.source import Registry

log = logging.getLogger("modelyard.serving")


@dataclass
class Prediction:
    predictions: list[Any]
    version: int
    semver: str
    request_id: str
    confidence: list[float] | None
    latency_ms: float


@dataclass
class _Current:
    served: ServedModel
    scorer: Scorer
    bound: Bound


class Predictor:
    """Predictions from ``name@ref``, reloaded when the reference moves."""

    def __init__(
        self,
        yard: Registry,
        name: str,
        ref: str = "production",
        *,
        poll_interval: float = 5.0,
        capture_rate: float = 0.0,
        mask: Iterable[str] = (),
        confidence: bool = True,
        arm: str | None = None,
        follow_unaudited: bool = False,
        runtime: str = "auto",
    ) -> None:
        self.name = name
        self.ref = str(ref)
        self.arm = arm or self.ref
        self.poll_interval = poll_interval
        self._confidence = confidence
        self._source = ModelSource(yard, name, follow_unaudited=follow_unaudited,
                                   purpose="predictor", runtime=runtime)
        self.metrics = Metrics(name)
        self.capture = CaptureLog(store_of(yard), name, rate=capture_rate, mask=mask)
        self._capture_lock = threading.Lock()
        self.reload_error: dict[str, Any] | None = None
        self._stop = threading.Event()
        version = self._source.holder(self.ref)
        if version is None:
            raise NotReady(name=name, ref=self.ref)
        self._current = self._make(self._source.load(version))
        self._thread: threading.Thread | None = None
        if poll_interval > 0:
            self._thread = threading.Thread(target=self._follow, name=f"modelyard-{name}",
                                            daemon=True)
            self._thread.start()

    # -- predicting ---------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._current.served.version

    @property
    def semver(self) -> str:
        return self._current.served.semver

    @property
    def runtime(self) -> str:
        """``onnx`` (the version's compiled copy) or ``pyfunc``."""
        return self._current.scorer.runtime

    def predict(self, data: Any) -> Prediction:
        """Predict rows: a pandas DataFrame, a list of records, or one record (a dict)."""
        started = time.perf_counter()
        current = self._current  # one read: a reload never changes a call half-way
        request_id = uuid.uuid4().hex
        try:
            block = _payload(data).block(current.served.columns)
            [(predictions, confidence)] = current.scorer.score([block])
        except YardError as exc:
            current.bound.error(type(exc).__name__, time.perf_counter() - started)
            raise
        latency = time.perf_counter() - started
        current.bound.observe(latency=latency, rows=block.n, confidence=confidence)
        current.bound.batch(block.n)
        if self.capture.sampled():
            with self._capture_lock:
                self.capture.keep(time.time(), request_id, current.served.version,
                                  current.served.semver, self.arm, latency, block.columns,
                                  block.rows, predictions, confidence)
        return Prediction(predictions, current.served.version, current.served.semver,
                          request_id, confidence, round(latency * 1000, 3))

    # -- following the reference ----------------------------------------------------------------
    def reload(self) -> bool:
        """Check the reference now; True when another version was swapped in."""
        try:
            version = self._source.holder(self.ref)
        except YardError as exc:
            log.warning("%s@%s: look-up failed (%s); still serving v%s", self.name, self.ref,
                        exc.message, self.semver)
            return False
        if version is None or version == self.version:
            if version == self.version:
                self.reload_error = None
            return False
        if self.reload_error and self.reload_error.get("version") == version:
            return False  # refused already; a new version or a move back clears this
        try:
            fresh = self._make(self._source.load(version))
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old version
            message = exc.message if isinstance(exc, YardError) else type(exc).__name__
            self.reload_error = {"version": version, "error": type(exc).__name__,
                                 "message": message,
                                 "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            self.metrics.reload_failures.labels(self.name, self.arm, str(version),
                                                type(exc).__name__).inc()
            log.warning("%s@%s: refusing #%d: %s: %s; still serving v%s", self.name, self.ref,
                        version, type(exc).__name__, message, self.semver)
            return False
        previous, self._current = self._current, fresh
        previous.bound.serving(previous.served.stage, False)
        self.reload_error = None
        log.info("%s@%s: now serving v%s (#%d), was v%s", self.name, self.ref,
                 fresh.served.semver, fresh.served.version, previous.served.semver)
        return True

    def _follow(self) -> None:
        last_flush = time.monotonic()
        while not self._stop.wait(self.poll_interval):
            self.reload()
            if time.monotonic() - last_flush >= self.capture.flush_every:
                self.flush()
                last_flush = time.monotonic()

    def _make(self, served: ServedModel) -> _Current:
        scorer = Scorer(served, confidence=self._confidence)
        bound = self.metrics.bind(str(served.version), served.semver, self.arm, scorer.runtime)
        bound.serving(served.stage, True)
        return _Current(served, scorer, bound)

    # -- shutting down ------------------------------------------------------------------------
    def flush(self) -> None:
        """Write buffered capture records now."""
        with self._capture_lock:
            written = self.capture.seal()
        written.result()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def _payload(data: Any) -> Payload:
    if isinstance(data, dict):
        return Payload(records=[data])
    if isinstance(data, list):
        return Payload(records=data) if all(isinstance(r, dict) for r in data) else Payload(
            rows=data)
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        return Payload(rows=data.values.tolist(), columns=[str(c) for c in data.columns])
    from modelyard.errors import InvalidInput

    raise InvalidInput("predict takes a pandas DataFrame, a list of records or one record")
