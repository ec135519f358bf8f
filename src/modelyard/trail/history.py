"""A model's audit trail read back for the verbs, with the verified copies kept on this machine.

``history`` shows the whole trail, and the read verbs compare the stage holders with the
newest event's ``stages``; read from the vault each time, that is one object per event. What
this machine once read and checked is kept under the cache folder and used again while the
registry's audit head tag still names it (the two kinds of copy are described below). The
chain itself (events, appending, verifying) is ``audit.py``, whose ``Auditor`` hands reads
over to ``History``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.names import STAGE_ALIASES, T_AUDIT_HEAD, check_name
from modelyard.core.refs import lookup
from modelyard.errors import AuditTampered, YardError
from modelyard.store.files import atomic_write
from modelyard.trail.audit import AuditEvent, check_chain, parse_signed_head

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.trail.audit import Auditor

log = logging.getLogger("modelyard.audit")


class History:
    """One yard's trails read back: from the copies kept here when they are current, else from
    the vault (through the ``Auditor``'s logs, checked with its key)."""

    def __init__(self, auditor: Auditor) -> None:
        self.auditor = auditor
        self.ctx = auditor.ctx

    # -- the newest event's stage holders, remembered on this machine ------------------------
    # A read verb (``list``, ``details``) compares the stage holders with the newest event's
    # ``stages`` (drift). The registry's audit head tag names that event (seq:hash), so once
    # this machine has read it from the vault (and checked its hash), the holders are kept
    # under the cache folder keyed by registry, vault and model, and used again only while
    # the head tag names exactly that event: no object-store client for a read that finds
    # nothing new. Any other tag (a newer event, a tag set back, no tag) reads the vault.
    def _remembered_path(self, name: str) -> Path:
        ctx = self.ctx
        where = hashlib.sha256(f"{ctx.registry_id}\n{ctx.settings.resolved_vault}\n{name}"
                               .encode()).hexdigest()[:40]
        return ctx.cache_dir / "audit-heads" / f"{where}.json"

    def remember(self, name: str, event: AuditEvent) -> None:
        """Keep the newest event's (seq, hash, stages); a failure only costs a vault read.
        An event this machine appends also extends its verified copy of the trail when that
        copy ends just before it."""
        if event.compute_hash() != event.hash:
            return  # never remember what the chain check would refuse
        body = {"name": name, "seq": event.seq, "hash": event.hash, "stages": event.stages}
        try:
            atomic_write(self._remembered_path(name), json.dumps(body).encode())
        except OSError as exc:
            log.debug("audit head of %s not cached: %s", name, exc)
        if not self._events_path(name).is_file():
            return
        kept = self._kept_events(name, check=False)  # checked whole wherever it is used
        if kept and kept[-1].seq == event.seq - 1 and kept[-1].hash == event.prev_hash:
            self._keep_events(name, [*kept, event], check=False)

    # -- the trail, remembered on this machine -------------------------------------------------
    # ``history`` shows the whole trail. Events never change once written and each carries
    # the hash of the one before, so a copy read from the vault whose chain checked out is
    # kept under the cache folder (keyed like the head above) and shown again while the
    # registry's audit head tag names its newest event: no object-store client at all. A
    # newer head reads only the events after the copy (each by its key, at once), chained
    # on; anything else (the tag names an event the copy holds under another hash, or an
    # older one; a gap; a broken link) reads the whole trail from the vault, as a new machine
    # does. ``history --verify`` never trusts the copy: it reads and checks every event in
    # the vault (see ``AuditLog.verify``), then refreshes the copy.
    def _events_path(self, name: str) -> Path:
        head = self._remembered_path(name)
        return head.parent.parent / "audit-trails" / head.name

    def _kept_events(self, name: str, *, check: bool = True) -> list[AuditEvent]:
        """The verified copy of the trail kept on this machine ([] when none is usable)."""
        try:
            body = json.loads(self._events_path(name).read_bytes())
            if body.get("name") != name:
                return []
            events = [AuditEvent.from_dict(item) for item in body["events"]]
            if check:
                check_chain(name, events, key=self.auditor.key)  # a damaged copy is no copy
            return events
        except (OSError, ValueError, KeyError, TypeError, AttributeError, AuditTampered):
            return []

    def _keep_events(self, name: str, events: list[AuditEvent], *, check: bool = True
                     ) -> None:
        """Keep a trail (a whole chain from event 1) whose links and signatures check out
        (``check=False``: the caller checked the one link it added)."""
        try:
            if check:
                check_chain(name, events, key=self.auditor.key)
        except AuditTampered:
            return  # shown as read, never kept
        body = {"name": name, "events": [e.to_dict() for e in events]}
        try:
            atomic_write(self._events_path(name), json.dumps(body).encode())
        except OSError as exc:
            log.debug("audit trail of %s not cached: %s", name, exc)

    def _trail(self, name: str, head: tuple[int, str] | None) -> list[AuditEvent]:
        """The whole trail, oldest first: the verified copy kept here when the registry's
        head names its newest event, extended by the events after it when the head is newer;
        else read from the vault (and kept when its chain checks out)."""
        kept = self._kept_events(name) if head is not None else []
        if head is not None and kept and head[0] >= kept[-1].seq:
            newest, digest = head
            if newest == kept[-1].seq and kept[-1].hash == digest:
                return kept
            trail = self.auditor.log(name)
            try:
                newer = trail.read_many(list(range(kept[-1].seq + 1, newest + 1)))
                events = [*kept, *newer]
                check_chain(name, events, key=self.auditor.key)
            except (YardError, AuditTampered) as exc:
                log.debug("the audit trail of %s kept here does not extend: %s", name, exc)
            else:
                if events[-1].hash == digest:
                    self._keep_events(name, events)
                    return events
        events = self.auditor.log(name).events()
        if head is not None and events and (events[-1].seq, events[-1].hash) == head:
            self._keep_events(name, events)
        return events

    def newest_stages(self, name: str, head: tuple[int, str] | None
                      ) -> dict[str, int | None] | None:
        """Who the newest event says holds each stage (None: the model has no trail).

        ``head`` is the registry's audit head tag (``parse_head``); when it names the event
        remembered here, the vault is not read."""
        if head is not None:
            try:
                kept = json.loads(self._remembered_path(name).read_bytes())
                if (kept.get("name") == name and kept.get("seq") == head[0]
                        and kept.get("hash") == head[1] and isinstance(kept["stages"], dict)):
                    return _stage_holders(kept["stages"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass  # nothing (or nothing usable) remembered: read the vault
        last = self.auditor.log(name).last()
        if last is None:
            return None
        if head is not None and (last.seq, last.hash) == head:
            self.remember(name, last)
        return _stage_holders(last.stages)

    def history(self, name: str, version: str | int | None = None, *,
                verify: bool = False) -> list[AuditEvent]:
        """The model's audit trail, oldest first; ``verify`` checks the hash chain and
        raises ``AuditTampered`` naming the first broken event."""
        check_name(name)
        if verify or not self._events_path(name).is_file():
            self.ctx.prepare_vault()  # the vault will be read: its client builds meanwhile
        model = self.ctx.reads.get_model(name)  # the lean reader when it can answer
        self.auditor.binding.check(name, model.tags)  # before the trail: no false alarm
        signed = parse_signed_head(model.tags.get(T_AUDIT_HEAD))
        head = None if signed is None else (signed[0], signed[1])
        if verify:  # every event read from the vault and checked; then kept here
            events = self.auditor.log(name).verified_events(
                head, key=self.auditor.key, head_sig=None if signed is None else signed[2])
            if head is not None and events and (events[-1].seq, events[-1].hash) == head:
                self._keep_events(name, events)
        else:
            events = self._trail(name, head)
        if version is not None:
            text = str(version)
            number = (int(text) if text.isascii() and text.isdigit() and len(text) < 13
                      else lookup(self.ctx.reads, name, text).version)
            events = [e for e in events if _mentions(e, number)]
        return events


def _mentions(event: AuditEvent, number: int) -> bool:
    if event.version == number or event.detail.get("rolled_back") == number:
        return True
    return any(int(d.get("version", -1)) == number for d in event.detail.get("displaced", []))


def _stage_holders(stages: dict[str, Any]) -> dict[str, int | None]:
    """Each stage alias's holder as an event records it (anything but a number: none)."""
    return {s: (h if isinstance(h := stages.get(s), int) else None) for s in STAGE_ALIASES}
