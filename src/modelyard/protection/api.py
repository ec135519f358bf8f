"""``yard.protection``: backups, restore, integrity across every layer, snapshots."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context
    from modelyard.core.entities import ModelVersion
    from modelyard.lifecycle.stages import StageChange, Stages
    from modelyard.protection.backup import Backups
    from modelyard.protection.backup_store import BackupProgress, BackupReport, RestoreReport
    from modelyard.protection.debris import Debris, DebrisReport
    from modelyard.protection.integrity import Integrity, IntegrityReport, RepairReport
    from modelyard.protection.integrity import Progress as IntegrityProgress
    from modelyard.protection.restore import Restorer
    from modelyard.protection.snapshots import Snapshots
    from modelyard.registry.loading import Loader
    from modelyard.registry.registration import Registrar
    from modelyard.trail.audit import Auditor


class Protection:
    """A second copy of everything, checked: the backup store, restore from it, verify and
    repair across the artifact store, the vault and the backup store, and snapshots of who
    held what. ``unaudited`` finds stage holders no audit event explains (governance's)."""

    def __init__(self, ctx: Context, loader: Loader, audit: Auditor, registrar: Registrar,
                 stages: Stages, unaudited: Callable[[str | None], list[Any]]) -> None:
        self.ctx = ctx
        self.loader = loader
        self.audit = audit
        self.registrar = registrar
        self.stages = stages
        self.unaudited = unaudited

    @functools.cached_property
    def backups(self) -> Backups:
        from modelyard.protection.backup import Backups

        return Backups(self.ctx, self.loader, self.audit)

    @functools.cached_property
    def restorer(self) -> Restorer:
        from modelyard.protection.restore import Restorer

        return Restorer(self.ctx, self.registrar, self.stages, self.audit, self.backups)

    @functools.cached_property
    def integrity(self) -> Integrity:
        from modelyard.protection.integrity import Integrity

        return Integrity(self.ctx, self.loader)

    @functools.cached_property
    def snapshots(self) -> Snapshots:
        """snapshot ``create`` / ``list`` / ``show`` / ``diff`` / ``restore`` / ``versions``;
        the versions a snapshot names are backed up, and deleted ones restored from the
        backup store, when one is configured.

        >>> yard.protection.snapshots.create("before-q3", message="before the Q3 retrain")
        """
        from modelyard.protection.snapshots import Snapshots

        backup = restore = None
        if self.ctx.settings.backup is not None:
            backups = self.backups

            def backup(targets: list[tuple[str, int]]) -> Any:
                return backups.backup([(name, version) for name, version in targets])

            restore = self.restorer.restore_version
        return Snapshots(self.ctx, self.stages, backup=backup, restore=restore)

    # -- backups and restore (the `backup` store) -------------------------------------------
    def backup(self, targets: list[tuple[str, str | int | None]] | None = None, *,
               all: bool = False, progress: BackupProgress | None = None) -> BackupReport:
        """Copy versions (``[(name, ref)]``, ref None = every version; or ``all``) into the
        backup store: files content-addressed (only what it lacks is sent), manifest, audit
        trail, and the version record last.

        >>> yard.protection.backup([("churn", "production")]).bytes_sent
        """
        return self.backups.backup(targets, all=all, progress=progress)

    def backup_record(self, name: str, version: int) -> dict[str, Any] | None:
        """The version record in the backup store (None: that version is not backed up)."""
        return self.backups.backup_record(name, version)

    def after_move(self, change: StageChange) -> None:
        """Back up a version that entered one of ``backup_stages``."""
        self.backups.after_move(change)

    def backed_up_before_delete(self, name: str, versions: list[int]) -> bool:
        """Retention deletes only what the backup store holds (when one is configured)."""
        return self.backups.backup([(name, v) for v in versions]).ok

    def restore(self, name: str, ref: str | int | None = None, *, aliases: bool = False,
                progress: BackupProgress | None = None) -> RestoreReport:
        """Bring back a version deleted from the registry (``ref``: semver, ``v1.2.0``, its
        old number, or an alias it held), or every deleted version of ``name`` (ref None), as
        new MLflow versions with the same semvers; ``aliases`` takes back what they held."""
        return self.restorer.restore(name, ref, aliases=aliases, progress=progress)

    def restore_version(self, name: str, semver: str) -> ModelVersion:
        """One deleted version back by semver (``NotFound`` when the backup lacks it)."""
        return self.restorer.restore_version(name, semver)

    def restore_all(self, *, aliases: bool = True,
                    progress: BackupProgress | None = None) -> RestoreReport:
        """Every backed-up model into this registry (after its database was lost)."""
        return self.restorer.restore_all(aliases=aliases, progress=progress)

    # -- integrity: verify every layer, repair from the first good copy ----------------------
    def verify_all(self, name: str | None = None, *, progress: IntegrityProgress | None = None
                   ) -> IntegrityReport:
        """Every visible version (or one model's) against its manifest in the artifact store,
        the vault and the backup store: per version and per file, what is missing or differs.

        >>> report = yard.protection.verify_all()
        >>> report.ok, [(p.path, p.layer, p.problem) for p in report.problems]
        """
        report = self.integrity.verify_all(name, progress=progress)
        # A stage holder the audit trail does not explain is a problem of the same kind.
        report.unaudited = [d.to_dict() for d in self.unaudited(name)]
        # So is what a process that died left behind (the vault's unnamed objects only when
        # every model is checked: a manifest of another model may name them).
        found = self.debris.find([name] if name else None, objects=name is None)
        report.debris = [item.to_dict() for item in found.items]
        report.ok = report.ok and not report.unaudited and not report.debris
        return report

    @functools.cached_property
    def debris(self) -> Debris:
        """What processes that died left behind (``protection/debris.py``)."""
        from modelyard.protection.debris import Debris

        return Debris(self.ctx, self.audit)

    def cleanup_debris(self, names: list[str] | None = None, *, grace: float | None = None,
                       dry_run: bool = False) -> DebrisReport:
        """Remove what processes that died left (pending versions, runs, logged models and
        their files, journal entries, unnamed vault objects) older than ``grace`` seconds
        (default ``DEBRIS_GRACE_S``; a registration whose process still runs is never
        touched), and record a ready version's missing audit event; audited.

        >>> yard.protection.cleanup_debris(dry_run=True).items
        """
        from modelyard.protection.debris import DEBRIS_GRACE_S

        return self.debris.cleanup(names, grace=DEBRIS_GRACE_S if grace is None else grace,
                                   dry_run=dry_run)

    def repair(self, name: str | None = None, ref: str | int | None = None, *,
               all: bool = False, progress: IntegrityProgress | None = None) -> RepairReport:
        """Put back every missing or corrupt file from the first layer with a good copy (local
        cache, vault, backup store), each copy's hash checked before it is written; then
        verify again (``verified``).

        >>> yard.protection.repair("churn", "production").files[0].served_by
        'vault'
        """
        return self.integrity.repair(name, ref, all=all, progress=progress)
