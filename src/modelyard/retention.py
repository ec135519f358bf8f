"""Retention: archive or delete versions beyond the newest N, never a holder of an alias."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from modelyard.audit import Auditor
from modelyard.context import Context
from modelyard.entities import CleanupResult
from modelyard.errors import InvalidInput, NotFound, YardError
from modelyard.names import STAGE_ALIASES, T_SEMVER, T_STAGE, check_name
from modelyard.refs import is_visible
from modelyard.tracking import VersionRecord

log = logging.getLogger("modelyard.retention")


class Retention:
    def __init__(self, ctx: Context, audit: Auditor) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.audit = audit

    def cleanup(self, name: str, keep: int | None = None, *, delete: bool = False,
                yes: bool = False) -> CleanupResult:
        """Archive (or with ``delete``, delete) versions beyond the newest ``keep``.

        Never touches a version holding any alias or a stage. Returns the plan and does
        nothing unless ``yes``. Deleting removes the version's artifact files and its vault
        manifest too.
        """
        keep = self.ctx.settings.max_versions if keep is None else keep
        if not keep or keep < 1:
            raise InvalidInput("give --keep N (N >= 1), or set max_versions in the policy")
        visible = (v for v in self.ctx.reads.versions(check_name(name)) if is_visible(v))
        versions = sorted(visible, key=lambda v: v.version, reverse=True)
        plan: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for record in versions[keep:]:
            row: dict[str, Any] = {"version": record.version,
                                   "semver": record.tags.get(T_SEMVER),
                   "stage": record.tags.get(T_STAGE, "none")}
            why = _protected(record)
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
                    self.tracking.delete_artifacts(location)
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
                                 reason=f"keep the newest {keep}",
                                 detail={verb: [r["version"] for r in done], "keep": keep})
            result.event = event.seq
        return result


def _protected(record: VersionRecord) -> str | None:
    if record.aliases:
        return "holds alias " + ", ".join(record.aliases)
    stage = record.tags.get(T_STAGE)
    if stage in STAGE_ALIASES:
        return f"in stage {stage}"
    return None
