"""``adopt``: bring versions registered by plain MLflow under modelyard.

Versions are adopted in version-number order: a semver (1.0.0 first, then bumped by the
registration rules), a manifest in the vault, and the stage from the production / staging
aliases. Already managed versions are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from modelyard.context import Context
from modelyard.core.entities import ModelVersion
from modelyard.core.names import STATUS_PENDING, T_SEMVER, T_STATUS, check_name
from modelyard.core.records import VersionRecord
from modelyard.errors import Conflict, YardError
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
        stage from the production / staging aliases. Managed versions are left alone."""
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
        adopted: list[ModelVersion] = []
        for record in todo:
            # Earlier records carry the tags of the versions adopted before this one.
            earlier = [r for r in records if r.version < record.version
                       and r.tags.get(T_STATUS) != STATUS_PENDING]
            adopted.append(self._adopt_version(record, earlier))
        log.info("adopted %d version(s) of %s", len(adopted), name)
        return adopted

    def _adopt_version(self, record: VersionRecord, earlier: list[VersionRecord]
                       ) -> ModelVersion:
        params: dict[str, str] = {}
        if record.run_id:
            with contextlib.suppress(YardError):
                params = self.tracking.get_run(record.run_id)["params"]
        with tempfile.TemporaryDirectory(prefix="modelyard-adopt-") as tmp:
            local = self.tracking.artifacts.download(record.source, Path(tmp))
            return self.registrar.manage(record, local, params, earlier)
