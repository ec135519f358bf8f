"""Snapshots: the whole system's state at a point in time, and one-command rollback to it.

A snapshot records, for every model (or the ones named), every alias and stage holder
(version, semver, manifest hash) and the model's visible versions, and, inside a project,
the git commit and the DVC data hashes of ``dvc.lock``. It is immutable (written with
create-if-absent at ``snapshots/TAG.json`` in the vault, and in the backup store when one is
configured), and its versions are backed up when a backup hook is given.

``restore`` puts every alias and stage back where the snapshot had it, through ``Stages`` (so
each move is an audit event whose reason names the snapshot; gates are not asked, it is a
restore), restoring deleted versions first through the ``restore`` hook. It reads the
current state in one call and moves only what differs, models in parallel.

A restore that ended early (killed, or a part lost) is finished by running it again: a model
whose newest audit event is a move of this same restore has that move applied as recorded
(``Stages.finish``, no second event) when MLflow does not follow it yet (its alias, its stage
tags or MLflow's stage field behind), and the rest is planned from the trail's holders.

>>> yard.protection.snapshots.create("before-q3", message="before the Q3 retrain")
>>> yard.protection.snapshots.restore("before-q3", dry_run=True).moves
"""

from __future__ import annotations

import builtins
import functools
import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.backend.tracking import Tracking
from modelyard.context import Context
from modelyard.core.entities import ModelVersion, Result
from modelyard.core.names import STAGE_ALIASES, T_MANIFEST, T_SEMVER, check_name
from modelyard.core.records import VersionRecord
from modelyard.core.refs import is_visible
from modelyard.errors import (
    Conflict,
    InvalidInput,
    ModelNotFound,
    NotFound,
    StorageError,
    UserError,
    YardError,
)
from modelyard.lifecycle.stages import MOVES, Stages
from modelyard.lifecycle.unaudited import GONE, UnauditedMoves
from modelyard.store.vault import SNAPSHOTS, snapshot_key
from modelyard.trail.audit import AuditEvent, now_iso

log = logging.getLogger("modelyard.snapshots")

BackupHook = Callable[[list[tuple[str, int]]], Any]
RestoreHook = Callable[[str, str], ModelVersion]

_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
FORMAT = 1


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.match(tag) or ".." in tag:
        raise InvalidInput(f"invalid snapshot tag {str(tag)[:60]!r}: use up to 128 letters, "
                           "digits, '.', '_' or '-'")
    return tag


# -- results ------------------------------------------------------------------------------------
@dataclass
class Snapshot(Result):
    """A recorded state: ``models[NAME] = {"aliases": {alias: {version, semver,
    manifest_sha256}}, "versions": [{version, semver}]}``."""

    tag: str
    created_at: str
    created_by: str
    message: str | None
    models: dict[str, dict[str, Any]]
    git: dict[str, str] = field(default_factory=dict)
    data: list[dict[str, str]] = field(default_factory=list)
    scope: list[str] | None = None  # the models named at creation, None = all
    include_models: bool = True
    include_data: bool = True
    format: int = FORMAT

    def holders(self, name: str) -> dict[str, dict[str, Any]]:
        aliases: dict[str, dict[str, Any]] = self.models.get(name, {}).get("aliases", {})
        return aliases

    def versions_of(self, name: str) -> set[int]:
        return {int(h["version"]) for h in self.holders(name).values()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


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


@dataclass
class SnapshotDiff(Result):
    tag: str
    other: str  # another tag, or "now"
    moved: list[dict[str, Any]] = field(default_factory=list)
    added: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    models_added: list[str] = field(default_factory=list)
    models_removed: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.moved or self.added or self.deleted or self.models_added
                    or self.models_removed)


# -- the verb ------------------------------------------------------------------------------------
class Snapshots:
    """snapshot create / list / show / diff / restore, and the versions snapshots hold."""

    def __init__(self, ctx: Context, stages: Stages, *, backup: BackupHook | None = None,
                 restore: RestoreHook | None = None) -> None:
        self.ctx = ctx
        self.stages = stages
        self.backup = backup
        self.restore_hook = restore

    def _workers(self, items: int) -> int:
        # SQLite takes one writer at a time: parallel moves would only queue for its lock.
        cap = 1 if self.ctx.settings.is_embedded else 12
        return max(1, min(cap, items))

    # -- the state now ------------------------------------------------------------------------
    def _state(self, names: list[str] | None) -> dict[str, dict[str, Any]]:
        """Every model's (or the named ones') aliases with their holders, and its versions."""
        reads = self.ctx.reads
        models = {m.name: m for m in reads.list_models()}
        if names is not None:
            for name in names:
                if name not in models:
                    raise ModelNotFound(name=name)
        chosen = sorted(names if names is not None else models)

        def one(name: str) -> tuple[str, dict[str, Any]]:
            versions = [v for v in reads.versions(name) if is_visible(v)]
            by_number = {v.version: v for v in versions}
            aliases = {}
            for alias, number in sorted(models[name].aliases.items()):
                record = by_number.get(number)
                aliases[alias] = {
                    "version": number,
                    "semver": record.tags.get(T_SEMVER) if record else None,
                    "manifest_sha256": record.tags.get(T_MANIFEST) if record else None,
                }
            return name, {"aliases": aliases,
                          "versions": [{"version": v.version, "semver": v.tags.get(T_SEMVER)}
                                       for v in versions]}

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(chosen)))) as pool:
            return dict(pool.map(one, chosen))

    def _project(self) -> tuple[dict[str, str], list[dict[str, str]]]:
        """(git commit / branch / dirty, DVC data hashes) of the project, if inside one."""
        from modelyard.project import dvc as dvc_support
        from modelyard.project import git

        root = Path(self.ctx.settings.project_root or Path.cwd()).absolute()
        commit, branch, dirty = git.state(root)
        state = {"commit": commit, "branch": branch, "dirty": dirty} if commit else {}
        dvc_root = dvc_support.find_root(root)
        data = dvc_support.locked_outputs(dvc_root) if dvc_root else []
        if dvc_root is not None and data:
            state["dvc_root"] = str(dvc_root)
        return state, data

    # -- create -------------------------------------------------------------------------------
    def create(self, tag: str, *, models: list[str] | None = None, message: str | None = None,
               include_data: bool = True, include_models: bool = True) -> Snapshot:
        """Record the state now under ``tag`` (immutable: an existing tag is refused)."""
        check_tag(tag)
        names = [check_name(n) for n in models] if models else None
        store = self.ctx.vault.store
        key = snapshot_key(tag)
        if store.exists(key):
            raise Conflict(f"snapshot {tag!r} exists; snapshots are immutable (pick a new tag)")
        state = self._state(names) if include_models else {}
        git_state, data = self._project() if include_data else ({}, [])
        snapshot = Snapshot(tag=tag, created_at=now_iso(), created_by=self.ctx.user,
                            message=message, models=state, git=git_state, data=data,
                            scope=names, include_models=include_models,
                            include_data=include_data)
        held = sorted({(name, int(h["version"])) for name, entry in state.items()
                       for h in entry["aliases"].values()})
        if self.backup is not None and held:
            self.backup(held)  # before the record: a snapshot never names a version not kept
        body = json.dumps(snapshot.to_dict(), indent=1, default=str).encode()
        if not store.put_if_absent(key, body):
            raise Conflict(f"snapshot {tag!r} exists; snapshots are immutable (pick a new tag)")
        backup = self.ctx.backup
        if backup is not None:
            try:
                backup.store.put_if_absent(key, body)
            except StorageError as exc:
                log.error("snapshot %s not copied to the backup store: %s", tag, exc.message)
        return snapshot

    # -- read ---------------------------------------------------------------------------------
    def show(self, tag: str) -> Snapshot:
        check_tag(tag)
        try:
            raw = self.ctx.vault.store.get_bytes(snapshot_key(tag))
        except StorageError as exc:
            if "not found" not in exc.message:
                raise
            backup = self.ctx.backup
            if backup is None or not backup.store.exists(snapshot_key(tag)):
                raise NotFound(f"no snapshot {tag!r} (see `modelyard snapshot list`)") from None
            raw = backup.store.get_bytes(snapshot_key(tag))
        return Snapshot.from_json(json.loads(raw))

    def list(self) -> list[Snapshot]:
        """Every snapshot, oldest first."""
        store = self.ctx.vault.store
        keys = [k for k in store.list(SNAPSHOTS) if k.endswith(".json")]

        def read(key: str) -> Snapshot:
            return Snapshot.from_json(json.loads(store.get_bytes(key)))

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(keys)))) as pool:
            found = list(pool.map(read, keys))
        return sorted(found, key=lambda s: (s.created_at, s.tag))

    def versions(self, name: str) -> set[int]:
        """The versions of ``name`` any snapshot references (retention keeps them)."""
        out: set[int] = set()
        for snapshot in self.list():
            out |= snapshot.versions_of(name)
        return out

    # -- diff ---------------------------------------------------------------------------------
    def diff(self, tag: str, other: str | None = None) -> SnapshotDiff:
        """What changed from snapshot ``tag`` to ``other`` (another tag, default now): aliases
        moved, versions added or deleted (by semver), models added or removed."""
        before = self.show(tag)
        if other is not None:
            after_models = self.show(other).models
        else:
            names = before.scope
            if names is not None:
                live = {m.name for m in self.ctx.reads.list_models()}
                names = [n for n in names if n in live]
            after_models = self._state(names)
        result = SnapshotDiff(tag=tag, other=other or "now")
        result.models_removed = sorted(set(before.models) - set(after_models))
        result.models_added = sorted(set(after_models) - set(before.models))
        for name in sorted(set(before.models) | set(after_models)):
            old = before.models.get(name, {})
            new = after_models.get(name, {})
            old_aliases, new_aliases = old.get("aliases", {}), new.get("aliases", {})
            for alias in sorted(set(old_aliases) | set(new_aliases)):
                a, b = old_aliases.get(alias), new_aliases.get(alias)
                if _key(a) != _key(b):
                    result.moved.append({"name": name, "alias": alias,
                                         "before": _brief(a), "after": _brief(b)})
            old_versions = {_key(v): v for v in old.get("versions", [])}
            new_versions = {_key(v): v for v in new.get("versions", [])}
            for k in sorted(set(new_versions) - set(old_versions), key=str):
                result.added.append({"name": name, **_brief(new_versions[k])})
            for k in sorted(set(old_versions) - set(new_versions), key=str):
                result.deleted.append({"name": name, **_brief(old_versions[k])})
        return result

    # -- restore ------------------------------------------------------------------------------
    def restore(self, tag: str, *, dry_run: bool = False, data: bool = False
                ) -> SnapshotRestore:
        """Every alias and stage back where snapshot ``tag`` had it (deleted versions restored
        first through the restore hook); with ``data``, DVC-tracked data back to the recorded
        hashes. ``dry_run`` changes nothing and returns the plan."""
        snapshot = self.show(tag)
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
        workers = self._workers(len(differing))

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
        if missing and self.restore_hook is None:
            shown = ", ".join(f"{n} v{s}" for n, s in missing[:5])
            raise NotFound(f"snapshot {tag} needs version(s) no longer in the registry: {shown}"
                           " (configure a backup store and restore them, then try again); "
                           "nothing changed")
        restored: list[dict[str, Any]] = []
        if missing and not dry_run:
            assert self.restore_hook is not None
            brought: dict[tuple[str, str], VersionRecord] = {}
            for name, semver in missing:
                mv = self.restore_hook(name, semver)
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

    def _recorded(self, names: builtins.list[str], reason: str) -> dict[str, AuditEvent]:
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

        with ThreadPoolExecutor(max_workers=self._workers(len(names))) as pool:
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
                       ) -> tuple[builtins.list[SnapshotMove], YardError | None]:
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
    def _data_plan(self, snapshot: Snapshot) -> builtins.list[dict[str, str]]:
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

    def _apply_data(self, plan: builtins.list[dict[str, str]]) -> None:
        from modelyard.project import dvc as dvc_support

        for item in plan:
            dvc_support.checkout(Path(item["path"]), item["md5"])


def _todo(tag: str, moves: builtins.list[SnapshotMove]) -> str:
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


def _key(entry: dict[str, Any] | None) -> str | None:
    """A version's identity across restores: its semver (numbers change), else its number."""
    if entry is None:
        return None
    return str(entry.get("semver") or f"#{entry.get('version')}")


def _brief(entry: dict[str, Any] | None) -> dict[str, Any]:
    if entry is None:
        return {}
    return {"version": entry.get("version"), "semver": entry.get("semver")}
