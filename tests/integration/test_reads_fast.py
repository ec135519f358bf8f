"""Reads at command-line speed stay exact: counts confirmed near a remembered hint, and the
audit trail shown from a verified copy kept on this machine (``history --verify`` still reads
and checks the vault)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from modelyard.backend.lean import counts as rest_counts
from modelyard.backend.lean.rest import RestReader
from modelyard.errors import AuditTampered
from modelyard.trail.audit import event_key
from tests.support.paged import PagedVersions

REACH = rest_counts._HINT_REACH


def _numbers(newest: int, holes: float, seed: int) -> list[int]:
    import random

    rng = random.Random(seed)
    return [n for n in range(1, newest + 1) if rng.random() >= holes]


@hsettings(max_examples=200, deadline=None, database=None)
@given(newest=st.integers(0, 3_000), holes=st.sampled_from([0.0, 0.01, 0.3]),
       seed=st.integers(0, 2**32 - 1), drift=st.integers(-40, 40),
       ignore=st.booleans())
def test_a_hint_gives_the_exact_count_or_none(newest: int, holes: float, seed: int,
                                              drift: int, ignore: bool) -> None:
    numbers = _numbers(newest, holes, seed)
    hint = max(0, len(numbers) + drift)
    paged = PagedVersions(numbers, ignore_offsets=ignore)
    found = paged.counts.near("name = 'm'", hint, None)
    assert found is None or found == len(numbers)
    assert paged.calls <= 2  # one round: the page near the hint (and the newest row)
    if abs(drift) <= REACH and (not ignore or hint <= REACH + 1):
        assert found == len(numbers)  # within reach: confirmed in that round
    if ignore and hint > REACH + 1:
        assert found is None  # pages that ignore the offset are never trusted


def test_hints_are_remembered_and_survive_a_bad_file(tmp_path: Path) -> None:
    hints = tmp_path / "counts.json"
    numbers = list(range(1, 501))

    def reader() -> PagedVersions:
        return PagedVersions(numbers, count_hints=hints)

    first = reader()
    assert first.counts.counted("name = 'm'", None) == 500
    assert json.loads(hints.read_text()) == {"name = 'm'": 500}
    numbers[:] = [n for n in range(1, 506) if n % 100]  # 5 more, 5 deleted: 500 again
    again = reader()
    assert again.counts.counted("name = 'm'", None) == 500 and again.calls == 2
    numbers[:] = list(range(1, 801))  # far past the hint: counted anew, then remembered
    far = reader()
    assert far.counts.counted("name = 'm'", None) == 800 and far.calls > 2
    assert json.loads(hints.read_text()) == {"name = 'm'": 800}
    hints.write_text("{not json")
    assert reader().counts.counted("name = 'm'", None) == 800


def _bulk(yard: Any, backend: str, name: str, last: int, request: pytest.FixtureRequest
          ) -> None:
    from tests.support import bulk

    if backend == "embedded":
        bulk.copy_embedded(yard.settings.home_path / "mlflow.db", name, last)
    else:
        bulk.copy_server(request.getfixturevalue("stack").pg_port, name, last)


def _sql(yard: Any, backend: str, request: pytest.FixtureRequest, statement: str,
         params: tuple[Any, ...]) -> None:
    if backend == "embedded":
        with sqlite3.connect(yard.settings.home_path / "mlflow.db") as db:
            db.execute(statement, params)
        return
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=request.getfixturevalue("stack").pg_port,
                                  user="postgres", dbname="mlflow")
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement.replace("?", "%s"), params)
    finally:
        connection.close()


def test_list_counts_stay_exact_as_versions_come_and_go(
        make_yard: Any, backend: str, name: str, trained: dict[str, Any],
        request: pytest.FixtureRequest) -> None:
    """A count remembered by one ``list`` is only a hint to the next: versions deleted,
    turned pending or added in between are counted exactly (the MLflow client agrees)."""
    from modelyard import Yard

    yard = make_yard()
    first = yard.register(trained["model"], name, metrics={"accuracy": 0.9})
    yard.promote(name, first.version, to="staging")
    yard.promote(name, first.version, to="production")
    _bulk(yard, backend, name, 60, request)  # 2..60: 60 % 89, 60 % 97: none pending/deleted

    def row(fresh: Any) -> Any:
        return next(r for r in fresh.list_models() if r.name == name)

    def expected() -> int:
        return len([v for v in yard.tracking.versions(name)
                    if v.tags.get("modelyard.status") != "pending"])

    assert row(Yard()).versions == expected() == 60
    # Between two lists: 3 deleted (one far below the hint's page), 2 left pending.
    for number in (2, 30, 59):
        _sql(yard, backend, request, "UPDATE model_versions SET current_stage = "
             "'Deleted_Internal' WHERE name = ? AND version = ?", (name, number))
    for number in (10, 58):
        _sql(yard, backend, request, "UPDATE model_version_tags SET value = 'pending' WHERE "
             "name = ? AND version = ? AND key = 'modelyard.status'", (name, number))
    again = Yard()
    listed = row(again)
    assert listed.versions == expected() == 55
    assert listed.production == "v1.0.0" and listed.latest == "1.0.59"
    if backend == "server":  # the hint held: the count was one round of 4 requests
        reads = again.ctx.reads
        before = reads.requests
        assert reads.count_visible(name) == 55
        assert reads.requests - before <= 4
    # A hint far off (another machine's file, say) is refuted and the count redone.
    hints = sorted((yard.settings.resolved_cache_dir / "counts").glob("*.json"))
    if backend == "server":
        for path in hints:
            kept = json.loads(path.read_text())
            path.write_text(json.dumps({k: 5_000 for k in kept}))
    assert row(Yard()).versions == expected() == 55


# -- history from the verified copy kept on this machine ---------------------------------------

def _trail(yard: Any, name: str, trained: dict[str, Any]) -> None:
    yard.register(trained["model"], name, metrics={"accuracy": 0.9})
    yard.promote(name, 1, to="staging", reason="first look")
    yard.promote(name, 1, to="production", reason="validated")


class _VaultWatch:
    """Records the object-store calls a yard makes (the store itself still answers), or
    refuses them (``closed``): proof that a read did not touch the vault."""

    def __init__(self, yard: Any, monkeypatch: pytest.MonkeyPatch, *, closed: bool) -> None:
        self.calls: list[tuple[str, str]] = []
        store = yard.vault.store
        for method in ("get_bytes", "list", "exists", "get_file"):
            real = getattr(store, method, None)
            if real is None:
                continue

            def watched(key: str, *args: Any, _m: str = method, _real: Any = real,
                        **kwargs: Any) -> Any:
                self.calls.append((_m, key))
                if closed:
                    raise AssertionError(f"the vault was read: {_m}({key})")
                return _real(key, *args, **kwargs)

            monkeypatch.setattr(store, method, watched)


def test_history_needs_no_vault_while_the_kept_copy_is_current(
        make_yard: Any, name: str, trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    writer = make_yard(cache_dir=str(tmp_path / "other-machine"))
    _trail(writer, name, trained)
    first = [e.to_dict() for e in make_yard().history(name)]  # read from the vault, kept
    assert [e["seq"] for e in first] == [1, 2, 3]
    reader = make_yard()
    _VaultWatch(reader, monkeypatch, closed=True)
    assert [e.to_dict() for e in reader.history(name)] == first
    assert [e.seq for e in reader.history(name, version=1)] == [1, 2, 3]

    # Another machine moves the model on: only the newer events are read, each by its key.
    writer.promote(name, 1, to="staging", reason="back for a look")
    writer.set_tag(name, 1, "checked", "yes")
    again = make_yard()
    watch = _VaultWatch(again, monkeypatch, closed=False)
    events = again.history(name)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.to_dict() for e in events] == [e.to_dict() for e in writer.history(name,
                                                                                 verify=True)]
    assert sorted(watch.calls) == [("get_bytes", event_key(name, 4)),
                                   ("get_bytes", event_key(name, 5))]


def test_verify_reads_the_vault_and_catches_what_the_copy_hides(
        make_yard: Any, name: str, trained: dict[str, Any], tmp_path: Path) -> None:
    yard = make_yard()
    _trail(yard, name, trained)
    assert len(yard.history(name, verify=True)) == 3  # verified, and kept here
    store = yard.vault.store
    store.delete(event_key(name, 3))  # the newest: the registry's head still names it
    # Plain history shows the copy verified earlier (the registry names its newest event);
    # --verify reads every event in the vault and finds the one missing.
    assert [e.seq for e in make_yard().history(name)] == [1, 2, 3]
    with pytest.raises(AuditTampered, match="event 3 is missing"):
        make_yard().history(name, verify=True)
    # An edited event in the vault is caught too, copy or no copy.
    event = json.loads(store.get_bytes(event_key(name, 2)))
    event["reason"] = "nobody will notice"
    store.put_bytes(event_key(name, 2), json.dumps(event).encode())
    with pytest.raises(AuditTampered, match="event 2 was modified"):
        make_yard().history(name, verify=True)
    # A machine without the copy reads the vault, and shows what is there.
    fresh = make_yard(cache_dir=str(tmp_path / "fresh"))
    assert [e.seq for e in fresh.history(name)] == [1, 2]


def test_a_damaged_copy_is_not_used(make_yard: Any, name: str, trained: dict[str, Any],
                                    tmp_path: Path) -> None:
    cache = tmp_path / "machine"
    yard = make_yard(cache_dir=str(cache))
    _trail(yard, name, trained)
    truth = [e.to_dict() for e in yard.history(name, verify=True)]
    (kept,) = (cache / "audit-trails").glob("*.json")
    body = json.loads(kept.read_text())
    body["events"][1]["reason"] = "rewritten here"
    kept.write_text(json.dumps(body))
    assert [e.to_dict() for e in make_yard(cache_dir=str(cache)).history(name)] == truth


def test_the_same_get_in_flight_is_sent_once() -> None:
    """Two look-ups sent at once that need the same page share one request (a slow local
    server that counts them); a request asked after the first was answered is sent again."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from modelyard.backend.lean.base import at_once

    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            time.sleep(0.3)
            body = json.dumps({"model_versions": [{"name": "m", "version": "7"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reader = RestReader(f"http://127.0.0.1:{server.server_address[1]}", environ={})
        newest, counted = at_once(reader, [
            lambda: reader.search_versions("m", limit=rest_counts.TOP_PAGE),
            lambda: reader._search_versions("name = 'm'", order_by="version_number DESC",
                                            max_results=rest_counts.TOP_PAGE)])
        assert [r.version for r in newest] == [7] and counted[0][0]["version"] == "7"
        assert len(seen) == 1 and reader.requests == 1
        reader.search_versions("m", limit=rest_counts.TOP_PAGE)  # answered: sent anew
        assert len(seen) == 2
    finally:
        server.shutdown()
        server.server_close()
