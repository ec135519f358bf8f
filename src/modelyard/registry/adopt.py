"""``adopt``: bring versions registered by plain MLflow under modelyard.

Versions are adopted in version-number order: a semver (1.0.0 first, then bumped by the
registration rules), a manifest in the vault, and the stage MLflow gives them: the production
/ staging alias, else MLflow's (deprecated) stage field. One version holds each stage: the
alias holder, else the newest with the stage field; any other version MLflow says holds it is
adopted ``archived`` (logged). The holders get the stage aliases and fields, and their adopt
events record them as the trail's holders. Already managed versions are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from modelyard.context import Context
from modelyard.core.entities import ModelVersion
from modelyard.core.names import (
    MLFLOW_STAGE,
    STAGE_ALIASES,
    STATUS_PENDING,
    T_SEMVER,
    T_STATUS,
    check_name,
)
from modelyard.core.records import VersionRecord
from modelyard.errors import Conflict, YardError
from modelyard.registry.pickles import check_pickles
from modelyard.registry.registration import Registrar

log = logging.getLogger("modelyard.adopt")


class Adopter:
    def __init__(self, ctx: Context, registrar: Registrar) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.registrar = registrar

    def adopt(self, name: str) -> list[ModelVersion]:
        """Bring versions registered by plain MLflow under modelyard, in version-number order:
        semver (1.0.0 first, then bumped by the registration rules), manifest in the vault,
        stage from MLflow's stage aliases and stage fields (one holder each: see ``_stages``).
        Managed versions are left alone."""
        check_name(name)
        records = self.tracking.versions(name)
        managed = [r for r in records if r.tags.get(T_SEMVER)]
        todo = [r for r in records if not r.tags.get(T_SEMVER)
                and r.tags.get(T_STATUS) != STATUS_PENDING
                and r.status.upper() in ("READY", "")]
        if not todo:
            return []
        newest_managed = max(managed, key=lambda r: r.version, default=None)
        if newest_managed is not None:
            older = [r.version for r in todo if r.version < newest_managed.version]
            if older:
                shown = ", ".join(f"#{n}" for n in older[:5])
                raise Conflict(
                    f"{name}: version(s) {shown} are older than the managed version "
                    f"#{newest_managed.version} (v{newest_managed.tags[T_SEMVER]}); semvers "
                    "follow MLflow version numbers, so they cannot be adopted"
                )
        stages, holders = _stages(name, records, {r.version for r in todo})
        adopted: list[ModelVersion] = []
        for record in todo:
            # Earlier records carry the tags of the versions adopted before this one.
            earlier = [r for r in records if r.version < record.version
                       and r.tags.get(T_STATUS) != STATUS_PENDING]
            stage = stages.get(record.version, "none")
            adopted.append(self._adopt_version(record, earlier, stage))
            # MLflow tells the same as the tags: the alias and the stage field of a holder;
            # a version archived here no longer loads as models:/NAME/Production.
            if stage in STAGE_ALIASES and stage not in record.aliases:
                self.tracking.set_alias(name, stage, record.version)
            if record.current_stage != MLFLOW_STAGE[stage] and (
                    stage in STAGE_ALIASES or record.current_stage in _HELD):
                self.tracking.set_stage_field(name, record.version, stage)
        for stage, number in holders.items():
            # A managed holder whose field plain MLflow archived (archive_existing_versions)
            # loads as models:/NAME/Production again.
            held = next(r for r in records if r.version == number)
            if number not in stages and held.current_stage != MLFLOW_STAGE[stage]:
                self.tracking.set_stage_field(name, number, stage)
        log.info("adopted %d version(s) of %s", len(adopted), name)
        return adopted

    def _adopt_version(self, record: VersionRecord, earlier: list[VersionRecord],
                       stage: str) -> ModelVersion:
        params: dict[str, str] = {}
        if record.run_id:
            with contextlib.suppress(YardError):
                params = self.tracking.get_run(record.run_id)["params"]
        with tempfile.TemporaryDirectory(prefix="modelyard-adopt-") as tmp:
            local = self.tracking.artifacts.download(record.source, Path(tmp))
            # Registered around modelyard: its pickles are of unknown origin until checked.
            check_pickles(local, f"{record.name} #{record.version}",
                          extra=self.ctx.settings.trusted_pickle_types)
            return self.registrar.manage(record, local, params, earlier, stage)


_HELD = {MLFLOW_STAGE[s] for s in STAGE_ALIASES}


def _stages(name: str, records: list[VersionRecord], todo: set[int]
            ) -> tuple[dict[int, str], dict[str, int]]:
    """The stage each version to adopt gets, and each stage's holder: its alias holder, else
    the newest version whose stage field says it; another version to adopt that MLflow says
    holds it (field or alias) is ``archived``, and logged. A holder already managed keeps
    the stage: the versions to adopt that claim it are archived."""
    chosen: dict[int, str] = {}
    holders: dict[str, int] = {}
    for stage in STAGE_ALIASES:
        by_alias = [r.version for r in records if stage in r.aliases]
        by_field = sorted(r.version for r in records if r.current_stage == MLFLOW_STAGE[stage])
        holder = by_alias[0] if by_alias else (by_field[-1] if by_field else None)
        if holder is None:
            continue
        holders[stage] = holder
        if holder in todo and holder not in chosen:
            chosen[holder] = stage
        others = sorted(({*by_alias, *by_field} - {holder}) & todo)
        for number in others:
            chosen.setdefault(number, "archived")
        if others:
            log.warning("%s: MLflow says %s hold %s; #%s keeps it, the others are adopted "
                        "archived", name, ", ".join(f"#{n}" for n in sorted({holder, *others})),
                        stage, holder)
    return chosen, holders
