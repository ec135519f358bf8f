"""The registration journal: what a registration in flight has created so far, in the vault.

A registration writes ``journal/NAME/TOKEN.json`` before it creates anything, notes each
thing it creates (its run, its logged model and artifact location, its version, a registered
model it created) and deletes the entry when it ends, registered or cleaned up. An entry that
stays names exactly what a process that died (``kill -9``, a power cut) left behind, and
who was running it: ``cleanup --debris`` (``protection/debris.py``) removes that, and
``health`` and ``verify --all`` report it.

Whether the process is still running can be told only on its own machine: the entry keeps
the host, the process id and the process's start time (``/proc``), so a reused process id
is not taken for the registration. From another machine a registration counts as in flight
until it is older than the grace period.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from modelyard.errors import YardError
from modelyard.store.storage import ObjectStore
from modelyard.store.vault import JOURNAL, journal_key

log = logging.getLogger("modelyard.journal")

FIELDS = ("run_id", "model_id", "location", "version", "model_created")


def process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (``/proc/PID/stat`` field 22),
    or None where there is no ``/proc``: with the process id it names one process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2:].split()  # the command name may hold spaces
    if len(rest) < 20 or rest[0] in ("Z", "X"):  # a zombie has finished
        return None
    return rest[19]


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


class Journal:
    """One registration's entry. ``open`` before anything is created, ``note`` after each
    thing created, ``close`` when the registration is over (either way)."""

    def __init__(self, store: ObjectStore, name: str, action: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.store = store
        self.key = journal_key(name, f"{stamp}-{os.getpid()}-{secrets.token_hex(4)}")
        self.body: dict[str, Any] = {
            "name": name, "action": action, "host": socket.gethostname(),
            "boot": _boot_id(), "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **{key: None for key in FIELDS}}
        self.body["model_created"] = False

    def open(self) -> None:
        self._write()

    def note(self, **fields: Any) -> None:
        self.body.update(fields)
        self._write()

    def close(self) -> None:
        """Delete the entry. Never raises: an entry left behind names a registration that is
        over, which ``cleanup --debris`` recognises (its version is ready and audited)."""
        try:
            self.store.delete(self.key)
        except YardError as exc:
            log.warning("registration journal %s not removed: %s", self.key, exc.message)

    def _write(self) -> None:
        self.store.put_bytes(self.key, json.dumps(self.body, indent=1).encode())


@dataclass
class Entry:
    """A journal entry as found: its key, what it says and when it was last written."""

    key: str
    body: dict[str, Any]
    modified: float

    @property
    def name(self) -> str:
        return str(self.body.get("name", ""))

    @property
    def version(self) -> int | None:
        value = self.body.get("version")
        return int(value) if isinstance(value, int) else None

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.modified)

    def alive(self) -> bool | None:
        """True while its process runs, False once it has ended, None when that cannot be
        told from here (another machine, or a machine booted since)."""
        if self.body.get("host") != socket.gethostname() or self.body.get("boot") != _boot_id():
            return None
        pid = self.body.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return None
        recorded = self.body.get("pid_start")
        now = process_start(pid)
        if recorded is None:  # written where /proc was not readable
            return None
        return now == recorded

    def who(self) -> str:
        return f"pid {self.body.get('pid')} on {self.body.get('host')}"


def entries(store: ObjectStore, name: str | None = None) -> list[Entry]:
    """The journal's entries (one model's, or every model's); an unreadable one is kept with
    an empty body (it is reported, never guessed at)."""
    prefix = f"{JOURNAL}{name}/" if name else JOURNAL
    found: list[Entry] = []
    for key, modified in sorted(store.modified(prefix).items()):
        try:
            body = json.loads(store.get_bytes(key))
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (YardError, ValueError) as exc:
            if isinstance(exc, YardError) and "not found" in exc.message:
                continue  # closed while we looked
            body = {"name": key.split("/")[1] if key.count("/") >= 2 else ""}
        found.append(Entry(key, body, modified))
    return found
