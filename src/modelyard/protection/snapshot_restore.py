"""Snapshot restore: every alias and stage back where a snapshot had it (``Snapshots.restore``).

Each model's moves are planned from the state read once (MLflow's aliases and, for a model whose
newest audit event is a move of this same restore, the trail's holders), then applied in order
through ``Stages`` until one fails. A rerun finishes what an interrupted run recorded without a
second event; a part that fails midway stops the restore with every move's fate reported
(applied, finished, undone, not undone, not applied) and what finishes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.backend.tracking import Tracking
from modelyard.core.entities import Result
from modelyard.core.names import STAGE_ALIASES, T_SEMVER
from modelyard.core.records import VersionRecord
from modelyard.core.refs import is_visible
from modelyard.errors import NotFound, UserError, YardError
from modelyard.lifecycle.stages import MOVES
from modelyard.lifecycle.unaudited import GONE, UnauditedMoves
from modelyard.trail.audit import AuditEvent

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.protection.snapshots import Snapshot, Snapshots


@dataclass
class SnapshotMove(Result):
    name: str
    alias: str
    kind: str  # "stage" | "alias"
    from_version: int | None
    to_version: int | None
    semver: str | None
    applied: bool = False
    event: int | None = None
    # "planned" (a dry run), "applied", or "finished": recorded by an earlier run of the same
    # restore that ended before MLflow followed its event, applied now with no second event.
    # When a part fails (the restore stops): "not applied" (no event written, or not tried),
    # "undone" (its event written, then the holders put back with a move_failed event), "not
    # undone" (its event stands and MLflow may be behind it: a rerun or `recover` finishes
    # it), "not audited" (a user alias set in MLflow whose event could not be written)
    status: str = "planned"
    error: str | None = None


@dataclass
class SnapshotRestore(Result):
    tag: str
    dry_run: bool
    moves: list[SnapshotMove]
    restored_versions: list[dict[str, Any]] = field(default_factory=list)
    data: list[dict[str, str]] = field(default_factory=list)
    unchanged: int = 0  # aliases already where the snapshot had them
    stopped: str | None = None  # the failure that stopped the restore (None: it ran through)
    stopped_code: int = 0  # its exit code
    todo: str | None = None  # what to run to finish a stopped restore

    @property
    def ok(self) -> bool:
        return self.stopped is None

    def count(self, status: str) -> int:
        return sum(1 for m in self.moves if m.status == status)


class SnapshotRestorer:
    """One ``Snapshots.restore`` call's work (the snapshot read, the versions found, the moves)."""

    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots
        self.ctx = snapshots.ctx
        self.stages = snapshots.stages

    # -- restore ------------------------------------------------------------------------------
    def restore(self, tag: str, *, dry_run: bool = False, data: bool = False
                ) -> SnapshotRestore:
        """Every alias and stage back where snapshot ``tag`` had it (deleted versions restored
        first through the restore hook); with ``data``, DVC-tracked data back to the recorded
        hashes. ``dry_run`` changes nothing and returns the plan."""
        snapshot = self.snapshots.show(tag)
        reason = f"snapshot restore {tag}"
        data_plan = self._data_plan(snapshot) if data else []
        current = ({m.name: m.aliases for m in self.ctx.reads.list_models()}
                   if snapshot.models else {})
        wanted = {name: entry.get("aliases", {}) for name, entry in snapshot.models.items()}
        # 0. moves an earlier run of this restore recorded and MLflow has not followed (yet):
        # finished first, as recorded; the rest is planned from the trail's holders
        finishing: dict[str, SnapshotMove] = {}
        for name, event in self._recorded(sorted(wanted), reason).items():
            item = self._behind(name, event, current.get(name, {}))
            if item is not None:
                finishing[name] = item
            held = {s: h for s, h in event.stages.items()
                    if s in STAGE_ALIASES and isinstance(h, int)}
            current[name] = {**{a: v for a, v in current.get(name, {}).items()
                                if a not in STAGE_ALIASES}, **held}
        differing = [name for name in sorted(wanted)
                     if name in finishing or {a: h["version"] for a, h in wanted[name].items()}
                     != current.get(name, {})]
        unchanged = sum(1 for name in wanted for a, h in wanted[name].items()
                        if current.get(name, {}).get(a) == h["version"])
        workers = self.snapshots.workers(len(differing))

        # 1. every version the snapshot needs, found (or found missing) before anything moves
        def find(name: str) -> dict[str, VersionRecord | None]:
            return {alias: self._find(name, holder) for alias, holder in wanted[name].items()
                    if current.get(name, {}).get(alias) != holder["version"]}

        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = dict(zip(differing, pool.map(find, differing), strict=True))
        missing = sorted({(name, str(wanted[name][alias]["semver"] or
                                     f"#{wanted[name][alias]['version']}"))
                          for name, aliases in found.items()
                          for alias, record in aliases.items() if record is None})
        if missing and self.snapshots.restore_hook is None:
            shown = ", ".join(f"{n} v{s}" for n, s in missing[:5])
            raise NotFound(f"snapshot {tag} needs version(s) no longer in the registry: {shown}"
                           " (configure a backup store and restore them, then try again); "
                           "nothing changed")
        restored: list[dict[str, Any]] = []
        if missing and not dry_run:
            assert self.snapshots.restore_hook is not None
            brought: dict[tuple[str, str], VersionRecord] = {}
            for name, semver in missing:
                mv = self.snapshots.restore_hook(name, semver)
                restored.append({"name": name, "version": mv.version, "semver": mv.semver})
                brought[(name, semver)] = self.ctx.tracking.get_version(name, mv.version)
            for name, aliases in found.items():
                for alias, record in aliases.items():
                    if record is None:
                        holder = wanted[name][alias]
                        key = str(holder["semver"] or f"#{holder['version']}")
                        aliases[alias] = brought[(name, key)]
        elif missing:
            restored = [{"name": n, "version": None, "semver": s} for n, s in missing]

        # 2. the moves, model by model (models in parallel); a model stops at its first
        # failure, and every move says what became of it
        def plan_and_apply(name: str) -> tuple[list[SnapshotMove], YardError | None]:
            return self._restore_model(name, wanted[name], current.get(name, {}), found[name],
                                       reason, dry_run, finishing.get(name))

        with ThreadPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(plan_and_apply, differing))
        moves = [m for batch, _ in done for m in batch]
        stopped = next((exc for _, exc in done if exc is not None), None)
        result = SnapshotRestore(tag=tag, dry_run=dry_run, moves=moves,
                                 restored_versions=restored, data=data_plan,
                                 unchanged=unchanged)
        if stopped is not None:
            result.stopped, result.stopped_code = stopped.message, stopped.exit_code
            result.todo = _todo(tag, moves)
            return result  # the data stays as it is: the registry's moves come first
        if data_plan and not dry_run:
            self._apply_data(data_plan)
        return result

    def _recorded(self, names: list[str], reason: str) -> dict[str, AuditEvent]:
        """The models whose newest audit event is a stage move of this restore (``reason``
        names the tag): read from the vault, never from a cache, since a rerun must see the
        event a killed run wrote and never applied."""
        audit = self.stages.audit

        def newest(name: str) -> tuple[str, AuditEvent | None]:
            try:
                event = audit.log(name).last()
            except NotFound:
                return name, None
            if event is None or event.action not in MOVES or event.reason != reason:
                return name, None
            return name, event

        with ThreadPoolExecutor(max_workers=self.snapshots.workers(len(names))) as pool:
            return {n: e for n, e in pool.map(newest, names) if e is not None}

    def _behind(self, name: str, event: AuditEvent, current: dict[str, int]
                ) -> SnapshotMove | None:
        """The recorded move ``event``, if MLflow does not follow it in full (the alias, a
        stage tag, MLflow's stage field); None when it does."""
        checker = UnauditedMoves(self.ctx, self.stages.audit, self.stages)
        if not [d for d in checker.of_model(name, fresh=True) if GONE not in d.detail]:
            return None
        stage = event.to if event.to in STAGE_ALIASES else str(event.from_)
        return SnapshotMove(name=name, alias=stage, kind="stage",
                            from_version=current.get(stage),
                            to_version=event.version if event.to in STAGE_ALIASES else None,
                            semver=event.semver, event=event.seq)

    def _finish(self, name: str, item: SnapshotMove) -> int | None:
        try:
            self.stages.finish(name)
        except YardError:
            item.status = "not undone"  # its event stands, MLflow still behind it
            raise
        item.status = "finished"
        return item.event

    def _find(self, name: str, holder: dict[str, Any]) -> VersionRecord | None:
        """The version a snapshot names: its number if it still carries the recorded semver,
        else the version with that semver now (a restored version has a new number). Read
        through the lean reader: one request, and no MLflow import for a no-op restore."""
        reads = self.ctx.reads
        semver = holder.get("semver")
        try:
            record = reads.get_version(name, int(holder["version"]))
            if is_visible(record) and (semver is None or record.tags.get(T_SEMVER) == semver):
                return record
        except NotFound:
            pass
        if semver is None:
            return None
        try:
            if not isinstance(reads, Tracking):
                return reads.version_by_tag(name, T_SEMVER, str(semver))
            return next((v for v in reads.versions(name)
                         if is_visible(v) and v.tags.get(T_SEMVER) == semver), None)
        except NotFound:
            return None

    def _restore_model(self, name: str, wanted: dict[str, dict[str, Any]],
                       current: dict[str, int], found: dict[str, VersionRecord | None],
                       reason: str, dry_run: bool, finishing: SnapshotMove | None = None
                       ) -> tuple[list[SnapshotMove], YardError | None]:
        """The model's moves, planned, then applied in order until one fails: that one says
        whether it was undone, and the ones after it were not tried (``not applied``).
        ``finishing``: a move an earlier run recorded, finished first."""
        planned: list[tuple[SnapshotMove, Callable[[SnapshotMove], int | None]]] = []
        if finishing is not None:
            planned.append((finishing, functools.partial(self._finish, name)))
        holders = {s: current.get(s) for s in STAGE_ALIASES}  # simulated as moves apply
        tracking = self.ctx.tracking

        def move(record: VersionRecord, stage: str, alias: str, previous: int | None) -> None:
            item = SnapshotMove(name=name, alias=alias, kind="stage", from_version=previous,
                                to_version=record.version if stage != "none" else None,
                                semver=record.tags.get(T_SEMVER))
            seen = dict(holders)

            def apply(item: SnapshotMove) -> int | None:
                def failed(event: AuditEvent, undone: bool) -> None:
                    item.event, item.status = event.seq, "undone" if undone else "not undone"

                return self.stages.move(name, record, stage, "snapshot_restore",
                                        reason=reason, detail={"snapshot": reason},
                                        holders=seen, failed=failed).event

            planned.append((item, apply))

        # stages: production first (a version taking it leaves staging), then staging
        for stage in ("production", "staging"):
            record = found.get(stage)
            if stage in wanted and record is not None and holders[stage] != record.version:
                previous = holders[stage]
                move(record, stage, stage, previous)
                for s in STAGE_ALIASES:
                    if holders[s] == record.version:
                        holders[s] = None
                holders[stage] = record.version
        for stage in STAGE_ALIASES:
            holder = holders[stage]
            if stage not in wanted and holder is not None:
                move(tracking.get_version(name, holder), "none", stage, holder)
                holders[stage] = None
        # user aliases (set in MLflow, then recorded)
        for alias in sorted(wanted):
            record = found.get(alias)
            if alias in STAGE_ALIASES or record is None:
                continue
            item = SnapshotMove(name=name, alias=alias, kind="alias",
                                from_version=current.get(alias), to_version=record.version,
                                semver=record.tags.get(T_SEMVER))
            planned.append((item, functools.partial(self._set_alias, name, alias,
                                                    record.version, reason)))
        for alias, number in sorted(current.items()):
            if alias in STAGE_ALIASES or alias in wanted:
                continue
            item = SnapshotMove(name=name, alias=alias, kind="alias", from_version=number,
                                to_version=None, semver=None)
            planned.append((item, functools.partial(self._set_alias, name, alias, None,
                                                    reason)))
        moves = [item for item, _ in planned]
        if dry_run:
            return moves, None
        stopped: YardError | None = None
        for item, apply in planned:
            if stopped is not None:
                item.status = "not applied"  # not tried: a part failed before it
                continue
            try:
                item.event = apply(item)
                item.applied = True
                if item.status == "planned":
                    item.status = "applied"
            except YardError as exc:
                stopped = exc
                item.error = exc.message
                if item.status == "planned":  # no event written: nothing of it happened
                    item.status = "not applied"
                if item.status == "not audited":
                    item.applied = True
        return moves, stopped

    def _set_alias(self, name: str, alias: str, version: int | None, reason: str,
                   item: SnapshotMove) -> int | None:
        """A user alias set (or removed: ``version`` None), then its event recorded; when the
        record fails, MLflow is read back so the report says whether the alias moved."""
        try:
            if version is None:
                return self.stages.remove_alias(name, alias, reason=reason).event
            return self.stages.set_alias(name, version, alias, reason=reason).event
        except YardError:
            try:
                moved = self.ctx.reads.alias_holder(name, alias) == version
            except YardError:
                moved = False
            if moved:
                item.status = "not audited"  # the alias is as wanted, its event not written
            raise

    # -- data ---------------------------------------------------------------------------------
    def _data_plan(self, snapshot: Snapshot) -> list[dict[str, str]]:
        """The DVC outputs whose recorded hash differs from the one ``dvc.lock`` has now;
        refuses a dirty workspace (before anything moves)."""
        from modelyard.project import dvc as dvc_support
        from modelyard.project import git

        if not snapshot.data:
            raise UserError(f"snapshot {snapshot.tag} recorded no DVC data")
        root = Path(snapshot.git.get("dvc_root") or self.ctx.settings.project_root
                    or Path.cwd()).absolute()
        dvc_root = dvc_support.find_root(root)
        if dvc_root is None:
            raise UserError(f"{root} is not inside a DVC project; cannot restore data")
        _, _, dirty = git.state(dvc_root)
        if dirty == "true":
            raise UserError(f"{dvc_root} has uncommitted changes: commit or stash them before "
                            "restoring data; nothing changed")
        now = {o["path"]: o["md5"] for o in dvc_support.locked_outputs(dvc_root)}
        return [{"path": str(dvc_root / o["path"]), "md5": o["md5"],
                 "current": now.get(o["path"], "")}
                for o in snapshot.data if now.get(o["path"]) != o["md5"]]

    def _apply_data(self, plan: list[dict[str, str]]) -> None:
        from modelyard.project import dvc as dvc_support

        for item in plan:
            dvc_support.checkout(Path(item["path"]), item["md5"])


def _todo(tag: str, moves: list[SnapshotMove]) -> str:
    """What finishes a stopped restore, once the part that failed is back."""
    again = f"run `modelyard snapshot restore {tag} --yes` again once it is back"
    behind = sorted({m.name for m in moves if m.status == "not undone"})
    if behind:
        return (f"{again} (it finishes the recorded moves without a second event), or "
                + ", ".join(f"`modelyard recover {n}`" for n in behind))
    unaudited = sorted({f"{m.name}@{m.alias}" for m in moves if m.status == "not audited"})
    if unaudited:
        return f"{again}; alias(es) set without their audit event: {', '.join(unaudited)}"
    return again
