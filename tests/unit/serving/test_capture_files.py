"""Capture files from many replicas: named by replica and numbered, and none lost to a short
store outage (a real one: the day's folder cannot be made while a file stands in its way)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from modelyard.serving.capture import CaptureLog, read_records, replica_id
from modelyard.store.storage import LocalStore

DAY = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC
FOLDER = "capture/m/date=2023-11-15"


def _keep(log: CaptureLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.keep(DAY + i, f"r{i}", 1, "1.0.0", "production", 0.001, ["a"], [[float(i)]], [1],
                 None)


def test_each_replica_names_and_numbers_its_own_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "vault")
    logs = [CaptureLog(store, "m", rate=1.0) for _ in range(3)]
    assert len({log.replica for log in logs}) == 3  # one process, three replicas: still apart
    for n, log in enumerate(logs):
        for round_ in range(2):
            _keep(log, 3, start=100 * n + 10 * round_)
            log.flush_now()
    names = sorted(k.rsplit("/", 1)[1] for k in store.list("capture/m/"))
    assert names == sorted(f"{log.replica}-{i:08d}.jsonl.gz" for log in logs for i in (1, 2))
    records = list(read_records(store, "m", since=DAY, until=DAY + 1000))
    assert len(records) == 18
    assert {r["replica"] for r in records} == {log.replica for log in logs}
    assert CaptureLog(store, "m", replica="pod a/1").replica == "pod-a-1"  # safe in a key
    assert replica_id() != replica_id()  # a restart with the same host and pid is new


def test_a_file_the_store_refused_is_written_at_the_next_flush(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "vault")
    log = CaptureLog(store, "m", rate=1.0)
    blocker = tmp_path / "vault" / FOLDER
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")  # the store cannot write under it: an outage
    _keep(log, 5)
    assert log.flush_now() == [] and (log.unsent, log.failed, log.written) == (5, 0, 0)
    _keep(log, 2, start=5)
    assert log.flush_now() == [] and log.unsent == 7
    blocker.unlink()  # the store is back
    keys = log.flush_now()
    assert len(keys) == 2 and (log.unsent, log.failed, log.written) == (0, 0, 7)
    assert sorted(r["request_id"] for r in read_records(store, "m", since=DAY, until=DAY + 60)
                  ) == [f"r{i}" for i in range(7)]


def test_refused_files_past_the_limit_and_at_shutdown_are_counted_lost(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "vault")
    blocker = tmp_path / "vault" / FOLDER
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    small = CaptureLog(store, "m", rate=1.0, max_unsent_bytes=1)
    _keep(small, 4)
    small.flush_now()
    assert (small.unsent, small.failed) == (0, 4)  # more than the limit waited: dropped
    closing = CaptureLog(store, "m", rate=1.0)
    _keep(closing, 3)
    asyncio.run(closing.close())  # the last chance fails too: counted, never raised
    assert (closing.unsent, closing.failed, closing.written) == (0, 3, 0)
