"""Stage and alias moves, applied as one unit with their audit event.

Stages are the MLflow aliases ``staging`` and ``production`` (one holder each) plus the
``modelyard.stage`` tag on every version. Every move is an event in the audit trail, and the
trail is also what orders concurrent moves: an event is created with the object store's
create-if-absent at the next sequence number and records who holds each stage after it,
computed from the event before it. After writing its event, a process applies the newest
event's holders to MLflow's aliases and the stage tags, then checks that no newer event
appeared meanwhile (and applies again if one did). Any number of processes moving stages at
once therefore leave the aliases and tags as the last event says.

On a tracking server a move costs few sequential round trips: the look-ups it needs go out
at once, the audit event is written to the vault, then every registry write (aliases, stage
tags, MLflow's stage field, the registry's audit head tag) goes out at once (``at_once``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.backend.lean.base import at_once
from modelyard.context import Context
from modelyard.core.entities import AliasChange, Result
from modelyard.core.names import (
    STAGE_ALIASES,
    T_ROLLED_BACK,
    T_SEMVER,
    T_STAGE,
    check_alias,
    label,
)
from modelyard.core.records import VersionRecord
from modelyard.core.refs import lookup
from modelyard.errors import InvalidInput, NotFound, YardError
from modelyard.lifecycle.notify import Notifier
from modelyard.trail.audit import AuditEvent, Auditor

log = logging.getLogger("modelyard.stages")

MOVES = ("promote", "approve", "rollback", "move_failed", "snapshot_restore")


class StaleMove(Exception):  # a signal to decide again, never shown to a user
    """The trail moved on after the caller decided its move (``Stages.move(after=...)``):
    nothing was written; read the trail again and decide again."""


@dataclass
class StageChange(Result):
    """What ``promote``, ``approve`` and ``rollback`` return."""

    status: str  # "promoted" | "pending" | "rolled back"
    name: str
    version: int
    semver: str | None
    from_stage: str
    to: str
    replaced: int | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    event: int | None = None
    request_id: str | None = None
    reason: str | None = None
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    release_tag: str | None = None  # the git tag made for this promotion (release_tags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "name": self.name, "version": self.version,
            "semver": self.semver, "from": self.from_stage, "to": self.to,
            "replaced": self.replaced, "gates": self.gates, "event": self.event,
            "request_id": self.request_id, "reason": self.reason, "webhooks": self.webhooks,
            "release_tag": self.release_tag,
        }


class Stages:
    """Moves stage holders and user aliases; each move is audited and announced."""

    def __init__(self, ctx: Context, audit: Auditor, notifier: Notifier) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.audit = audit
        self.notifier = notifier
        # Run after a move is applied (auto-backup); they never undo it, whatever they raise.
        self.after_move: list[Callable[[StageChange], None]] = []

    def demoted(self, stage: str) -> str:
        """Where a version goes when another one takes its stage."""
        if stage == "production" and self.ctx.settings.archive_old_versions:
            return "archived"
        return "none"

    def check_move(self, name: str, record: VersionRecord, stage: str, force: bool,
                    reason: str | None) -> None:
        current = record.tags.get(T_STAGE, "none")
        label = record_label(name, record)
        if stage in STAGE_ALIASES and stage in record.aliases:
            raise InvalidInput(f"{label} already holds {stage}; nothing changed")
        if stage not in STAGE_ALIASES and current == stage and not set(
                record.aliases) & set(STAGE_ALIASES):
            raise InvalidInput(f"{label} is already in stage {stage}; nothing changed")
        if force and not (reason and reason.strip()):
            raise InvalidInput("--force needs a --reason (it is kept in the audit trail)")
        if stage == "production" and current != "staging" and not force:
            raise InvalidInput(
                f"{label} is in stage {current}, not staging: promote it to staging first, "
                "or skip staging with --force and a --reason"
            )

    def move(
        self,
        name: str,
        record: VersionRecord,
        stage: str,
        action: str,
        *,
        reason: str | None,
        gates: list[dict[str, Any]] | None = None,
        detail: dict[str, Any] | None = None,
        rolled_back: int | None = None,
        holders: dict[str, int | None] | None = None,
        after: int | None = None,
        failed: Callable[[AuditEvent, bool], None] | None = None,
    ) -> StageChange:
        """Take the next audit slot for a stage move, then apply it (see ``_settle``).

        ``holders``: the stage aliases' holders as the caller has just read them (a snapshot
        restore reads every model's at once), saving two look-ups. ``after``: the sequence
        number of the newest event when the caller decided the move (0: no trail); if another
        event took the slot after it, ``StaleMove`` is raised and nothing is written, so a
        move decided from the trail's state (a rollback) is never applied to a newer one.
        ``failed``: called, before the error is raised, when the move's event was written and
        MLflow could not be made to follow it, with whether the move was undone (a caller
        reporting several moves says which were undone and which were not)."""
        version = record.version
        current = record.tags.get(T_STAGE, "none")
        # Holders MLflow has now: anything moved outside modelyard is demoted as well.
        # (Alias look-ups, not the model: a server's registered-models/get is O(versions).)
        live = dict(holders) if holders is not None else stage_holders(self.ctx.reads, name)
        replaced: dict[str, int | None] = {}
        holders_before: dict[str, Any] = {}

        def build(prev: AuditEvent | None) -> dict[str, Any]:
            if after is not None and (prev.seq if prev else 0) != after:
                raise StaleMove
            holders_before.clear()
            holders_before.update(dict(prev.stages) if prev and prev.stages else dict(live))
            stages: dict[str, int | None] = (
                dict(prev.stages) if prev and prev.stages else dict(live)
            )
            displaced: list[dict[str, Any]] = []
            for s in STAGE_ALIASES:
                holders = {stages.get(s), live.get(s)} - {None, version}
                if s == stage:
                    displaced += [{"version": h, "stage": s} for h in sorted(
                        h for h in holders if isinstance(h, int))]
                elif isinstance(live.get(s), int) and live.get(s) not in (stages.get(s),
                                                                          version):
                    # MLflow's holder of another stage is not the trail's (a move that was
                    # interrupted, or made outside modelyard): its stage tag goes with it.
                    displaced.append({"version": live[s], "stage": s})
                if stages.get(s) == version and s != stage:
                    stages[s] = None  # a version is in one stage at a time
            replaced["holder"] = None
            if stage in STAGE_ALIASES:
                before = stages.get(stage)
                if before is not None and before != version:
                    stages[f"{stage}.previous"] = before
                    replaced["holder"] = before
                elif [d for d in displaced if d["stage"] == stage]:
                    replaced["holder"] = int(next(d["version"] for d in displaced
                                                  if d["stage"] == stage))
                stages[stage] = version
            extra = dict(detail or {})
            if displaced:
                extra["displaced"] = displaced
            if rolled_back is not None:
                extra["rolled_back"] = rolled_back
            return {"action": action, "version": version, "semver": record.tags.get(T_SEMVER),
                    "from_": current, "to": stage, "reason": reason, "gates": gates or [],
                    "detail": extra, "stages": stages}

        # The registry's audit head tag is written beside the move's own registry writes.
        event = self.audit.append(name, build, registry_head=False)
        # What MLflow holds now is known when the trail before this event says the same:
        # then no other move is in flight, and writes that change nothing are skipped.
        trusted = all(holders_before.get(s) == live.get(s) for s in STAGE_ALIASES)
        known = _Known(dict(live), {version: dict(record.tags)}) if trusted else None
        try:
            self._settle(name, event, known,
                         also=[lambda: self.audit.write_registry_head(name, event)])
        except YardError:
            # The move could not be applied: record that, with the holders as they were, and
            # put them back, so no later move applies this one (a move is one unit).
            undone = self._undo(name, event, holders_before)
            if failed is not None:
                failed(event, undone)
            raise
        holder = replaced.get("holder")
        if rolled_back is not None:
            holder = rolled_back
        status = "rolled back" if action == "rollback" else "promoted"
        change = StageChange(
            status=status, name=name, version=version, semver=record.tags.get(T_SEMVER),
            from_stage=current, to=stage, replaced=holder, gates=gates or [],
            event=event.seq, reason=reason,
        )
        change.webhooks = self.notifier.notify(name, event)
        for hook in self.after_move:
            try:
                hook(change)
            except Exception:  # pragma: no cover - hooks report their own failures
                log.exception("after-move hook failed for %s #%s", name, version)
        return change

    def finish(self, name: str) -> AuditEvent | None:
        """Apply the newest move of the trail to MLflow (aliases, stage tags, stage field)
        without a new event: a move whose process died after writing its event (the
        decision) and before applying it all is finished, as the event says. None when the
        trail has no move."""
        trail = self.audit.log(name)
        for seq in reversed(trail.sequence_numbers()):
            event = trail.read(seq)
            if event.action in MOVES:
                self._settle(name, event)
                return event
        return None

    def _undo(self, name: str, failed: AuditEvent, before: dict[str, Any]) -> bool:
        """Whether the failed move was undone (its ``move_failed`` event written and applied);
        when not, its event stands and the next move, or ``recover``, finishes it."""
        def build(prev: AuditEvent | None) -> dict[str, Any]:
            # Only while nothing newer superseded it: later moves already settled past it.
            stages = dict(before) if prev is not None and prev.seq == failed.seq else (
                dict(prev.stages) if prev else {})
            return {"action": "move_failed", "version": failed.version,
                    "semver": failed.semver, "from_": failed.to, "to": failed.from_,
                    "reason": f"event {failed.seq} could not be applied; holders put back",
                    "detail": {"failed_event": failed.seq}, "stages": stages}

        try:
            undo = self.audit.append(name, build)
            self._apply(name, [undo])
        except YardError as exc:
            log.error("%s: move %s failed and could not be undone yet (%s); the next move "
                      "applies the recorded holders", name, failed.seq, exc.message)
            return False
        return True

    def _settle(self, name: str, mine: AuditEvent, known: _Known | None = None,
                also: Sequence[Callable[[], object]] = ()) -> None:
        """Make MLflow's aliases and stage tags match the newest event of the trail.

        Applies the newest event's holders, then re-reads the tail: if another process
        appended meanwhile, its events join the window and are applied too. Whoever writes
        last has checked after writing that no newer event exists, so the end state is the
        newest event's, however the processes interleave. ``also``: registry writes sent
        with the first application's writes (they must not raise a YardError).

        Once MLflow follows ``mine``, the move is applied as its event says: if the trail
        cannot be read again then (its store lost), that is logged and the move stands.
        Undoing it would need the same store, and another process that appended meanwhile
        checks after its own writes; the next move, or ``recover``, settles the newest event.
        """
        audit = self.audit.log(name)
        window = [mine]
        seen = mine.seq
        while True:
            self._apply(name, window, known, also)
            known, also = None, ()  # another process moved meanwhile: write everything again
            while True:
                try:
                    newer = [audit.read(s) for s in audit.sequence_numbers() if s > seen]
                except YardError as exc:
                    log.warning("%s: move %s applied; whether a newer move came meanwhile "
                                "could not be checked (%s)", name, mine.seq, exc.message)
                    return
                if not newer:
                    return
                seen = newer[-1].seq
                moves = [e for e in newer if e.action in MOVES]
                if moves:
                    window += moves
                    break

    def _apply(self, name: str, window: list[AuditEvent], known: _Known | None = None,
               also: Sequence[Callable[[], object]] = ()) -> None:
        """Make aliases, stage tags and MLflow's stage field say what the window's newest
        event says. With ``known`` (holders and tags as they are now), writes that would
        change nothing are skipped: an alias already held by its holder, deleting an alias
        nobody holds, a tag a version already has, un-tagging ``rolled_back`` where unset.

        The look-ups it still needs go out at once, then every write (and ``also``) at
        once: two sequential round trips at most on a server, whatever the number of calls.
        Every write is attempted; then the first failure is raised (the move is undone)."""
        writes = self.ctx.writes
        reads = self.ctx.reads
        latest = next(
            (e for e in reversed(window) if e.stages), window[-1]
        )
        holders = {s: latest.stages.get(s) for s in STAGE_ALIASES}
        calls: list[Callable[[], object]] = list(also)
        unheld = [s for s, h in holders.items() if not isinstance(h, int)]
        if known is not None:
            held_now = {s: known.aliases.get(s) for s in unheld}
        else:
            held_now = dict(zip(unheld, at_once(reads, [
                _bind(reads.alias_holder, name, s) for s in unheld]), strict=True))
        for stage, holder in holders.items():
            if isinstance(holder, int):
                if known is None or known.aliases.get(stage) != holder:
                    calls.append(_bind(_set_alias, writes, name, stage, holder))
            elif held_now.get(stage) is not None:
                # Only when held: deleting an alias needs MANAGE on an auth server, and a
                # user with EDIT moving another stage must not need it.
                calls.append(_bind(_quietly, NotFound, writes.delete_alias, name, stage))
        wanted: dict[int, dict[str, str]] = {}
        for event in window:
            if event.version is not None and event.to is not None and event.action in MOVES:
                target = event.to
                wanted.setdefault(event.version, {})[T_STAGE] = (
                    target if target not in STAGE_ALIASES else self.demoted(target))
            for item in event.detail.get("displaced", []):
                wanted.setdefault(int(item["version"]), {})[T_STAGE] = self.demoted(
                    str(item["stage"]))
            back = event.detail.get("rolled_back")
            if back is not None:
                wanted.setdefault(int(back), {}).update({
                    T_STAGE: "archived",
                    T_ROLLED_BACK: f"{event.when} by {event.who}: {event.reason or ''}".strip(),
                })
        for stage, holder in holders.items():
            if isinstance(holder, int):
                wanted.setdefault(holder, {})[T_STAGE] = stage
        rolled_back = {int(e.detail["rolled_back"]) for e in window
                       if e.detail.get("rolled_back") is not None}
        numbers = sorted(wanted)
        haves: list[dict[str, str] | None] = [None] * len(numbers)
        if known is not None:
            haves = at_once(reads, [_bind(known.tags_of, self, name, v, holders)
                                    for v in numbers])
        for version, have in zip(numbers, haves, strict=True):
            tags = wanted[version]
            changed = {k: v for k, v in tags.items() if have is None or have.get(k) != v}
            for key, value in changed.items():  # one request per tag: they go out at once
                calls.append(_bind(_quietly, NotFound, writes.set_version_tags, name,
                                   version, {key: value}))
            if tags.get(T_STAGE) in STAGE_ALIASES and version not in rolled_back and (
                    have is None or have.get(T_ROLLED_BACK) is not None):
                # Promoted again: the mark of an earlier rollback no longer holds.
                calls.append(_bind(_quietly, YardError, writes.delete_version_tag, name,
                                   version, T_ROLLED_BACK))
            if T_STAGE in changed:
                # MLflow's own stage field tells the same (models:/NAME/Production, the UI).
                calls.append(_bind(_quietly, NotFound, writes.set_stage_field, name, version,
                                   tags[T_STAGE]))
        at_once(writes, calls)

    def set_alias(self, name: str, ref: str | int, alias: str, *, reason: str | None = None
                  ) -> AliasChange:
        """Point a user alias at a version (stage aliases move only through promote)."""
        check_alias(alias)
        record = lookup(self.ctx.reads, name, ref)
        previous = self.ctx.reads.alias_holder(name, alias)
        self.ctx.writes.set_alias(name, alias, record.version)
        event = self.audit.record(name, "alias", version=record.version,
                             semver=record.tags.get(T_SEMVER), from_=None, to=None,
                             reason=reason, detail={"alias": alias, "op": "set",
                                                  "previous": previous})
        return AliasChange(name=name, alias=alias, version=record.version,
                           semver=record.tags.get(T_SEMVER), previous=previous, event=event.seq)

    def remove_alias(self, name: str, alias: str, *, reason: str | None = None) -> AliasChange:
        check_alias(alias)
        holder = self.ctx.reads.alias_holder(name, alias)
        if holder is None:
            self.ctx.reads.get_model(name)
            raise InvalidInput(f"{name} has no alias {alias!r}; nothing changed")
        self.ctx.writes.delete_alias(name, alias)
        event = self.audit.record(name, "alias", version=holder, from_=None, to=None, reason=reason,
                             detail={"alias": alias, "op": "delete"})
        return AliasChange(name=name, alias=alias, version=holder, deleted=True, event=event.seq)


@dataclass
class _Known:
    """What MLflow holds as a move starts: the stage aliases' holders, and the tags of the
    versions already read. A stage holder that keeps its stage is read (one look-up) rather
    than re-tagged (up to three writes); a version losing its stage is written unread."""

    aliases: dict[str, int | None]
    tags: dict[int, dict[str, str]]

    def tags_of(self, stages: Stages, name: str, version: int,
                holders: dict[str, int | None]) -> dict[str, str] | None:
        if version in self.tags:
            return self.tags[version]
        keeps = any(holder == version and self.aliases.get(stage) == version
                    for stage, holder in holders.items())
        if not keeps:
            return None
        try:
            self.tags[version] = dict(stages.ctx.reads.get_version(name, version).tags)
        except NotFound:
            return None
        return self.tags[version]


def stage_holders(reads: Any, name: str) -> dict[str, int | None]:
    """Who holds each stage alias: one alias look-up each, sent at once (never the model: a
    server's ``registered-models/get`` costs O(versions))."""
    found = at_once(reads, [_bind(reads.alias_holder, name, s) for s in STAGE_ALIASES])
    return dict(zip(STAGE_ALIASES, found, strict=True))


def _bind(call: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: call(*args)


def _quietly(kind: type[YardError], call: Callable[..., Any], *args: Any) -> None:
    """``call(*args)``, an error of ``kind`` ignored (a version deleted meanwhile)."""
    with contextlib.suppress(kind):
        call(*args)


def _set_alias(writes: Any, name: str, stage: str, holder: int) -> None:
    try:
        writes.set_alias(name, stage, holder)
    except NotFound:
        log.warning("%s holder #%s no longer exists", stage, holder)


def record_label(name: str, record: VersionRecord) -> str:
    return label(name, record.tags.get(T_SEMVER), record.version)
