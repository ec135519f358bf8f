"""What the serving app runs on: arms that follow their references, batchers, hot reload.

``Runtime`` holds one ``Slot`` per followed reference (each A/B or canary arm, and the shadow).
A slot's ``live`` is the version it serves now: the verified model, its scorer, its batcher
and its bound metrics. A background task asks where each reference points every
``poll_interval`` seconds (a cheap alias look-up); when it moved, the new version is loaded and
verified in a worker thread, off the request path, and then swapped in with one assignment.
Requests already queued on the old version's batcher are still answered by it; new requests
go to the new one, so a promotion or a rollback fails no request. A reload that fails keeps
the old version serving, and the slot says so (``status()``, the log, a metric).

A canary ramp with no start of its own (``anchor_ramp``) is measured from the start the vault
records for it (``ModelSource.ramp_start``), read when the canary version is loaded, so
replicas started hours apart give a key the same arm; until the vault answers, the ramp runs
from this process's start and the next poll asks again.

>>> runtime = Runtime(ModelSource(yard, "churn"), Router([Arm("production", 100)]))
>>> await runtime.start()
>>> outcome = await runtime.serve(payload, key=None, request_id="r1", started=time.perf_counter())
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from modelyard.errors import YardError
from modelyard.serving.batching import Batcher
from modelyard.serving.capture import SHADOW, CaptureLog
from modelyard.serving.errors import NotReady, PredictionFailed
from modelyard.serving.metrics import Bound, Metrics
from modelyard.serving.payload import Block, Payload
from modelyard.serving.routing import Router, ramp_id
from modelyard.serving.scoring import Answer, Scorer, limit_threads
from modelyard.serving.source import ModelSource, ServedModel

log = logging.getLogger("modelyard.serving")

_MAX_SHADOW_IN_FLIGHT = 256
_REMEMBERED = 10_000


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Live:
    """One loaded version as an arm serves it."""

    served: ServedModel
    scorer: Scorer
    batcher: Batcher[Block, Answer]
    bound: Bound
    loaded_at: str = field(default_factory=_now_iso)

    @property
    def version(self) -> int:
        return self.served.version


class Slot:
    """A followed reference: an arm (or the shadow) and the version it serves now."""

    def __init__(self, ref: str, arm: str, *, fixed: bool) -> None:
        self.ref = ref
        self.arm = arm
        self.fixed = fixed
        self.live: Live | None = None
        self.reload_error: dict[str, Any] | None = None
        self.failures = 0
        self.retry_at = 0.0

    def status(self) -> dict[str, Any]:
        live = self.live
        return {
            "arm": self.arm, "ref": self.ref,
            "version": live.version if live else None,
            "semver": live.served.semver if live else None,
            "stage": live.served.stage if live else None,
            "manifest_sha256": live.served.manifest_sha256 if live else None,
            "verified": live.served.verified if live else False,
            "runtime": live.scorer.runtime if live else None,
            "runtime_reason": live.scorer.reason if live else None,
            "parity": (live.served.compiled.parity
                       if live and live.served.compiled is not None else None),
            "loaded_at": live.loaded_at if live else None,
            "reload_error": self.reload_error,
        }


@dataclass
class Outcome:
    """What one request got: the arm and version that answered, and the answer or error."""

    arm: str
    live: Live | None
    predictions: list[Any] | None = None
    confidence: list[float] | None = None
    error: BaseException | None = None


class Runtime:
    def __init__(
        self,
        source: ModelSource,
        router: Router,
        *,
        shadow: str | None = None,
        metrics: Metrics | None = None,
        capture: CaptureLog | None = None,
        batching: bool = True,
        max_batch: int = 64,
        max_wait: float = 0.002,
        poll_interval: float = 5.0,
        confidence: bool = True,
        predict_inline: bool | None = None,
        threads: int | None = None,
        anchor_ramp: bool = False,
    ) -> None:
        self.source = source
        self.threads = threads  # native threads a pyfunc model may use in this worker
        self.name = source.name
        self.router = router
        self.metrics = metrics or Metrics(source.name)
        self.capture = capture or CaptureLog(None, source.name)
        self.batching = batching
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.poll_interval = poll_interval
        self.confidence = confidence
        self.predict_inline = predict_inline
        self.slots: dict[str, Slot] = {
            ref: Slot(ref, ref, fixed=source.is_fixed(ref)) for ref in router.refs
        }
        self.shadow = Slot(shadow, SHADOW, fixed=source.is_fixed(shadow)) if shadow else None
        self._poller: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._reload_lock = asyncio.Lock()
        # The ramp id the router is anchored on ("" until the vault answered); None: the
        # ramp's start was given (or there is no ramp).
        self._anchored: str | None = "" if anchor_ramp and router.canary is not None else None

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every arm (verified); a failure here stops the server from starting."""
        for slot in self.slots.values():
            version = await asyncio.to_thread(self.source.holder, slot.ref)
            if version is None:
                raise NotReady(name=self.name, ref=slot.ref)
            await self._swap(slot, await self._load(slot, version))
        await self._anchor()
        if self.shadow is not None:
            await self._follow(self.shadow)  # a shadow that fails to load never stops serving
        self.capture.start()
        if self.poll_interval > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._background:
            await asyncio.wait(list(self._background), timeout=5.0)
        for slot in self.all_slots():
            if slot.live is not None:
                await slot.live.batcher.close()
        await self.capture.close()

    def all_slots(self) -> list[Slot]:
        return [*self.slots.values(), *([self.shadow] if self.shadow else [])]

    @property
    def ready(self) -> bool:
        return all(slot.live is not None for slot in self.slots.values())

    # -- hot reload ---------------------------------------------------------------------------
    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.reload()
            except Exception:  # the poll must outlive any one failure
                log.exception("reload poll failed for %s", self.name)

    async def reload(self) -> None:
        """Check every followed reference once and swap in versions that moved."""
        async with self._reload_lock:
            for slot in self.all_slots():
                await self._follow(slot)
            await self._anchor()

    async def _anchor(self) -> None:
        """Anchor the canary ramp on the start the vault records for its current version."""
        canary = self.router.canary
        if self._anchored is None or canary is None:
            return
        live = self.slots[canary.ref].live
        if live is None:
            return
        main = self.router.refs[1]
        ramp = ramp_id(self.name, main, canary, live.version)
        if ramp == self._anchored:
            return
        about = {"model": self.name, "main": main, "canary": canary.ref,
                 "version": live.version, "start": canary.start, "end": canary.end,
                 "duration_s": canary.duration}
        try:
            started = await asyncio.to_thread(self.source.ramp_start, ramp, time.time(), about)
        except YardError as exc:
            log.warning("%s: the canary ramp's start is not readable from the vault (%s); "
                        "measuring it from this replica's start until it is", self.name,
                        exc.message)
            return
        self.router.anchor(started)
        self._anchored = ramp

    async def _follow(self, slot: Slot) -> None:
        if slot.fixed and slot.live is not None:
            return
        try:
            version = await asyncio.to_thread(self.source.holder, slot.ref)
        except YardError as exc:
            log.warning("%s@%s: could not look the reference up (%s); still serving %s",
                        self.name, slot.ref, exc.message,
                        slot.live.version if slot.live else "nothing")
            return
        if version is None:
            if slot.live is not None and slot.reload_error is None:
                log.warning("%s@%s: the reference points nowhere now; still serving v%s",
                            self.name, slot.ref, slot.live.served.semver)
            return
        if slot.live is not None and slot.live.version == version:
            if slot.reload_error is not None:
                log.info("%s@%s: back on v%s; the failed reload no longer matters",
                         self.name, slot.ref, slot.live.served.semver)
                slot.reload_error, slot.failures = None, 0
            return
        failed = slot.reload_error
        if failed is not None and failed.get("version") == version and time.monotonic() < (
            slot.retry_at
        ):
            return
        try:
            live = await self._load(slot, version)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old version serving
            self._reload_failed(slot, version, exc)
            return
        previous = slot.live
        await self._swap(slot, live)
        if previous is not None:
            log.info("%s@%s: now serving v%s (#%d), was v%s (#%d)", self.name, slot.ref,
                     live.served.semver, live.version, previous.served.semver, previous.version)

    def _reload_failed(self, slot: Slot, version: int, exc: BaseException) -> None:
        message = exc.message if isinstance(exc, YardError) else f"{type(exc).__name__}"
        first = slot.reload_error is None or slot.reload_error.get("version") != version
        slot.failures = slot.failures + 1 if not first else 1
        slot.retry_at = time.monotonic() + min(300.0, self.poll_interval * 2 ** slot.failures)
        slot.reload_error = {"version": version, "error": type(exc).__name__,
                             "message": message, "at": _now_iso()}
        self.metrics.reload_failures.labels(self.name, slot.arm, str(version),
                                            type(exc).__name__).inc()
        serving = f"v{slot.live.served.semver} (#{slot.live.version})" if slot.live else "nothing"
        if first:
            log.warning("%s@%s: refusing #%d: %s: %s; still serving %s", self.name, slot.ref,
                        version, type(exc).__name__, message, serving)
        if not isinstance(exc, YardError):
            log.debug("reload failure detail", exc_info=exc)

    async def _load(self, slot: Slot, version: int) -> Live:
        served = self._loaded(version)
        if served is None:
            served = await asyncio.to_thread(self.source.load, version)
        scorer = Scorer(served, confidence=self.confidence)
        bound = self.metrics.bind(str(served.version), served.semver, slot.arm, scorer.runtime)
        threads = self.threads
        batcher: Batcher[Block, Answer] = Batcher(
            scorer.score, max_batch=self.max_batch, max_wait=self.max_wait,
            size=lambda block: block.n, on_batch=bound.batch, enabled=self.batching,
            inline=scorer.fast if self.predict_inline is None else self.predict_inline,
            initializer=None if scorer.fast else (lambda: limit_threads(threads)),
        )
        batcher.start()
        return Live(served, scorer, batcher, bound)

    def _loaded(self, version: int) -> ServedModel | None:
        """Another slot's copy of the same version (arms on one version share the model)."""
        for slot in self.all_slots():
            if slot.live is not None and slot.live.version == version:
                return slot.live.served
        return None

    async def _swap(self, slot: Slot, live: Live) -> None:
        previous = slot.live
        slot.live = live  # the one assignment every new request sees
        slot.reload_error, slot.failures = None, 0
        live.bound.serving(live.served.stage, True)
        if previous is not None:
            previous.bound.serving(previous.served.stage, False)
            # Queued requests are answered by the old version before its batcher stops.
            self._spawn(previous.batcher.close())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- answering ----------------------------------------------------------------------------
    def route(self, key: str | None) -> Slot:
        return self.slots[self.router.pick(key)]

    def slot_of(self, version: str) -> Slot | None:
        """The arm serving ``version`` (a version number or a semver) now, if any."""
        text = version.strip().lstrip("v")
        for slot in self.slots.values():
            live = slot.live
            if live is not None and text in (str(live.version), live.served.semver):
                return slot
        return None

    async def serve(self, payload: Payload, *, key: str | None, request_id: str,
                    started: float, slot: Slot | None = None) -> Outcome:
        """Answer one parsed request; records metrics, capture and the shadow call.
        ``slot``: that arm answers (a request naming its version), not the router's pick."""
        slot = slot or self.route(key)
        live = slot.live
        if live is None:
            error = NotReady(name=self.name, ref=slot.ref)
            return Outcome(slot.arm, None, error=error)
        try:
            block = payload.block(live.served.columns)
            predictions, confidence = await live.batcher.submit(block)
        except YardError as exc:
            self._record_error(live, slot.arm, exc, request_id, started)
            return Outcome(slot.arm, live, error=exc)
        except Exception as exc:  # noqa: BLE001 - the model failed: logged, not returned
            log.error("%s v%s failed to predict (request %s): %s: %s", self.name,
                      live.served.semver, request_id, type(exc).__name__, exc)
            failed = PredictionFailed(cause=type(exc).__name__, request_id=request_id)
            self._record_error(live, slot.arm, failed, request_id, started)
            return Outcome(slot.arm, live, error=failed)
        latency = time.perf_counter() - started
        live.bound.observe(latency=latency, rows=block.n, confidence=confidence)
        self._remember(request_id, live, slot.arm, predictions)
        capture = self.capture
        if capture.rate and capture.sampled():  # one tuple appended; encoded off this path
            capture.keep(time.time(), request_id, live.version, live.served.semver, slot.arm,
                         latency, block.columns, block.rows, predictions, confidence)
        if self.shadow is not None:
            self.mirror(payload, request_id)
        return Outcome(slot.arm, live, predictions, confidence)

    def _record_error(self, live: Live, arm: str, exc: YardError, request_id: str,
                      started: float) -> None:
        latency = time.perf_counter() - started
        live.bound.error(type(exc).__name__, latency)
        if self.capture.sampled():
            self.capture.add({
                "kind": "prediction", "ts": time.time(), "request_id": request_id,
                "model": self.name, "version": live.version, "semver": live.served.semver,
                "arm": arm, "shadow": arm == SHADOW, "latency_ms": round(latency * 1000, 3),
                "status": exc.http_status, "error": type(exc).__name__,
            })

    def mirror(self, payload: Payload, request_id: str) -> None:
        """Send the request to the shadow version too, off the request path."""
        shadow = self.shadow
        if shadow is None or shadow.live is None:
            return
        if len(self._background) >= _MAX_SHADOW_IN_FLIGHT:
            self.metrics.shadow_dropped.labels(self.name).inc()
            return
        self._spawn(self._shadow_call(shadow.live, payload, request_id))

    async def _shadow_call(self, live: Live, payload: Payload, request_id: str) -> None:
        started = time.perf_counter()
        try:
            block = payload.block(live.served.columns)
            predictions, confidence = await live.batcher.submit(block)
        except YardError as exc:
            self._record_error(live, SHADOW, exc, request_id, started)
            return
        except Exception as exc:  # noqa: BLE001 - a shadow failure is recorded, never raised
            self._record_error(live, SHADOW, PredictionFailed(
                cause=type(exc).__name__, request_id=request_id), request_id, started)
            return
        latency = time.perf_counter() - started
        live.bound.observe(latency=latency, rows=block.n, confidence=confidence)
        if self.capture.sampled():
            self.capture.keep(time.time(), request_id, live.version, live.served.semver, SHADOW,
                              latency, block.columns, block.rows, predictions, confidence)

    # -- feedback -----------------------------------------------------------------------------
    def _remember(self, request_id: str, live: Live, arm: str, predictions: list[Any]) -> None:
        recent = self._recent
        recent[request_id] = {"version": live.version, "semver": live.served.semver,
                              "arm": arm, "outputs": predictions}
        if len(recent) > _REMEMBERED:
            recent.popitem(last=False)

    def feedback(self, request_id: str, *, label: Any = None, value: Any = None) -> bool:
        """Record the truth for an answered request; True when this process answered it."""
        known = self._recent.get(request_id)
        record: dict[str, Any] = {"kind": "feedback", "ts": time.time(),
                                  "request_id": request_id, "model": self.name}
        if label is not None:
            record["label"] = label
        if value is not None:
            record["value"] = value
        if known is not None:
            record.update(known)
        self.capture.add(record)
        return known is not None

    # -- describing ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        arms = []
        weights = self.router.weights()
        for ref, slot in self.slots.items():
            arms.append({**slot.status(), "weight": round(weights.get(ref, 0.0), 3)})
        return {
            "model": self.name,
            "ready": self.ready,
            "reload_failed": any(s.reload_error for s in self.all_slots()),
            "arms": arms,
            "shadow": self.shadow.status() if self.shadow else None,
            "canary": None if self.router.canary is None else {
                "ref": self.router.canary.ref, "start": self.router.canary.start,
                "end": self.router.canary.end, "duration_s": self.router.canary.duration,
                "started_at": datetime.fromtimestamp(self.router.started_at, timezone.utc)
                .isoformat(timespec="milliseconds"),
                # where the start comes from: the vault's record, the replica's own clock
                # while the vault has not answered, or the operator (--canary-start)
                "anchor": {None: "given", "": "this replica"}.get(self._anchored, "vault"),
            },
            "batching": {"enabled": self.batching, "max_batch": self.max_batch,
                         "max_wait_ms": self.max_wait * 1000},
            "threads": self.threads,
            "capture_rate": self.capture.rate,
            "poll_interval_s": self.poll_interval,
        }
