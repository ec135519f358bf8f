"""Retention: archive or delete versions beyond the newest N, never a holder of an alias.

``cleanup`` is the verb; ``enforce`` runs after each registration when ``max_versions`` is
set: the oldest versions beyond it that hold no alias and no stage, and are not in a
snapshot's newest state, are archived (``archive_old_versions = true``) or deleted (after a
backup when a backup store is configured; a failed backup deletes nothing).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from modelyard.context import Context
from modelyard.core.entities import CleanupResult
from modelyard.core.names import STAGE_ALIASES, T_SEMVER, T_STAGE, check_name
from modelyard.core.records import SEARCH_PAGE_MAX, VersionRecord
from modelyard.core.refs import is_visible
from modelyard.errors import InvalidInput, NotFound, YardError
from modelyard.trail.audit import Auditor

log = logging.getLogger("modelyard.retention")


BackupHook = Callable[[str, list[int]], bool]  # (name, versions) -> all backed up
SnapshotHook = Callable[[str], set[int]]  # name -> versions a snapshot's newest state holds


class Retention:
    def __init__(self, ctx: Context, audit: Auditor, *, backup: BackupHook | None = None,
                 snapshot_versions: SnapshotHook | None = None) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.audit = audit
        self.backup = backup
        self.snapshot_versions = snapshot_versions

    def enforce(self, name: str) -> CleanupResult | None:
        """Apply ``max_versions`` after a registration (audited as a ``cleanup`` event).

        Never raises: a refusal (permissions, a failed backup) is logged and leaves every
        version as it was."""
        keep = self.ctx.settings.max_versions
        if not keep:
            return None
        delete = not self.ctx.settings.archive_old_versions
        try:
            return self.cleanup(name, keep, delete=delete, yes=True, reason=(
                f"max_versions = {keep} (after registration)"), bounded=True)
        except YardError as exc:
            log.warning("%s: max_versions = %s not applied: %s", name, keep, exc.message)
            return None

    def cleanup(self, name: str, keep: int | None = None, *, delete: bool = False,
                yes: bool = False, reason: str | None = None,
                bounded: bool = False) -> CleanupResult:
        """Archive (or with ``delete``, delete) versions beyond the newest ``keep``.

        Never touches a version holding any alias or a stage. Returns the plan and does
        nothing unless ``yes``. Deleting removes the version's artifact files and its vault
        manifest too. ``bounded`` (after a registration): read only the newest ``keep`` and,
        below them, what may still need archiving (stage ``none``, or a stage that protects
        it) or deleting, with bounded searches; versions without a modelyard stage tag
        (never managed) are left to the ``cleanup`` verb.
        """
        keep = self.ctx.settings.max_versions if keep is None else keep
        if not keep or keep < 1:
            raise InvalidInput("give --keep N (N >= 1), or set max_versions in the policy")
        if bounded:
            versions = self._newest_and_beyond(check_name(name), keep, delete)
        else:
            visible = (v for v in self.ctx.listing.versions(check_name(name))
                       if is_visible(v))
            versions = sorted(visible, key=lambda v: v.version, reverse=True)
        plan: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        in_snapshots = self._in_snapshots(name) if versions[keep:] else set()
        for record in versions[keep:]:
            row: dict[str, Any] = {"version": record.version,
                                   "semver": record.tags.get(T_SEMVER),
                   "stage": record.tags.get(T_STAGE, "none")}
            why = _protected(record) or (
                "in a snapshot" if record.version in in_snapshots else None)
            if why:
                skipped.append({**row, "why": why})
            elif delete:
                plan.append({**row, "action": "delete"})
            elif row["stage"] != "archived":
                plan.append({**row, "action": "archive"})
        result = CleanupResult(name=name, keep=keep, delete=delete, applied=False, plan=plan,
                               skipped=skipped)
        if not yes or not plan:
            return result
        from modelyard.backend.identity import EDIT, MANAGE

        if reason is None:  # the cleanup verb
            self.ctx.permissions.require(name, MANAGE, "clean up versions")
        else:
            self.ctx.permissions.require(name, MANAGE if delete else EDIT,
                                         "delete old versions" if delete else
                                         "archive old versions")
        if delete and self.ctx.backup is not None:
            numbers = [row["version"] for row in plan]
            if self.backup is None:
                raise InvalidInput(f"{name}: a backup store is configured but backups are "
                                   "not available here; nothing deleted")
            if not self.backup(name, numbers):
                raise InvalidInput(f"{name}: the backup of #{numbers} did not complete; "
                                   "nothing deleted")
        done: list[dict[str, Any]] = []
        for row in plan:
            try:
                record = self.tracking.get_version(name, row["version"])
            except NotFound:
                continue
            why = _protected(record)
            if why:  # it gained an alias since the plan was made
                skipped.append({**row, "why": why})
                continue
            if row["action"] == "archive":
                self.tracking.set_version_tags(name, record.version, {T_STAGE: "archived"})
            else:
                location = self.tracking.artifact_location(record)
                self.tracking.delete_version(name, record.version)
                try:
                    self.tracking.artifacts.delete_artifacts(location)
                except YardError as exc:
                    log.warning("artifacts of %s #%s not deleted: %s", name, record.version,
                                exc.message)
                    row = {**row, "artifacts_left": location}
                with contextlib.suppress(YardError):
                    self.ctx.vault.delete_manifest(name, record.version)
            done.append(row)
        result.plan = done
        result.applied = True
        if done:
            verb = "deleted" if delete else "archived"
            event = self.audit.record(name, "cleanup", version=None, from_=None, to=None,
                                 reason=reason or f"keep the newest {keep}",
                                 detail={verb: [r["version"] for r in done], "keep": keep})
            result.event = event.seq
        return result


    def _newest_and_beyond(self, name: str, keep: int, delete: bool) -> list[VersionRecord]:
        """The newest ``keep`` visible versions, then (newest first) the visible ones below
        them that a cleanup may act on or must report: all of them when deleting (deleted
        ones are gone next time), else those in stage none, staging or production (archived
        ones are done). Each read is a bounded search; none lists the model."""
        listing = self.ctx.listing
        head: list[VersionRecord] = []
        below: int | None = None
        size = min(SEARCH_PAGE_MAX, keep + 8)
        while len(head) < keep:
            page = listing.search_versions(name, below=below, limit=size)
            head += [v for v in page if is_visible(v)][:keep - len(head)]
            if len(page) < size:
                break
            below = page[-1].version
        if len(head) < keep:
            return head  # nothing beyond the newest `keep`
        tags: list[tuple[str, str] | None] = (
            [None] if delete else [(T_STAGE, s) for s in ("none", *STAGE_ALIASES)])
        rest: dict[int, VersionRecord] = {}
        for tag in tags:
            below = head[-1].version
            while True:
                page = listing.search_versions(name, tag=tag, below=below,
                                               limit=SEARCH_PAGE_MAX)
                rest.update((v.version, v) for v in page if is_visible(v))
                if len(page) < SEARCH_PAGE_MAX:
                    break
                below = page[-1].version
        aliases = listing.get_model(name).aliases if rest else {}
        for record in rest.values():  # searches leave aliases out; the model has them
            record.aliases = sorted(a for a, v in aliases.items() if v == record.version)
        return head + sorted(rest.values(), key=lambda v: v.version, reverse=True)

    def _in_snapshots(self, name: str) -> set[int]:
        if self.snapshot_versions is None:
            return set()
        try:
            return set(self.snapshot_versions(name))
        except YardError as exc:
            # Cannot tell which versions a snapshot needs: protect them all.
            raise InvalidInput(f"{name}: snapshots unreadable ({exc.message}); nothing "
                               "removed") from exc


def _protected(record: VersionRecord) -> str | None:
    if record.aliases:
        return "holds alias " + ", ".join(record.aliases)
    stage = record.tags.get(T_STAGE)
    if stage in STAGE_ALIASES:
        return f"in stage {stage}"
    return None
