"""Sampled inference records, written in batches to the object store, as SageMaker captures.

The request path only appends a tuple to a list (when the sample says so). Every ``chunk``
records the list is handed to one writer thread, which turns the tuples into records, masks
the named input fields, encodes them as JSON lines and feeds them to a running gzip stream per
UTC day; every ``flush_every`` seconds (and when a file holds ``max_records``, and at
shutdown) it closes the stream and writes
``capture/NAME/date=YYYY-MM-DD/<replica>-<sequence>.jsonl.gz``. So the buffer never holds
more than a chunk of requests' rows, the encoding costs the same small amount at every flush,
and nothing of it runs inside a request.

Replicas on many machines (and each worker process of one) write their own files, so they
share one record without coordinating: the replica id (host, process id and a random part, so
a restarted container with the same host name and pid 1 is still a new replica) names every
file and rides in every record, and each replica numbers its files from 1, so a missing file
shows as a gap. A file the store refused is kept and written again at the next flush (up to
``max_unsent_bytes``), so a short store outage loses nothing.
The chunk is short (32) because rows held longer survive the garbage collector's young
generation and make its collections dearer: measured back to back, +11% server CPU per
request with chunks of 256, +4% with 32.

Record kinds: ``prediction`` (inputs, outputs, confidence, version, semver, arm, latency,
status, request id; ``shadow`` true for mirrored calls) and ``feedback`` (request id with the
true ``label`` or ``value``).

Not thread-safe on the request side: one event loop calls ``keep``/``add``, or callers on
many threads hold one lock around them (``Predictor`` does).

>>> log = CaptureLog(store, "churn", rate=0.1, mask=("email",))
>>> log.keep(time.time(), "r1", 3, "1.2.0", "production", 0.004, columns, rows, preds, None)
>>> read_records(store, "churn", since=time.time() - 3600)
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import random
import re
import secrets
import socket
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from modelyard.serving.payload import dumps
from modelyard.serving.source import capture_prefix

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.store.storage import ObjectStore

log = logging.getLogger("modelyard.serving")

MASK = "***"
SHADOW = "shadow"
MAX_UNSENT_BYTES = 64 * 1024 * 1024  # refused files kept for the next flush, at most
_UNSAFE = re.compile(r"[^A-Za-z0-9.\-]+")


def replica_id() -> str:
    """This process's name in capture files: ``HOST-PID-RANDOM`` (unique across restarts)."""
    host = _UNSAFE.sub("-", socket.gethostname()).strip("-.")[:48] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


class CaptureLog:
    """Buffer of sampled records, encoded and written by one thread off the request path."""

    def __init__(
        self,
        store: ObjectStore | None,
        name: str,
        *,
        rate: float = 0.0,
        mask: Iterable[str] = (),
        flush_every: float = 5.0,
        max_records: int = 20_000,
        chunk: int = 32,
        rng: random.Random | None = None,
        replica: str | None = None,
        max_unsent_bytes: int = MAX_UNSENT_BYTES,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            from modelyard.errors import InvalidInput

            raise InvalidInput(f"capture rate must be between 0 and 1, got {rate}")
        self.store = store
        self.name = name
        self.rate = rate
        self.mask = frozenset(mask)
        self.flush_every = flush_every
        self.max_records = max(1, int(max_records))
        self.chunk = max(1, int(chunk))
        self._rng = rng or random.Random()
        self.replica = _UNSAFE.sub("-", replica)[:96] if replica else replica_id()
        self.max_unsent_bytes = max_unsent_bytes
        self._buffer: list[Any] = []  # prediction tuples (see ``keep``) and record dicts
        self._writer: ThreadPoolExecutor | None = None
        self._files: dict[str, _File] = {}  # the writer thread's own: one open file per day
        self._keys: list[str] = []  # the writer thread's own: files written since the last seal
        self._sequence = 0  # the writer thread's own: the last file number given out
        self._unsent: list[tuple[str, bytes, int]] = []  # the writer's own: (key, body, records)
        self._day: tuple[float, float, str] = (0.0, 0.0, "")
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failed = 0

    # -- request path -------------------------------------------------------------------------
    def sampled(self) -> bool:
        return self.rate >= 1.0 or (self.rate > 0.0 and self._rng.random() < self.rate)

    def keep(self, ts: float, request_id: str, version: int, semver: str, arm: str,
             latency: float, columns: list[str], rows: list[list[Any]], outputs: list[Any],
             confidence: list[float] | None) -> None:
        """Keep one answered prediction (``latency`` in seconds): one tuple appended."""
        if self.store is None:
            return
        buffer = self._buffer
        buffer.append((ts, request_id, version, semver, arm, latency, columns, rows, outputs,
                       confidence))
        if len(buffer) >= self.chunk:
            self._hand_off()

    def add(self, record: dict[str, Any]) -> None:
        """Keep one record as it is (feedback, failed requests); never blocks, never raises."""
        if self.store is None:
            return
        self._buffer.append(record)
        if len(self._buffer) >= self.chunk:
            self._hand_off()

    # -- handing over to the writer thread ----------------------------------------------------
    def _hand_off(self, *, seal: bool = False) -> Future[list[str]]:
        items, self._buffer = self._buffer, []
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1,
                                              thread_name_prefix="modelyard-capture")
        return self._writer.submit(self._encode, items, seal)

    def seal(self) -> Future[list[str]]:
        """Hand everything kept so far to the writer and close its files; the future gives the
        keys of every file written since the last seal."""
        if self.store is None or (self._writer is None and not self._buffer):
            done: Future[list[str]] = Future()
            done.set_result([])
            return done
        return self._hand_off(seal=True)

    def start(self) -> None:
        if self.store is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            await self.flush()

    async def flush(self) -> list[str]:
        """Write what waits (awaits the writer thread; the event loop keeps serving)."""
        return await asyncio.wrap_future(self.seal())

    async def close(self) -> None:
        """Stop the timer and write everything still kept (server shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        if self._unsent:  # the store refused them twice, the last time at shutdown
            lost = self.unsent
            self.failed += lost
            self._unsent = []
            log.warning("capture: %d records for %s could not be written before shutdown",
                        lost, self.name)
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def flush_now(self) -> list[str]:
        """Write what waits and wait for it (threads: ``Predictor``)."""
        return self.seal().result()

    # -- the writer thread --------------------------------------------------------------------
    def _encode(self, items: list[Any], seal: bool) -> list[str]:
        touched: set[str] = set()
        replica = self.replica
        for item in items:
            record = item if isinstance(item, dict) else self._record(item)
            record["replica"] = replica
            if self.mask and isinstance(record.get("inputs"), dict):
                record["inputs"] = masked(record["inputs"], self.mask)
            day = self._day_of(float(record.get("ts") or time.time()))
            file = self._files.get(day)
            if file is None:
                file = self._files[day] = _File()
            file.add(_line(record))
            touched.add(day)
        if seal and self._unsent:
            self._retry()
        for day in list(self._files):
            file = self._files[day]
            if day in touched:
                file.compress()
            if seal or file.count >= self.max_records:
                del self._files[day]
                key = self._put(day, file)
                if key is not None:
                    self._keys.append(key)
        if not seal:
            return []
        keys, self._keys = self._keys, []
        return keys

    def _record(self, item: tuple[Any, ...]) -> dict[str, Any]:
        ts, request_id, version, semver, arm, latency, columns, rows, outputs, confidence = item
        return {
            "kind": "prediction", "ts": ts, "request_id": request_id, "model": self.name,
            "version": version, "semver": semver, "arm": arm, "shadow": arm == SHADOW,
            "latency_ms": round(latency * 1000, 3), "status": 200, "error": None,
            "inputs": {"columns": columns, "data": rows},
            "outputs": outputs, "confidence": confidence,
        }

    def _day_of(self, ts: float) -> str:
        start, end, day = self._day
        if start <= ts < end:
            return day
        day = day_of(ts)
        midnight = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
        self._day = (midnight, midnight + 86400.0, day)
        return day

    def _put(self, day: str, file: _File) -> str | None:
        if file.count == 0 or self.store is None:
            return None
        self._sequence += 1
        key = f"{capture_prefix(self.name)}date={day}/{self.replica}-{self._sequence:08d}.jsonl.gz"
        return self._send(key, file.close(), file.count)

    def _send(self, key: str, body: bytes, count: int) -> str | None:
        """Write one file; a refused one waits for the next flush (the oldest dropped first
        once more than ``max_unsent_bytes`` wait)."""
        assert self.store is not None
        try:
            self.store.put_bytes(key, body)
        except Exception as exc:  # noqa: BLE001 - capture must never take serving down
            log.warning("capture: could not write %d records for %s (%s); trying again at the "
                        "next flush", count, self.name,
                        getattr(exc, "message", type(exc).__name__))
            self._unsent.append((key, body, count))
            while sum(len(b) for _, b, _ in self._unsent) > self.max_unsent_bytes:
                _, _, lost = self._unsent.pop(0)
                self.failed += lost
                log.warning("capture: dropped %d records for %s (more than %d bytes waited)",
                            lost, self.name, self.max_unsent_bytes)
            return None
        self.written += count
        return key

    def _retry(self) -> None:
        waiting, self._unsent = self._unsent, []
        for key, body, count in waiting:
            if self._send(key, body, count) is not None:
                self._keys.append(key)

    @property
    def unsent(self) -> int:
        """Records in files the store refused, waiting for the next flush."""
        return sum(count for _, _, count in self._unsent)


class _File:
    """One capture file being written: JSON lines fed to a gzip stream as they come.

    gzip level 1: a fifth of level 5's CPU for files about 15% larger (measured on one-row
    records of 30 floats). Lines are gathered in one bytearray and compressed per chunk, so
    the encoded bytes reuse the same memory instead of piling up until the file is written."""

    def __init__(self) -> None:
        self._stream = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip member
        self._pending = bytearray()
        self._parts: list[bytes] = []
        self.count = 0

    def add(self, line: bytes) -> None:
        self._pending += line
        self._pending += b"\n"
        self.count += 1

    def compress(self) -> None:
        if self._pending:
            self._parts.append(self._stream.compress(self._pending))
            self._pending.clear()

    def close(self) -> bytes:
        self.compress()
        self._parts.append(self._stream.flush())
        return b"".join(self._parts)


def masked(inputs: dict[str, Any], mask: frozenset[str]) -> dict[str, Any]:
    columns = inputs.get("columns") or []
    hide = [i for i, c in enumerate(columns) if c in mask]
    if not hide:
        return inputs
    rows = []
    for row in inputs.get("data") or []:
        copy = list(row)
        for i in hide:
            if i < len(copy):
                copy[i] = MASK
        rows.append(copy)
    return {**inputs, "data": rows}


def _line(record: dict[str, Any]) -> bytes:
    try:
        return dumps(record)
    except TypeError:  # a value orjson does not know: the slow, forgiving way
        return json.dumps(record, default=_plain, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# -- reading ------------------------------------------------------------------------------
def read_records(
    store: ObjectStore, name: str, *, since: float, until: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Every captured record of a model with ``since <= ts < until`` (epoch seconds)."""
    until = time.time() + 1 if until is None else until
    start = datetime.fromtimestamp(since, tz=timezone.utc).date()
    end = datetime.fromtimestamp(until, tz=timezone.utc).date()
    prefix = capture_prefix(name)
    day = start
    while day <= end:
        for key in sorted(store.list(f"{prefix}date={day.isoformat()}/")):
            if not key.endswith(".jsonl.gz"):
                continue
            try:
                text = gzip.decompress(store.get_bytes(key)).decode()
            except (OSError, EOFError) as exc:
                log.warning("capture: skipping unreadable %s (%s)", key, type(exc).__name__)
                continue
            for line in text.splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                ts = float(record.get("ts", 0))
                if since <= ts < until:
                    yield record
        day += timedelta(days=1)
