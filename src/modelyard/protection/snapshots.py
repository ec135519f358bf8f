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

import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.context import Context
from modelyard.core.entities import ModelVersion, Result
from modelyard.core.names import T_MANIFEST, T_SEMVER, check_name
from modelyard.core.refs import is_visible
from modelyard.errors import (
    Conflict,
    InvalidInput,
    ModelNotFound,
    NotFound,
    StorageError,
)
from modelyard.lifecycle.stages import Stages
from modelyard.store.vault import SNAPSHOTS, snapshot_key
from modelyard.trail.audit import now_iso

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.protection.snapshot_restore import SnapshotRestore

log = logging.getLogger("modelyard.snapshots")

BackupHook = Callable[[list[tuple[str, int]]], Any]
RestoreHook = Callable[[str, str], ModelVersion]

_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
FORMAT = 1


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.fullmatch(tag) or ".." in tag:
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

    def workers(self, items: int) -> int:
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
        hashes. ``dry_run`` changes nothing and returns the plan (``snapshot_restore.py``)."""
        from modelyard.protection.snapshot_restore import SnapshotRestorer

        return SnapshotRestorer(self).restore(tag, dry_run=dry_run, data=data)


def _key(entry: dict[str, Any] | None) -> str | None:
    """A version's identity across restores: its semver (numbers change), else its number."""
    if entry is None:
        return None
    return str(entry.get("semver") or f"#{entry.get('version')}")


def _brief(entry: dict[str, Any] | None) -> dict[str, Any]:
    if entry is None:
        return {}
    return {"version": entry.get("version"), "semver": entry.get("semver")}
