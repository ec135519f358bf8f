"""``Yard``: the one facade. The CLI and the serving app call only this.

A thin, typed set of delegations to small verb objects, each built with exactly what it
uses (the context, and the other verbs it needs), in the order of the floors of the house:
records (audit), mechanics (registration, stages, gates, labels), policy (promotion,
retention, transfer, adopt, loading).

>>> yard = Yard()                                   # embedded default, or MLFLOW_TRACKING_URI
>>> mv = yard.register(model, "churn", metrics={"accuracy": 0.91}, data=["data/train.csv"])
>>> mv.semver, mv.bump_reason
('1.0.0', 'first version')
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.backend.tracking import Tracking
from modelyard.context import Context, build_context
from modelyard.core.config import load_settings
from modelyard.core.entities import (
    AliasChange,
    CleanupResult,
    Comparison,
    Decision,
    DoctorReport,
    ImportSummary,
    LineageReport,
    LoadedModel,
    ModelRow,
    ModelVersion,
    TagChange,
    VerifyResult,
)
from modelyard.core.names import check_name
from modelyard.core.records import VersionRecord
from modelyard.core.refs import VersionRef, is_visible, lookup, resolve
from modelyard.core.settings import Settings
from modelyard.errors import UserError
from modelyard.store.vault import Vault

if TYPE_CHECKING:  # pragma: no cover
    # The verb modules are imported when a verb first needs them (``functools.cached_property``
    # below), so a read does not pay for importing the drills, transfers or snapshots.
    from modelyard.backend.identity import Identity
    from modelyard.incidents.detection import Finding
    from modelyard.incidents.drills import DrillReport, Drills, Scenario
    from modelyard.incidents.health import HealthReport
    from modelyard.incidents.recovery import Baseline, Recovery, RecoveryReport
    from modelyard.incidents.reproduce import ReproduceReport
    from modelyard.lifecycle.gates import Gates, Holdout
    from modelyard.lifecycle.labels import Labels
    from modelyard.lifecycle.promotion import Promotion
    from modelyard.lifecycle.retention import Retention
    from modelyard.lifecycle.stages import StageChange, Stages
    from modelyard.lifecycle.unaudited import Drift, StageDrift
    from modelyard.protection.backup import Backups
    from modelyard.protection.backup_store import BackupProgress, BackupReport, RestoreReport
    from modelyard.protection.integrity import Integrity, IntegrityReport
    from modelyard.protection.integrity import Progress as IntegrityProgress
    from modelyard.protection.repair import RepairReport
    from modelyard.protection.restore import Restorer
    from modelyard.protection.snapshots import Snapshot, SnapshotDiff, SnapshotRestore, Snapshots
    from modelyard.registry.adopt import Adopter
    from modelyard.registry.catalog import Catalog
    from modelyard.registry.loading import Loader
    from modelyard.registry.registration import Registrar
    from modelyard.registry.transfer import Transfer
    from modelyard.trail.access import AccessEvent, AccessLog
    from modelyard.trail.audit import AuditEvent, Auditor


class Yard:
    """modelyard's facade over MLflow, the object store and the vault."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.ctx: Context = build_context(settings or load_settings(overrides))
        self.settings: Settings = self.ctx.settings
        self.tracking: Tracking = self.ctx.tracking
        self._drills: Drills | None = None  # keeps its sandbox between drills

    # -- the verbs, each built on first use -----------------------------------------------
    @functools.cached_property
    def _loader(self) -> Loader:
        from modelyard.registry.loading import Loader

        return Loader(self.ctx)

    @functools.cached_property
    def _audit(self) -> Auditor:
        from modelyard.trail.audit import Auditor

        return Auditor(self.ctx)

    @functools.cached_property
    def _stages(self) -> Stages:
        from modelyard.lifecycle.notify import Notifier
        from modelyard.lifecycle.stages import Stages

        stages = Stages(self.ctx, self._audit, Notifier(self.settings, self._audit))
        # backup_stages: a version is backed up after it moves into one of them
        stages.after_move.append(lambda change: self._backups.after_move(change))
        return stages

    @functools.cached_property
    def _gates(self) -> Gates:
        from modelyard.lifecycle.gates import Gates

        return Gates(self.settings, self.tracking,
                     lambda name, version: self._loader.load(name, version,
                                                             purpose="gate").model)

    @functools.cached_property
    def _promotion(self) -> Promotion:
        from modelyard.lifecycle.promotion import Promotion

        return Promotion(self.ctx, self._stages, self._gates, self._audit)

    @functools.cached_property
    def _retention(self) -> Retention:
        from modelyard.lifecycle.retention import Retention

        return Retention(self.ctx, self._audit, backup=self._backup_before_delete,
                         snapshot_versions=self._snapshot_versions_hook())

    @functools.cached_property
    def _registrar(self) -> Registrar:
        from modelyard.registry.registration import Registrar

        return Registrar(self.ctx, self._after_registration)

    @functools.cached_property
    def _labels(self) -> Labels:
        from modelyard.lifecycle.labels import Labels

        return Labels(self.ctx, self._audit)

    @functools.cached_property
    def _drift(self) -> Drift:
        from modelyard.lifecycle.unaudited import Drift

        return Drift(self.ctx, self._audit, self._stages)

    @functools.cached_property
    def _catalog(self) -> Catalog:
        from modelyard.registry.catalog import Catalog

        return Catalog(self.ctx, self._drift, lambda: self._loader)

    @functools.cached_property
    def _access(self) -> AccessLog:
        from modelyard.trail.access import AccessLog

        return AccessLog(self.ctx)

    @functools.cached_property
    def _transfer(self) -> Transfer:
        from modelyard.registry.transfer import Transfer

        return Transfer(self.ctx, self._registrar, self._loader, self._audit)

    @functools.cached_property
    def _adopter(self) -> Adopter:
        from modelyard.registry.adopt import Adopter

        return Adopter(self.ctx, self._registrar)

    @functools.cached_property
    def _backups(self) -> Backups:
        from modelyard.protection.backup import Backups

        return Backups(self.ctx, self._loader, self._audit)

    @functools.cached_property
    def _restorer(self) -> Restorer:
        from modelyard.protection.restore import Restorer

        return Restorer(self.ctx, self._registrar, self._stages, self._audit, self._backups)

    @functools.cached_property
    def _integrity(self) -> Integrity:
        from modelyard.protection.integrity import Integrity

        return Integrity(self.ctx, self._loader)

    @functools.cached_property
    def _snapshots(self) -> Snapshots:
        # snapshots back up what they name and restore deleted versions from the backup store
        from modelyard.protection.snapshots import Snapshots

        return Snapshots(self.ctx, self._stages, backup=self._backup_hook(),
                         restore=self._restore_hook())

    # -- wiring ---------------------------------------------------------------------------
    def _after_registration(self, mv: ModelVersion, action: str = "register") -> None:
        """Audit + stage policy, then ``max_versions`` (retention enforced)."""
        self._promotion.after_registration(mv, action)
        if action == "register":
            self._retention.enforce(mv.name)

    def _backup_before_delete(self, name: str, versions: list[int]) -> bool:
        """Retention deletes only what the backup store holds (when one is configured)."""
        return self._backups.backup([(name, v) for v in versions]).ok

    def _snapshot_versions_hook(self) -> Callable[[str], set[int]]:
        return lambda name: self._snapshots.versions(name)

    @property
    def vault(self) -> Vault:
        return self.ctx.vault

    @property
    def user(self) -> str:
        return self.ctx.user

    def prepare_vault(self) -> None:
        """Start building the vault's S3 client in the background, for a caller about to run
        a verb that reaches the vault after its registry requests (``history``, ``promote``,
        ``rollback``): boto3's start-up then overlaps them. A folder vault: nothing to do."""
        self.ctx.prepare_vault()

    # -- read -----------------------------------------------------------------------------
    def versions(self, name: str) -> list[VersionRecord]:
        """Visible versions of a model, oldest first."""
        return [v for v in self.ctx.reads.versions(check_name(name)) if is_visible(v)]

    def resolve(self, name: str, ref: str | int | None = "latest") -> VersionRecord:
        """The version a reference names (``3``, ``v1.2.0``, ``latest``, ``production``,
        ``@alias``)."""
        return lookup(self.ctx.reads, name, ref)

    def get(self, name: str, ref: str | int | None = "latest", *, full: bool = True
            ) -> ModelVersion:
        """One version with its metrics, params, lineage and artifact location."""
        return self._loader.get(name, ref, full=full)

    def details(self, name: str, ref: str | int | None = "latest", *, full: bool = True
                ) -> ModelVersion:
        """``get``, plus ``drift``: unaudited stage moves that touch this version (both read
        at once on a server)."""
        return self._catalog.details(name, ref, full=full)

    def list_models(self) -> list[ModelRow]:
        """Every model: version count, latest semver, who holds staging / production.

        Flat in the number of versions: per model a count, a page of the newest versions,
        and the versions tagged with a stage (the drift check's searches, which also answer
        the stage holders' semvers), each one bounded look-up; on a server they go out at
        once (``reader_base.at_once``), one round after the model list. A holder the tag
        searches miss (drift) or a newest page of pending versions costs a second round."""
        return self._catalog.list_models()

    def lineage(self, name: str, ref: str | int | None = "latest") -> LineageReport:
        """Code, data, params and environment of a version; DVC data refs get the git commit
        that recorded them when it exists by now."""
        from modelyard.project import dvc as dvc_support

        mv = self.get(name, ref)
        for data in mv.lineage.data:
            if data.source == "dvc" and not data.git_commit:
                root = Path(self.settings.project_root or Path.cwd())
                data.git_commit = dvc_support.commit_recording(root, data.hash, path=data.path)
        return LineageReport(name=mv.name, version=mv.version, semver=mv.semver,
                             run_id=mv.run_id, params=mv.params, lineage=mv.lineage.to_dict())

    def checkout_data(self, name: str, ref: str | int | None, root: Path) -> list[dict[str, str]]:
        """Restore, through DVC, the exact training data a version was trained on."""
        from modelyard.project import dvc as dvc_support

        mv = self.get(name, ref, full=False)
        restored = []
        for data in mv.lineage.data:
            if data.source != "dvc":
                continue
            path = Path(data.path)
            dvc_support.checkout(path if path.is_absolute() else root / path, data.hash)
            restored.append({"path": data.path, "md5": data.hash})
        if not restored:
            raise UserError(f"{mv.label} has no DVC-tracked data in its lineage")
        return restored

    def compare(self, name: str, refs: list[str] | None = None) -> Comparison:
        """Versions side by side; ``differences`` lists the keys whose values differ."""
        from modelyard.registry.compare import compare

        return compare(self._loader, name, refs)

    def history(self, name: str, version: str | int | None = None, *,
                verify: bool = False) -> list[AuditEvent]:
        """The model's audit trail, oldest first; ``verify`` checks the hash chain, both
        anchors of its head (MLflow tag, vault), the HMACs with ``audit_key``, and that every
        stage holder is explained by the trail (``UnauditedMove`` names the first that is
        not)."""
        events = self._audit.history(name, version, verify=verify)
        if verify:
            self.check_drift(name)
        return events

    # -- governance: identity, drift, access --------------------------------------------------
    def identity(self) -> Identity:
        """Who modelyard acts as, and how that was established (see ``identity.py``)."""
        return self.ctx.identity

    def drift(self, name: str | None = None) -> list[StageDrift]:
        """Stage holders no audit event explains (aliases or ``modelyard.stage`` tags moved
        around modelyard), for one model or all. A webhook fires for each new finding."""
        return self._drift.find(name)

    def check_drift(self, name: str | None = None) -> None:
        """Raise ``UnauditedMove`` naming the first unaudited holder (for ``verify --all``,
        ``health`` and ``history --verify``)."""
        self._drift.check(name)

    def undo_drift(self, name: str) -> list[StageChange]:
        """Put back the last audited holders of a model's drifted stages (audited moves,
        reason "undo unaudited move")."""
        return self._drift.undo(name)

    def access_log(self, name: str) -> list[AccessEvent]:
        """Every load of the model's versions (who, host, when, version, purpose)."""
        return self._access.events(name)

    def requests(self, name: str | None = None) -> list[dict[str, Any]]:
        """Open promotion requests, oldest first."""
        return self._promotion.requests(name)

    def doctor(self) -> DoctorReport:
        """What is in use and whether each part answers. Secrets are shown by name only."""
        from modelyard.incidents import doctor

        return doctor.run(self.ctx)

    # -- register -------------------------------------------------------------------------
    def register(
        self,
        model: Any,
        name: str,
        *,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        input_example: Any = None,
        signature: Any = None,
        data: list[str | Path] | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        seed: int | str | None = None,
        bump: str | None = None,
        version: str | None = None,
        flavor: Any = None,
        started_at: datetime | None = None,
        duration_s: float | None = None,
        pip_requirements: list[str] | None = None,
        training_data: Any = None,
    ) -> ModelVersion:
        """Log and register a model in one call; returns the new, fully registered version.

        ``training_data`` (a frame) is profiled into ``profiles/NAME/VERSION.json`` for drift
        and data-quality checks; without it the first CSV/Parquet among ``data`` is.

        >>> yard.register(clf, "churn", metrics={"accuracy": 0.9}, params={"depth": 5},
        ...               input_example=X.head(), data=["data/train.csv"], seed=42)
        """
        mv = self._registrar.register(
            model, name, metrics=metrics, params=params, input_example=input_example,
            signature=signature, data=data, description=description, tags=tags, seed=seed,
            bump=bump, version=version, flavor=flavor, started_at=started_at,
            duration_s=duration_s, pip_requirements=pip_requirements,
            training_data=training_data,
        )
        return self._fresh(mv)

    def register_directory(
        self,
        path: Path,
        name: str,
        *,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        data: list[str | Path] | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        seed: int | str | None = None,
        bump: str | None = None,
        version: str | None = None,
        follow_links: bool = False,
    ) -> ModelVersion:
        """Register a model saved with ``mlflow.<flavor>.save_model`` (a folder with MLmodel)."""
        mv = self._registrar.register_directory(
            Path(path), name, metrics=metrics, params=params, data=data,
            description=description, tags=tags, seed=seed, bump=bump, version=version,
            follow_links=follow_links,
        )
        return self._fresh(mv)

    def register_uri(
        self,
        uri: str,
        name: str,
        *,
        data: list[str | Path] | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        seed: int | str | None = None,
        bump: str | None = None,
        version: str | None = None,
    ) -> ModelVersion:
        """Register a model MLflow already holds (``models:/m-...`` or ``runs:/RUN/path``)."""
        mv = self._registrar.register_uri(uri, name, data=data, description=description,
                                          tags=tags, seed=seed, bump=bump, version=version)
        return self._fresh(mv)

    def _fresh(self, mv: ModelVersion) -> ModelVersion:
        """The new version with the stage and aliases policy gave it after registration."""
        if self.settings.default_stage == "none" and not self.settings.auto_promote:
            return mv
        record = self.tracking.get_version(mv.name, mv.version)
        fresh = ModelVersion.from_record(record, metrics=mv.metrics, params=mv.params,
                                         artifact_location=mv.artifact_location)
        return fresh

    # -- load -----------------------------------------------------------------------------
    def load(
        self,
        name: str,
        ref: str | int | None = "production",
        *,
        verify: bool = True,
        train: Callable[[], Any] | None = None,
        purpose: str = "load",
    ) -> LoadedModel:
        """Load a version after checking every file against its manifest.

        Fallback chain: registry (local cache first) -> last verified copy in the local
        cache when the registry is unreachable -> ``train()`` if given. Each step is logged.

        >>> loaded = yard.load("churn", "production")
        >>> loaded.model.predict(X)
        """
        return self._loader.load(name, ref, verify=verify, train=train, purpose=purpose)

    def download(self, name: str, ref: str | int | None, dest: Path, *, verify: bool = True
                 ) -> tuple[ModelVersion, Path]:
        """Place a version's verified files at ``dest`` (swapped in whole)."""
        return self._loader.download(name, ref, Path(dest), verify=verify)

    def verify(self, name: str, ref: str | int | None = "latest") -> VerifyResult:
        """Check a version's stored files against its manifest without loading them."""
        return self._loader.verify(name, ref)

    # -- stages, approvals, rollback --------------------------------------------------------
    def promote(
        self,
        name: str,
        ref: str | int,
        to: str = "production",
        *,
        reason: str | None = None,
        force: bool = False,
        gates: Iterable[str] | None = None,
        holdout: Holdout | tuple[Any, Any] | None = None,
        scorer: Callable[[Any, Any], float] | None = None,
    ) -> StageChange:
        """Move a version into a stage (``staging``, ``production``, ``archived``, ``none``).

        Gates from the policy and from ``gates`` (``"accuracy >= 0.85"``,
        ``"validation=passed"``, ``"beat accuracy by 0.01"``) must pass, and with
        ``holdout=(X, y)`` the version must outscore production on that data. A failed gate
        raises ``GateFailed`` and changes nothing. With production approval required, a
        request is filed instead (``status == "pending"``).

        >>> yard.promote("churn", "v1.2.0", to="production", reason="beats v1.1.0")
        """
        return self._promotion.promote(name, ref, to, reason=reason, force=force, gates=gates,
                                       holdout=holdout, scorer=scorer)

    def approve(self, request_id: str, *, reason: str | None = None) -> StageChange:
        """Approve a pending promotion (by someone other than its requester)."""
        return self._promotion.approve(request_id, reason=reason)

    def reject(self, request_id: str, *, reason: str) -> Decision:
        """Close a pending promotion without promoting."""
        return self._promotion.reject(request_id, reason=reason)

    def rollback(self, name: str, stage: str = "production", to: str | int | None = None, *,
                 reason: str | None = None) -> StageChange:
        """Put back the previous holder of a stage (from the audit trail), or ``to``."""
        return self._promotion.rollback(name, stage, to, reason=reason)

    # -- aliases, tags, retention -----------------------------------------------------------
    def set_alias(self, name: str, ref: str | int, alias: str) -> AliasChange:
        """Point a user alias at a version (stage aliases move only through promote)."""
        return self._stages.set_alias(name, ref, alias)

    def remove_alias(self, name: str, alias: str) -> AliasChange:
        return self._stages.remove_alias(name, alias)

    def set_tag(self, name: str, ref: str | int, key: str, value: str) -> TagChange:
        """Set a user tag on a version (the ``modelyard.`` namespace is reserved)."""
        return self._labels.set_tag(name, ref, key, value)

    def remove_tag(self, name: str, ref: str | int, key: str) -> TagChange:
        return self._labels.remove_tag(name, ref, key)

    def cleanup(self, name: str, keep: int | None = None, *, delete: bool = False,
                yes: bool = False) -> CleanupResult:
        """Archive (or delete) versions beyond the newest ``keep``; a plan unless ``yes``."""
        return self._retention.cleanup(name, keep, delete=delete, yes=yes)

    # -- exchange ---------------------------------------------------------------------------
    def export(self, names: list[str] | None = None) -> dict[str, Any]:
        """The whole registry (or some models) as one JSON-ready document (no secrets)."""
        return self._transfer.export(names)

    def import_registry(self, doc: dict[str, Any] | str | bytes, *, dry_run: bool = False,
                        source_tracking_uri: str | None = None) -> ImportSummary:
        """Recreate an export here: same semvers, stages, aliases, tags, metrics, params."""
        return self._transfer.import_registry(doc, dry_run=dry_run,
                                              source_tracking_uri=source_tracking_uri)

    # -- serving (pip install 'modelyard[serve]') ----------------------------------------------
    def app(self, name: str, ref: str = "production", **options: Any) -> Any:
        """The FastAPI app serving ``name@ref`` (hot reload, A/B, metrics, capture), for
        embedding: ``uvicorn.run(yard.app("churn"))``. Options: see ``serving.create_app``."""
        from modelyard.serving import create_app

        return create_app(self, name, ref, **options)

    def predictor(self, name: str, ref: str = "production", **options: Any) -> Any:
        """An in-process predictor with the same verified loading, hot reload and tracking:
        ``yard.predictor("churn").predict(rows)``."""
        from modelyard.serving import Predictor

        return Predictor(self, name, ref, **options)

    def adopt(self, name: str) -> list[ModelVersion]:
        """Bring versions registered by plain MLflow under modelyard (semver, manifest)."""
        return self._adopter.adopt(name)

    # -- backups and restore (the `backup` store) -------------------------------------------
    def backup(self, targets: list[tuple[str, str | int | None]] | None = None, *,
               all: bool = False, progress: BackupProgress | None = None) -> BackupReport:
        """Copy versions (``[(name, ref)]``, ref None = every version; or ``all``) into the
        backup store: files content-addressed (only what it lacks is sent), manifest, audit
        trail, and the version record last.

        >>> yard.backup([("churn", "production")]).bytes_sent
        """
        return self._backups.backup(targets, all=all, progress=progress)

    def backup_record(self, name: str, version: int) -> dict[str, Any] | None:
        """The version record in the backup store (None: that version is not backed up)."""
        return self._backups.backup_record(name, version)

    def restore(self, name: str, ref: str | int | None = None, *, aliases: bool = False,
                progress: BackupProgress | None = None) -> RestoreReport:
        """Bring back a version deleted from the registry (``ref``: semver, ``v1.2.0``, its
        old number, or an alias it held), or every deleted version of ``name`` (ref None), as
        new MLflow versions with the same semvers; ``aliases`` takes back what they held."""
        return self._restorer.restore(name, ref, aliases=aliases, progress=progress)

    def restore_all(self, *, aliases: bool = True,
                    progress: BackupProgress | None = None) -> RestoreReport:
        """Every backed-up model into this registry (after its database was lost)."""
        return self._restorer.restore_all(aliases=aliases, progress=progress)

    # -- integrity: verify every layer, repair from the first good copy ----------------------
    def verify_all(self, name: str | None = None, *, progress: IntegrityProgress | None = None
                   ) -> IntegrityReport:
        """Every visible version (or one model's) against its manifest in the artifact store,
        the vault and the backup store: per version and per file, what is missing or differs.

        >>> report = yard.verify_all()
        >>> report.ok, [(p.path, p.layer, p.problem) for p in report.problems]
        """
        report = self._integrity.verify_all(name, progress=progress)
        # A stage holder the audit trail does not explain is a problem of the same kind.
        report.drift = [d.to_dict() for d in self.drift(name)]
        report.ok = report.ok and not report.drift
        return report

    def repair(self, name: str | None = None, ref: str | int | None = None, *,
               all: bool = False, progress: IntegrityProgress | None = None) -> RepairReport:
        """Put back every missing or corrupt file from the first layer with a good copy (local
        cache, vault, backup store), each copy's hash checked before it is written; then
        verify again (``verified``).

        >>> yard.repair("churn", "production").files[0].served_by
        'vault'
        """
        return self._integrity.repair(name, ref, all=all, progress=progress)

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot(self, tag: str, *, models: list[str] | None = None,
                 message: str | None = None, include_data: bool = True,
                 include_models: bool = True) -> Snapshot:
        """Record every alias and stage holder (and the project's git commit and DVC data
        hashes) under an immutable tag; the versions it names are backed up.

        >>> yard.snapshot("before-q3", message="before the Q3 retrain")
        """
        return self._snapshots.create(tag, models=models, message=message,
                                      include_data=include_data, include_models=include_models)

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, oldest first."""
        return self._snapshots.all()

    def snapshot_show(self, tag: str) -> Snapshot:
        return self._snapshots.show(tag)

    def snapshot_diff(self, tag: str, other: str | None = None) -> SnapshotDiff:
        """What moved between snapshot ``tag`` and ``other`` (default: now)."""
        return self._snapshots.diff(tag, other)

    def snapshot_restore(self, tag: str, *, dry_run: bool = False, data: bool = False
                         ) -> SnapshotRestore:
        """Every alias and stage back where the snapshot had it (each move audited, deleted
        versions restored first); ``data`` restores DVC-tracked data too."""
        return self._snapshots.restore(tag, dry_run=dry_run, data=data)

    def snapshot_versions(self, name: str) -> set[int]:
        """Versions of ``name`` that any snapshot references (retention never removes them)."""
        return self._snapshots.versions(name)

    def _backup_hook(self) -> Callable[[list[tuple[str, int]]], Any] | None:
        if self.ctx.settings.backup is None:
            return None
        backup = self._backups.backup

        def hook(targets: list[tuple[str, int]]) -> Any:
            return backup([(name, version) for name, version in targets])

        return hook

    def _restore_hook(self) -> Callable[[str, str], ModelVersion] | None:
        if self.ctx.settings.backup is None:
            return None
        return self._restorer.restore_version

    # -- drills, recovery, health, reproduce ----------------------------------------------------
    def _project_root(self) -> Path:
        return Path(self.settings.project_root or Path.cwd()).absolute()

    def _recovery(self) -> Recovery:
        from modelyard.incidents.detection import Detector
        from modelyard.incidents.recovery import Recovery, layers_from

        root = self._project_root()
        detector = Detector(self.ctx, self._loader, self._audit, root,
                            lambda name, record: self._gates.policy_verdicts(name, record,
                                                                             "production"))
        return Recovery(detector, layers_from(self, self.ctx, self._loader, root),
                        self._loader, self._audit)

    def detect(self, name: str) -> list[Finding]:
        """What modelyard's own checks find wrong with a model (changes nothing)."""
        return self._recovery().detector.detect(check_name(name))

    def recover(self, name: str, *, dry_run: bool = False,
                findings: list[Finding] | None = None, verify: bool = True,
                baseline: Baseline | None = None) -> RecoveryReport:
        """Detect, recover through the layers (cache, vault/DVC, snapshot, re-run) and verify.

        >>> yard.recover("churn", dry_run=True).plan
        ['churn@production: model.pkl does not match ... -> L1 local cache: ...']
        """
        return self._recovery().recover(check_name(name), dry_run=dry_run, findings=findings,
                                        verify=verify, baseline=baseline)

    def verify_recovery(self, name: str, baseline: Baseline | None = None, *,
                        known: set[tuple[str, str, str]] | None = None
                        ) -> tuple[bool, list[str], list[Finding]]:
        """Every check again (``known`` problems aside), production loads, predictions equal
        ``baseline``'s."""
        return self._recovery().verify(check_name(name), baseline, known=known)

    def _drill_verb(self) -> Drills:
        from modelyard.incidents.drills import Drills

        if self._drills is None:
            self._drills = Drills(self.ctx, self, Yard, snapshot=self.snapshot,
                                  snapshot_diff=self.snapshot_diff)
        return self._drills

    def drill_scenarios(self) -> list[Scenario]:
        """The drill scenarios (``data-noise`` ... ``bad-promotion``)."""
        from modelyard.incidents.drills import SCENARIOS

        return list(SCENARIOS)

    def drill(self, scenario: str, *, model: str | None = None, live: bool = False,
              stage: str | None = None) -> DrillReport:
        """Break something on purpose (in a sandbox unless ``live``), then detect, recover and
        verify, timing each phase. Recorded in the ``modelyard-drills`` MLflow experiment.

        >>> yard.drill("model-corruption").layer
        'L1'
        """
        return self._drill_verb().run(scenario, model=model, live=live, stage=stage)

    def drill_all(self, *, model: str | None = None, live: bool = False,
                  progress: Callable[[DrillReport], None] | None = None) -> list[DrillReport]:
        """Every scenario, one sandbox shared."""
        return self._drill_verb().run_all(model=model, live=live, progress=progress)

    def health(self, *, notify: bool = False) -> HealthReport:
        """Registry, stores, holders, backups, drills, audit chains, serving: one status.

        >>> yard.health().status
        'healthy'
        """
        from modelyard.incidents.health import Health

        def monitor(name: str, since: str) -> Any:
            from modelyard.serving.monitor import monitor as run_monitor

            return run_monitor(self, name, since=since)

        backup_record = self.backup_record if self.settings.backup is not None else None
        return Health(self.ctx, self._loader, self._audit, monitor=monitor,
                      backup_record=backup_record, drift=self.drift).run(notify=notify)

    def reproduce(self, name: str, ref: str | int | None = "production", *,
                  tolerance: float = 1e-6) -> ReproduceReport:
        """Re-run a version's recorded commit, data and params in a clean git worktree through
        the DVC pipeline; registers nothing; says whether metrics and predictions match.

        >>> yard.reproduce("churn", "v1.2.0").reproducible
        True
        """
        from modelyard.incidents.reproduce import Reproducer

        return Reproducer(self.ctx, self._loader, self._project_root()).run(
            name, ref, tolerance=tolerance)

    def last_reproduce(self, name: str, version: int) -> dict[str, Any] | None:
        """The stored result of the last ``reproduce`` of a version (MLflow number), or None."""
        from modelyard.incidents.reproduce import last_result

        return last_result(self.ctx, check_name(name), int(version))


__all__ = ["VersionRef", "Yard", "resolve"]
