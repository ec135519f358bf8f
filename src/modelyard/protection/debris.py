"""Debris: what a process that died (``kill -9`` mid-registration, mid-import, mid-adopt) left
behind, found and removed (``cleanup --debris``; reported by ``health`` and ``verify --all``).

Kinds, each one line naming the version and ``modelyard cleanup --debris``:

- ``registration``: a registration journal entry (``registry/journal.py``) whose process has
  ended (or, seen from another machine, older than the grace period): its run, logged model,
  uploaded files and pending version are removed as the registration would have removed
  them itself; a version it made ready stays, and gets its missing audit event.
- ``pending``: a version still ``pending`` after the grace period with no journal entry (a
  registration from before the journal): the version and its manifest are removed.
- ``run``: a run modelyard created for a registration (tag ``modelyard.model``) still
  RUNNING after the grace period, that no version names and no journal entry claims (a
  registration from before the journal, killed before its version existed): its logged
  models are marked failed and their files removed, and the run is ended and deleted. A
  ``pending`` version removed takes its run the same way.
- ``unaudited-version``: a ready modelyard version no audit event names (the process died
  between ``status = ready`` and its ``register`` event): the event is recorded (audited as
  what it was: register, import, restore or adopt, by ``cleanup --debris``).
- ``objects``: vault objects no manifest names, older than the grace period, while no
  registration is in flight (``verify --all`` and ``cleanup`` only: it reads every manifest).
  The journal is read again just before they are deleted; a registration that starts in
  the moment between and finds one of them already stored (objects are shared by content)
  would name a deleted object (the window is one listing long): ``verify --all`` reports
  the vault's object missing, and ``repair`` puts it back from a layer that holds it.

What a concurrent registration looks like (a pending version, objects not yet in a manifest,
a journal entry) is never debris while its process runs: on its own machine the journal's
process id and start time say so; from elsewhere, anything younger than the grace period
(``DEBRIS_GRACE_S``, ``--grace``) is left alone.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from modelyard.backend.identity import MANAGE
from modelyard.context import Context
from modelyard.core.entities import Result
from modelyard.core.names import (
    STATUS_PENDING,
    STATUS_READY,
    T_ADOPTED,
    T_BUMP,
    T_IMPORTED_FROM,
    T_REASON,
    T_RESTORED_FROM,
    T_RUN_MODEL,
    T_SEMVER,
    T_STAGE,
    T_STATUS,
    check_name,
)
from modelyard.core.records import VersionRecord
from modelyard.errors import NotFound, YardError
from modelyard.registry import journal
from modelyard.registry.pipeline import clean_journal_entry
from modelyard.store.storage import ObjectStore
from modelyard.store.vault import COMPILED, MANIFESTS, OBJECTS, cleanup_report_key, oid_of_key
from modelyard.trail.audit import AuditEvent, Auditor

log = logging.getLogger("modelyard.debris")

DEBRIS_GRACE_S = 3600.0
CLEANUP = "modelyard cleanup --debris"


@dataclass
class DebrisItem(Result):
    """One piece of debris: what it is, whose, how old, and the one line that says so."""

    kind: str  # registration | pending | run | unaudited-version | objects
    name: str
    version: int | None
    detail: str
    age_s: float
    key: str = ""  # the journal entry (registration), the run id (run)
    count: int = 0  # objects: how many
    bytes: int = 0  # objects: their size
    done: str = ""  # after cleanup: what was done
    hint: str = f"`{CLEANUP}` removes it"

    @property
    def line(self) -> str:
        """The one line ``health`` and ``verify --all`` show."""
        return f"{self.detail}: {self.hint}"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "line": self.line}


@dataclass
class DebrisReport(Result):
    items: list[DebrisItem] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)  # registrations running now: kept
    applied: bool = False
    failed: list[str] = field(default_factory=list)  # what cleanup could not remove

    @property
    def ok(self) -> bool:
        return not self.items

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "ok": self.ok}


def _label(name: str, number: int | None, record: VersionRecord | None) -> str:
    semver = record.tags.get(T_SEMVER) if record is not None else None
    if number is None:
        return name
    return f"{name} v{semver} (#{number})" if semver else f"{name} #{number}"


def _age(ms: int) -> float:
    return max(0.0, time.time() - ms / 1000) if ms else 0.0


def creation_action(record: VersionRecord) -> str:
    """What created a version, as its tags say: the audit action its event would carry."""
    tags = record.tags
    if tags.get(T_IMPORTED_FROM):
        return "import"
    if tags.get(T_RESTORED_FROM):
        return "restore"
    if tags.get(T_ADOPTED):
        return "adopt"
    return "register"


class Debris:
    """Finds debris (``find``, ``for_model``) and removes it (``cleanup``)."""

    def __init__(self, ctx: Context, audit: Auditor) -> None:
        self.ctx = ctx
        self.audit = audit

    # -- finding ----------------------------------------------------------------------------
    def find(self, names: list[str] | None = None, *, grace: float = DEBRIS_GRACE_S,
             objects: bool = False) -> DebrisReport:
        """Every model's debris (or ``names``'), with the vault's unnamed objects when
        ``objects`` (reads every manifest)."""
        reads = self.ctx.reads
        models = ([check_name(n) for n in names] if names is not None
                  else sorted(m.name for m in self.audit.binding.split(reads.list_models())[0]))
        entries = journal.entries(self.ctx.vault.store)
        report = DebrisReport()
        for name in sorted(set(models) | ({e.name for e in entries} if names is None
                                          else set())):
            try:
                records = reads.versions(name)
            except NotFound:
                records = []
            try:
                events: list[AuditEvent] | None = self.audit.history(name)
            except (YardError, ValueError):
                events = None  # an unreadable trail is the audit check's finding
            self.for_model(name, records, events, grace=grace, report=report,
                           entries=[e for e in entries if e.name == name])
        report.items += self.open_runs(names, entries, grace)
        if objects:
            self._objects(report, grace, entries)
        return report

    def for_model(self, name: str, records: list[VersionRecord],
                  events: list[AuditEvent] | None, *, grace: float = DEBRIS_GRACE_S,
                  report: DebrisReport | None = None,
                  entries: list[journal.Entry] | None = None) -> DebrisReport:
        """One model's debris from what the caller read already (``health`` has its
        versions and trail): its journal entries, stale pending versions, and ready
        versions no event names (``events`` None: not checked)."""
        report = report if report is not None else DebrisReport()
        if entries is None:
            entries = journal.entries(self.ctx.vault.store, name)
        numbers = {r.version: r for r in records}
        claimed: set[int] = set()
        for entry in entries:
            number = entry.version
            record = numbers.get(number) if number is not None else None
            alive = entry.alive()
            if number is not None:
                claimed.add(number)
            if alive or (alive is None and entry.age_s < grace):
                report.in_flight.append(f"{_label(name, number, record)}: {entry.who()}")
                continue
            why = ("its process has ended" if alive is False
                   else f"not finished after {entry.age_s / 60:.0f} min")
            what = _left(entry.body, record)
            report.items.append(DebrisItem(
                "registration", name, number,
                f"{_label(name, number, record)}: its {entry.body.get('action', 'registration')}"
                f" by {entry.who()} did not finish ({why}); left {what}",
                entry.age_s, key=entry.key))
        named = ({int(e.version) for e in events if isinstance(e.version, int)}
                 if events is not None else set())
        for record in records:
            if record.version in claimed:
                continue
            age = _age(record.created_ms)
            status = record.tags.get(T_STATUS)
            if status == STATUS_PENDING and age >= grace:
                report.items.append(DebrisItem(
                    "pending", name, record.version,
                    f"{_label(name, record.version, record)}: pending for "
                    f"{age / 60:.0f} min, its registration never finished",
                    age))
            elif (events is not None and status == STATUS_READY and record.tags.get(T_SEMVER)
                  and record.version not in named and age >= grace):
                report.items.append(DebrisItem(
                    "unaudited-version", name, record.version,
                    f"{_label(name, record.version, record)}: ready, but no audit event "
                    f"names it (its {creation_action(record)} ended before it was audited)",
                    age, hint=f"`{CLEANUP}` records it"))
        return report

    def open_runs(self, names: list[str] | None, entries: list[journal.Entry],
                  grace: float = DEBRIS_GRACE_S) -> list[DebrisItem]:
        """Runs a registration from before the journal created and left RUNNING: tagged
        with their model by modelyard, older than ``grace``, naming no version, claimed by
        no journal entry (a registration of today notes its run in its entry first). One
        search of the tracking store, whatever the number of models (``names``: theirs)."""
        claimed = {e.body.get("run_id") for e in entries}
        before = int((time.time() - grace) * 1000)
        items = []
        for run in self.ctx.tracking.open_runs(self.ctx.settings.experiment, T_RUN_MODEL,
                                                before):
            model = str(run["tags"].get(T_RUN_MODEL) or "")
            if run["versions"] or run["run_id"] in claimed or (
                    names is not None and model not in names):
                continue
            age = _age(int(run["start_time"] or 0))
            items.append(DebrisItem(
                "run", model, None,
                f"{model}: run {run['run_id']} still RUNNING after {age / 60:.0f} min and "
                "holding no version: a registration that never finished (from before the "
                "registration journal) left it, with its logged model's files",
                age, key=str(run["run_id"])))
        return items

    def _objects(self, report: DebrisReport, grace: float,
                 entries: list[journal.Entry]) -> None:
        store = self.ctx.vault.store
        if any(e.alive() or (e.alive() is None and e.age_s < grace) for e in entries):
            return  # a registration in flight stages objects before its manifest exists
        listed = store.modified(OBJECTS)
        named, _ = named_objects(store)
        now = time.time()
        orphans = [key for key, stamp in listed.items()
                   if oid_of_key(key) not in named and now - stamp >= grace]
        if not orphans:
            return
        size = sum(store.size(key) or 0 for key in orphans)
        oldest = max(now - listed[key] for key in orphans)
        report.items.append(DebrisItem(
            "objects", "", None,
            f"vault: {len(orphans)} object(s) ({size / 1e6:.1f} MB) that no manifest names, "
            f"staged by registrations that never finished",
            oldest, count=len(orphans), bytes=size))

    # -- removing ---------------------------------------------------------------------------
    def cleanup(self, names: list[str] | None = None, *, grace: float = DEBRIS_GRACE_S,
                dry_run: bool = False) -> DebrisReport:
        """Remove the debris ``find`` reports (a plan with ``dry_run``). Each model's removal
        is one audit event (``debris``); a missing creation event is recorded as such;
        vault objects that belong to no model are recorded at ``cleanups/STAMP.json``."""
        if grace < 0 or grace != grace or grace == float("inf"):
            from modelyard.errors import InvalidInput

            raise InvalidInput(f"--grace must be a finite number of seconds >= 0, not {grace}")
        report = self.find(names, grace=grace, objects=False)
        if dry_run:
            if names is None:
                self._objects(report, grace, journal.entries(self.ctx.vault.store))
            return report
        for item in report.items:
            try:
                self._remove(item)
            except YardError as exc:
                report.failed.append(f"{item.detail.split(':')[0]}: {exc.message}")
        # Objects last: the manifests of removed pending versions no longer name theirs.
        if names is None:
            self._objects(report, grace, journal.entries(self.ctx.vault.store))
            objects = [i for i in report.items if i.kind == "objects"]
            for item in objects:
                self._remove_objects(item, grace)
        report.applied = True
        return report

    def _remove(self, item: DebrisItem) -> None:
        tracking = self.ctx.tracking
        if item.kind == "objects":
            return
        self.ctx.permissions.require(item.name, MANAGE, "clean up debris")
        record = None
        if item.version is not None:
            try:
                record = tracking.get_version(item.name, item.version)
            except NotFound:
                record = None
        if item.kind == "registration":
            try:
                body = json.loads(self.ctx.vault.store.get_bytes(item.key))
            except (YardError, ValueError):
                body = {}
            state = (None if item.version is None else "gone" if record is None
                     else "pending" if record.tags.get(T_STATUS) == STATUS_PENDING
                     else "ready")
            if state == "ready" and record is not None:
                self._audit_missing(record, str(body.get("action") or "") or None)
            clean_journal_entry(self.ctx, item.name, body if isinstance(body, dict) else {},
                                state)
            self.ctx.vault.store.delete(item.key)
            item.done = ("kept the ready version, recorded its audit event"
                         if state == "ready" else "removed")
            if state != "ready":
                self._audit_removal(item, body if isinstance(body, dict) else {})
        elif item.kind == "pending" and record is not None:
            if record.tags.get(T_STATUS) != STATUS_PENDING:  # finished meanwhile
                item.done = "finished meanwhile: kept"
                return
            self.ctx.vault.delete_manifest(item.name, record.version)
            tracking.delete_version(item.name, record.version)
            if record.run_id:  # its run, left RUNNING, goes with it
                self._remove_run(item.name, record.run_id)
            item.done = "removed"
            self._audit_removal(item, {"run_id": record.run_id, "model_id": record.model_id})
        elif item.kind == "run":
            removed = self._remove_run(item.name, item.key)
            item.done = "removed" if removed is not None else "ended or used meanwhile: kept"
            if removed is not None:
                self._audit_removal(item, {"run_id": item.key, "model_id": ",".join(removed)})
        elif item.kind == "unaudited-version" and record is not None:
            self._audit_missing(record)
            item.done = "recorded its audit event"

    def _remove_run(self, name: str, run_id: str) -> list[str] | None:
        """A registration's run left RUNNING, with its logged models and their files, removed
        as a failing registration removes its own (``clean_journal_entry``); the logged
        models' ids, or None when the run is no longer modelyard's, open and unused."""
        tracking = self.ctx.tracking
        try:
            run = tracking.get_run(run_id)
        except NotFound:
            return None
        if run["status"] != "RUNNING" or not run["tags"].get(T_RUN_MODEL):
            return None
        models = tracking.logged_models_of_run(str(run["experiment_id"]), run_id)
        for model_id, location in models:
            clean_journal_entry(self.ctx, name, {"model_id": model_id, "location": location},
                                None)
        clean_journal_entry(self.ctx, name, {"run_id": run_id}, None)
        return [model_id for model_id, _ in models]

    def _audit_missing(self, record: VersionRecord, action: str | None = None) -> None:
        """The creation event a process that died did not write: recorded now, saying so.
        ``action``: the one its journal names (an imported trail may name the version
        already, as the source numbered it: only that action's own event counts)."""
        names = {e.version for e in self.audit.history(record.name)
                 if action is None or e.action == action}
        if record.version in names:
            return
        action = action or creation_action(record)
        self.audit.record(
            record.name, action, version=record.version, semver=record.tags.get(T_SEMVER),
            from_=None, to=record.tags.get(T_STAGE, "none"), reason=record.tags.get(T_REASON),
            detail={"bump": record.tags.get(T_BUMP), "run_id": record.run_id,
                    "recorded_by": "cleanup --debris: the process that made this version "
                                   "ended before it wrote this event"})

    def _audit_removal(self, item: DebrisItem, body: dict[str, Any]) -> None:
        try:
            self.ctx.reads.get_model(item.name)
        except NotFound:  # the model it created is gone with it: no trail to write to
            self._report({"removed": item.detail, **body})
            return
        self.audit.record(item.name, "debris", version=item.version, semver=None,
                          reason=f"removed what a registration that died left: {item.detail}",
                          detail={k: body.get(k) for k in ("run_id", "model_id", "location")
                                  if body.get(k)})

    def _remove_objects(self, item: DebrisItem, grace: float) -> None:
        store = self.ctx.vault.store
        # Looked at again just before: a registration that started meanwhile keeps them.
        if any(e.alive() or (e.alive() is None and e.age_s < grace)
               for e in journal.entries(store)):
            item.done = "kept: a registration started meanwhile"
            return
        now = time.time()
        found = self._unnamed([k for k, stamp in store.modified(OBJECTS).items()
                               if now - stamp >= grace])
        size = 0
        for key in found:
            size += store.size(key) or 0
            store.delete(key)
        item.done = f"removed {len(found)} object(s)"
        self._report({"removed_objects": len(found), "bytes": size})

    def _unnamed(self, keys: list[str]) -> list[str]:
        named, complete = named_objects(self.ctx.vault.store)
        # An unreadable manifest or record: remove nothing it might name.
        return [k for k in keys if oid_of_key(k) not in named] if complete else []

    def _report(self, body: dict[str, Any]) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        identity = self.ctx.identity
        self.ctx.vault.store.put_bytes(
            cleanup_report_key(f"{stamp}-{secrets.token_hex(4)}"),
            json.dumps({"who": identity.user, "at": stamp, **body}, indent=1,
                       default=str).encode())


def _left(body: dict[str, Any], record: VersionRecord | None) -> str:
    parts = []
    if record is not None:
        parts.append(f"version #{record.version} ({record.tags.get(T_STATUS, 'no status')})")
    if body.get("run_id"):
        parts.append(f"run {body['run_id']}")
    if body.get("model_id"):
        parts.append(f"logged model {body['model_id']} and its files")
    return ", ".join(parts) or "staged vault objects only"


def named_objects(store: ObjectStore) -> tuple[set[str], bool]:
    """The object ids the vault's manifests and compiled copies (``serving/compiled.py``
    records an ONNX copy's object) name, and whether every one of them could be read."""
    def read(key: str) -> tuple[set[str], bool]:
        try:
            body = json.loads(store.get_bytes(key))
            if key.startswith(COMPILED):
                return ({str(body["object"])} if body.get("object") else set()), True
            return {str(f["sha256"]) for f in body.get("files", {}).values()}, True
        except (YardError, ValueError, TypeError, AttributeError, KeyError):
            return set(), False

    keys = [*store.list(MANIFESTS), *store.list(COMPILED)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(read, keys))
    return set().union(*(names for names, _ in found)), all(ok for _, ok in found)
