"""The registration journal: an entry says whether its process still runs (same machine),
has ended, or cannot be told (another machine); ``cleanup --debris`` refuses a bad grace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.registry import journal
from modelyard.store.storage import LocalStore
from tests.support.helpers import run_cli


def test_entry_alive_ended_or_unknown(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    mine = journal.Journal(store, "m", "register")
    mine.open()
    mine.note(run_id="r1")
    (entry,) = journal.entries(store, "m")
    assert entry.alive() is True and entry.body["run_id"] == "r1"

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead = dict(entry.body, pid=int(ended.stdout))
    assert journal.Entry("k", dead, entry.modified).alive() is False
    reused = dict(entry.body, pid_start="1")  # this process id, another process's start
    assert journal.Entry("k", reused, entry.modified).alive() is False
    elsewhere = dict(entry.body, host="another-machine")
    assert journal.Entry("k", elsewhere, entry.modified).alive() is None

    mine.close()
    assert journal.entries(store) == []


def test_unreadable_entry_is_kept_not_guessed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("journal/m/x.json", b"{not json")
    store.put_bytes("journal/n/y.json", json.dumps([1]).encode())
    found = journal.entries(store)
    assert [(e.name, e.alive()) for e in found] == [("m", None), ("n", None)]


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["-1", "nan", "inf", "-inf", "1e999", "x", ""]))
def test_cleanup_refuses_a_bad_grace(grace: str) -> None:
    done = run_cli("cleanup", "--debris", "--grace", grace)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "rror" in line]
    assert len(errors) == 1, done.stderr  # one line says what is wrong


def test_cleanup_refuses_mixed_options() -> None:
    for args in (["--debris", "--keep", "3"], ["--dry-run"], ["--grace", "5"], []):
        done = run_cli("cleanup", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)
