"""Unaudited moves: stage holders no audit event explains (a move made around modelyard).

The audit trail says who holds ``staging`` and ``production`` (every event carries the
holders after it: ``stages``). MLflow says who holds them now (the aliases) and which
version carries which ``modelyard.stage`` tag. Anyone with EDIT on the registered model can
move an alias with plain MLflow, skipping gates and approvals; modelyard cannot prevent that,
so it detects it: ``UnauditedMoves.find`` compares both, ``UnauditedMoves.undo`` puts back
the last audited holders through ``Stages`` (an audited move, reason "undo unaudited move";
its audit action keeps the name ``undo_drift`` that existing trails already hold).

A webhook fires when an unaudited move is found, once per distinct finding (the last one
notified is remembered in the vault beside the trail), so ``list`` run in a loop does not spam.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.core.entities import Result
from modelyard.core.names import (
    MLFLOW_STAGE,
    STAGE_ALIASES,
    T_AUDIT_HEAD,
    T_STAGE,
    check_name,
)
from modelyard.core.records import SEARCH_PAGE_MAX, ModelRecord
from modelyard.errors import NotFound, StorageError, UnauditedMove, YardError
from modelyard.lifecycle.stages import MOVES
from modelyard.trail.audit import parse_head

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context
    from modelyard.core.records import VersionRecord
    from modelyard.lifecycle.stages import StageChange, Stages
    from modelyard.trail.audit import Auditor

log = logging.getLogger("modelyard.unaudited")

__all__ = ["UnauditedHolder", "UnauditedMoves", "unaudited_key"]

UNDO_REASON = "undo unaudited move"
# How each kind of finding ends its detail (``undo`` tells them apart by it).
MOVE, TAG, FIELD, GONE = ("unaudited move", "unaudited tag", "unaudited stage field",
                          "deleted outside modelyard")
INTERRUPTED = "the move was interrupted"



def unaudited_key(name: str) -> str:
    """The last finding a webhook was sent for (so each finding is sent once). The file keeps
    the name earlier releases gave it, so a finding already sent is not sent again."""
    return f"audit/{name}/DRIFT.json"


@dataclass
class UnauditedHolder(Result):
    """One holder the audit trail does not explain.

    ``holder_version``: who holds ``stage`` in MLflow now (None: nobody);
    ``audited_version``: who the trail says holds it (None: nobody)."""

    name: str
    stage: str
    holder_version: int | None
    audited_version: int | None
    detail: str

    @property
    def message(self) -> str:
        return f"{self.name}: {self.detail}"


def _label(version: int | None) -> str:
    return "nobody" if version is None else f"#{version}"


class UnauditedMoves:
    """Finds and undoes unaudited stage moves."""

    def __init__(self, ctx: Context, audit: Auditor, stages: Stages) -> None:
        self.ctx = ctx
        self.audit = audit
        self.stages = stages

    def audited_holders(self, name: str, model: ModelRecord | None = None, *,
                        fresh: bool = False) -> dict[str, int | None] | None:
        """Who the newest audit event says holds each stage (None: the model has no trail).

        With the registered model at hand, its audit head tag lets a holder remembered on
        this machine answer without reading the vault (``Auditor.newest_stages``): a read
        verb's shortcut. ``fresh`` (a verdict: ``find``, hence health, ``history --verify``,
        ``verify --all``) reads the vault's newest event whatever is remembered, so the same
        registry gives the same verdict from any machine, warm cache or cold."""
        if fresh:
            return self.audit.newest_stages(name, None)
        head = parse_head(model.tags.get(T_AUDIT_HEAD)) if model is not None else None
        return self.audit.newest_stages(name, head)

    def find(self, name: str | None = None, *, notify: bool = True) -> list[UnauditedHolder]:
        """Unaudited moves of one model (or of every model)."""
        models: list[tuple[str, ModelRecord | None]]
        if name is None:  # each model as listed (this vault's): no second read of it
            mine, _ = self.audit.binding.split(self.ctx.reads.list_models())
            models = [(m.name, m) for m in mine]
        else:
            models = [(check_name(name), None)]
        found: list[UnauditedHolder] = []
        for model, record in models:
            moved = self.of_model(model, model=record, fresh=True)
            if moved and notify:
                self.notify(model, moved)
            found += moved
        return found

    def check(self, name: str | None = None) -> None:
        """Raise ``UnauditedMove`` naming the first unaudited holder (and how many more)."""
        found = self.find(name)
        if found:
            more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
            raise UnauditedMove(detail=found[0].message + more)

    def of_model(self, name: str, versions: list[VersionRecord] | None = None, *,
                 model: ModelRecord | None = None,
                 tagged: list[VersionRecord] | None = None,
                 fresh: bool = False) -> list[UnauditedHolder]:
        """Unaudited moves of one model. ``model``: the registered model when the caller has
        it already (``list``; a server's registered-models/get costs O(versions));
        ``tagged``: with it, the versions ``stage_searches`` found (the caller sent them
        beside its own look-ups)."""
        rows: list[VersionRecord] = []
        if versions is None:
            try:
                model, live, rows, exists = self._bounded(name, model, tagged)
            except NotFound:
                return []  # deleted meanwhile: nothing holds a stage
        audited = self.audited_holders(name, model, fresh=fresh)
        if audited is None:
            return []
        if versions is not None:
            by_number = {r.version: r for r in versions}
            live = {s: None for s in STAGE_ALIASES}
            for record in versions:
                for alias in record.aliases:
                    if alias in live:
                        live[alias] = record.version
            rows = [r for r in versions if r.tags.get(T_STAGE) in STAGE_ALIASES]

            def exists(number: int) -> bool:
                return number in by_number

        if versions is not None:
            fields = {s: {r.version for r in versions if r.current_stage == MLFLOW_STAGE[s]}
                      for s in STAGE_ALIASES}
        else:
            # The newest holder of each stage field (MLflow's latest_versions, in the model
            # record already read), and any tagged version whose field says a stage.
            fields = {s: {r.version for r in rows if r.current_stage == MLFLOW_STAGE[s]}
                      for s in STAGE_ALIASES}
            for stage, number in (model.stage_fields if model is not None else {}).items():
                fields[stage].add(number)
        moved: list[UnauditedHolder] = []
        for stage in STAGE_ALIASES:
            want, have = audited[stage], live[stage]
            if have is None and want is not None and not exists(want):
                # Deleted with plain MLflow (modelyard never deletes a holder): MLflow drops
                # its aliases with it, so nothing else shows that the stage lost its holder.
                moved.append(UnauditedHolder(
                    name=name, stage=stage, holder_version=None, audited_version=want,
                    detail=f"the audit trail says #{want} holds {stage} but #{want} is gone "
                    f"from the registry ({GONE}: restore it from a backup, or promote "
                    "another version)"))
                continue
            if want == have:
                continue
            moved.append(UnauditedHolder(
                name=name, stage=stage, holder_version=have, audited_version=want,
                detail=f"{stage} is held by {_label(have)} in MLflow but the audit trail "
                f"says {_label(want)} (unaudited move)"))
        for record in rows:
            tag = record.tags.get(T_STAGE)
            if tag in STAGE_ALIASES and audited[tag] != record.version:
                moved.append(UnauditedHolder(
                    name=name, stage=str(tag), holder_version=record.version,
                    audited_version=audited[tag],
                    detail=f"#{record.version} is tagged {T_STAGE}={tag} but the audit "
                    f"trail says {_label(audited[tag])} holds {tag} (unaudited tag)"))
        for stage in STAGE_ALIASES:
            field_name = MLFLOW_STAGE[stage]
            for number in sorted(fields[stage] - {audited[stage]}):
                moved.append(UnauditedHolder(
                    name=name, stage=stage, holder_version=number,
                    audited_version=audited[stage],
                    detail=f"#{number} has MLflow stage {field_name} (models:/{name}/"
                    f"{field_name} loads it) but the audit trail says "
                    f"{_label(audited[stage])} holds {stage} ({FIELD})"))
        if moved and fresh:
            return self._interrupted(name, moved)
        return moved

    def _interrupted(self, name: str, moved: list[UnauditedHolder]) -> list[UnauditedHolder]:
        """Findings that are all the holders from before the newest move (an event written,
        then the process died before MLflow followed it) say so, and how it is finished."""
        try:
            events = self.audit.history(name)
        except (YardError, ValueError):
            return moved
        if not events or events[-1].action not in MOVES:
            return moved
        newest = events[-1]
        before = dict(events[-2].stages) if len(events) > 1 else {}
        if not all(d.holder_version == before.get(d.stage)
                   or (d.holder_version is None and before.get(d.stage) is None)
                   for d in moved if GONE not in d.detail):
            return moved
        for item in moved:
            if GONE in item.detail:
                continue
            what = ("MLflow's stage field" if FIELD in item.detail else "the stage tag"
                    if TAG in item.detail else "the alias")
            item.detail = (
                f"{item.stage}: {what} still shows {_label(item.holder_version)} as before "
                f"event {newest.seq} ({newest.action} of #{newest.version} to {newest.to}), "
                f"which says {_label(item.audited_version)}: {INTERRUPTED} (or put back "
                f"outside modelyard); `modelyard recover {name}` finishes it")
        return moved

    def stage_searches(self, name: str) -> list[Callable[[], list[VersionRecord]]]:
        """The look-ups of the versions tagged with a stage (one bounded tag search each),
        for a caller that sends them at once with its own; their rows, concatenated, are
        ``of_model``'s ``tagged``."""
        from functools import partial

        reads = self.ctx.reads
        return [partial(reads.search_versions, name, tag=(T_STAGE, stage),
                        limit=SEARCH_PAGE_MAX) for stage in STAGE_ALIASES]

    def _bounded(self, name: str, model: ModelRecord | None,
                 tagged_rows: list[VersionRecord] | None = None
                 ) -> tuple[ModelRecord, dict[str, int | None], list[VersionRecord],
                            Callable[[int], bool]]:
        """What ``of_model`` compares, without listing the model's versions: the registered
        model (read here when the caller has none: its aliases name the stage holders and its
        audit head tag keys the holders remembered on this machine) and the versions tagged
        with a stage (a tag search each), at once on a server; whether a version exists is
        read only when asked."""
        from modelyard.backend.lean.base import at_once

        reads = self.ctx.reads
        searches: list[Callable[[], Any]] = []
        if tagged_rows is None:
            searches = list(self.stage_searches(name))
        if model is None:
            first, *rows = at_once(reads, [lambda: reads.get_model(name), *searches])
            model = first
        else:
            rows = at_once(reads, searches)
        assert model is not None
        live: dict[str, int | None] = {s: model.aliases.get(s) for s in STAGE_ALIASES}
        tagged: list[VersionRecord] = (list(tagged_rows) if tagged_rows is not None
                                       else [r for found in rows for r in found])
        tagged.sort(key=lambda r: r.version)

        def exists(number: int) -> bool:
            try:
                reads.get_version(name, number)
            except NotFound:
                return False
            return True

        return model, live, tagged, exists

    def undo(self, name: str) -> list[StageChange]:
        """Put back the last audited holder of every stage moved without an audit event
        (audited moves), and MLflow's stage fields the trail does not explain. A holder
        deleted from the registry cannot be put back here (restore it from a backup): it is
        left as found."""
        from modelyard.lifecycle.stages import StageChange

        changes: list[StageChange] = []
        found = [d for d in self.of_model(check_name(name), fresh=True)
                 if GONE not in d.detail]
        if found and all(INTERRUPTED in d.detail for d in found):
            # The trail already records the move: finish it, no new event.
            for stage in sorted({d.stage for d in found}):
                self.ctx.permissions.require(name, _needed(stage), f"put {stage} back")
            event = self.stages.finish(name)
            if event is not None and event.version is not None:
                changes.append(StageChange(
                    status="finished", name=name, version=event.version,
                    semver=event.semver, from_stage=event.from_ or "none",
                    to=event.to or "none", event=event.seq, reason=event.reason))
            return changes
        audited = self.audited_holders(name) or {}
        for stage in sorted({d.stage for d in found}):
            self.ctx.permissions.require(name, _needed(stage), f"put {stage} back")
        moved: set[int] = set()
        for stage in sorted({d.stage for d in found}):
            mine = [d for d in found if d.stage == stage and FIELD not in d.detail]
            want = audited.get(stage)
            if want is not None and any(d.holder_version != want for d in mine
                                        if MOVE in d.detail):
                try:
                    record = self.ctx.tracking.get_version(name, want)
                except NotFound:
                    continue  # the audited holder is gone too: nothing to put back
                # Stages.move applies the trail's holders: the alias and the stage tags of
                # the holder and of whoever took it (displaced).
                change = self.stages.move(name, record, stage, "promote", reason=UNDO_REASON,
                                          detail={"undo_drift": [d.to_dict() for d in mine]})
                moved |= {d.holder_version for d in mine if d.holder_version is not None}
                changes.append(change)
                continue
            # Nobody should hold it, or only a stage tag is wrong: clear what MLflow has.
            for item in mine:
                version = item.holder_version
                if version is None or version in moved:
                    continue
                if MOVE in item.detail:
                    self.ctx.tracking.delete_alias(name, stage)
                self.ctx.tracking.set_version_tags(name, version,
                                                   {T_STAGE: self.stages.demoted(stage)})
                self.ctx.tracking.set_stage_field(name, version, self.stages.demoted(stage))
                event = self.audit.record(
                    name, "undo_drift", version=version, from_=stage,
                    to=self.stages.demoted(stage), reason=UNDO_REASON,
                    detail={"undo_drift": [item.to_dict()]})
                changes.append(StageChange(
                    status="undone", name=name, version=version, semver=None,
                    from_stage=stage, to=self.stages.demoted(stage), event=event.seq,
                    reason=UNDO_REASON))
        fields = [d for d in found if FIELD in d.detail]
        if fields:
            changes += self._undo_fields(name, audited, fields)
        return changes

    def _undo_fields(self, name: str, audited: dict[str, int | None],
                     found: list[UnauditedHolder]) -> list[StageChange]:
        """MLflow's stage field back to what modelyard says of every version: the audited
        holders their stage, any other version its ``modelyard.stage`` tag (a stage it does
        not hold: where it would have been demoted to). Reads every version: the field
        cannot be searched on, and this runs only when a field was found moved."""
        from modelyard.lifecycle.stages import StageChange

        holders = {v: s for s, v in audited.items() if v is not None}
        wrote: dict[int, str] = {}
        for record in self.ctx.tracking.versions(name, with_aliases=False):
            target = holders.get(record.version)
            if target is None:
                target = record.tags.get(T_STAGE, "none")
                if target in STAGE_ALIASES:
                    target = self.stages.demoted(target)
            held = record.current_stage in {MLFLOW_STAGE[s] for s in STAGE_ALIASES}
            if record.current_stage != MLFLOW_STAGE[target] and (
                    held or target in STAGE_ALIASES):
                self.ctx.tracking.set_stage_field(name, record.version, target)
                wrote[record.version] = target
        changes: list[StageChange] = []
        for item in found:
            version = item.holder_version
            if version is None or version not in wrote:
                continue
            event = self.audit.record(
                name, "undo_drift", version=version, from_=item.stage, to=wrote[version],
                reason=UNDO_REASON, detail={"undo_drift": [item.to_dict()],
                                            "stage_fields": {str(v): MLFLOW_STAGE[t]
                                                             for v, t in wrote.items()}})
            changes.append(StageChange(
                status="undone", name=name, version=version, semver=None,
                from_stage=item.stage, to=wrote[version], event=event.seq,
                reason=UNDO_REASON))
        return changes

    def notify(self, name: str, moved: list[UnauditedHolder]) -> None:
        settings = self.ctx.settings
        if not settings.webhooks:
            return
        finding = [d.to_dict() for d in moved]
        store = self.ctx.vault.store
        key = unaudited_key(name)
        try:
            if json.loads(store.get_bytes(key)) == finding:
                return  # already sent
        except (StorageError, ValueError):
            pass
        from modelyard.lifecycle.notify import send_all

        payload: dict[str, Any] = {"model": name, "unaudited": finding}
        results = send_all(settings.webhooks, payload, settings.webhook_secret)
        for item in results:
            if not item["ok"]:
                log.warning("unaudited-move webhook %s failed: %s", item["url"], item["error"])
        try:
            store.put_bytes(key, json.dumps(finding).encode())
        except YardError as exc:
            log.warning("unaudited-move notice of %s not remembered: %s", name, exc.message)


def _needed(stage: str) -> str:
    from modelyard.backend.identity import EDIT, MANAGE

    return MANAGE if stage == "production" else EDIT


def holder_for_serving(ctx: Context, audit: Auditor, name: str, stage: str,
                       live: int | None) -> int | None:
    """The version a server should follow for a stage alias: the audited holder when the
    alias moved without an audit event (a warning is logged), else the alias holder."""
    last = audit.log(name).last()
    if last is None:
        return live
    want = last.stages.get(stage)
    audited = want if isinstance(want, int) else None
    if audited == live:
        return live
    if audited is None:
        log.warning("%s@%s: #%s holds it without an audit event; not followed (serve "
                    "--follow-unaudited to follow it)", name, stage, live)
        return None
    try:
        ctx.reads.get_version(name, audited)
    except NotFound:
        return live
    log.warning("%s@%s: moved to %s without an audit event; still following the audited "
                "holder #%s (serve --follow-unaudited to follow it)", name, stage,
                _label(live), audited)
    return audited
