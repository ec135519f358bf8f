"""``Yard``: the one facade, and the composition root. The CLI calls only this.

Everyday verbs are flat; capabilities with several verbs hang off it, as DVC's ``Repo`` has
``repo.metrics``: ``yard.protection`` (backups, restore, verify_all, repair, snapshots),
``yard.incidents`` (detect, recover, drills, health, reproduce), ``yard.governance`` (identity,
access log, unaudited moves). Verb objects are built on first use; their hooks are wired here.

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
from modelyard.serving.compiled import compile_on_move
from modelyard.store.vault import Vault

if TYPE_CHECKING:  # pragma: no cover
    # Verb modules are imported on first use: a read does not pay for drills or transfers.
    from modelyard.incidents.api import Incidents
    from modelyard.lifecycle.api import Lifecycle
    from modelyard.lifecycle.gates import Holdout
    from modelyard.lifecycle.governance import Governance
    from modelyard.lifecycle.stages import StageChange
    from modelyard.protection.api import Protection
    from modelyard.registry.adopt import Adopter
    from modelyard.registry.catalog import Catalog
    from modelyard.registry.loading import Loader
    from modelyard.registry.registration import Registrar
    from modelyard.registry.transfer import Transfer
    from modelyard.trail.audit import AuditEvent, Auditor


class Yard:
    """modelyard's facade over MLflow, the object store and the vault."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.ctx: Context = build_context(settings or load_settings(overrides))
        self.settings: Settings = self.ctx.settings
        self.tracking: Tracking = self.ctx.tracking

    # -- the capabilities --------------------------------------------------------------------
    @functools.cached_property
    def governance(self) -> Governance:
        from modelyard.lifecycle.governance import Governance
        return Governance(self.ctx, self._audit, self._lifecycle.stages)

    @functools.cached_property
    def protection(self) -> Protection:
        from modelyard.protection.api import Protection
        return Protection(self.ctx, self._loader, self._audit, self._registrar,
                          self._lifecycle.stages, self.governance.unaudited)

    @functools.cached_property
    def incidents(self) -> Incidents:
        from modelyard.incidents.api import Incidents

        def monitor(name: str, since: str) -> Any:
            from modelyard.serving.monitor import monitor as serving_report
            return serving_report(self, name, since=since)

        return Incidents(
            self.ctx, self._loader, self._audit, rollback=self.rollback,
            gate_check=lambda name, record: self._lifecycle.gates.policy_verdicts(name, record,
                                                                        "production"),
            protection=self.protection, governance=self.governance, registry=self,
            factory=Yard, monitor=monitor)

    # -- the verbs, each built on first use, and the hooks between them ------------------------
    @functools.cached_property
    def _loader(self) -> Loader:
        from modelyard.registry.loading import Loader
        return Loader(self.ctx)

    @functools.cached_property
    def _audit(self) -> Auditor:
        from modelyard.trail.audit import Auditor
        return Auditor(self.ctx)

    @functools.cached_property
    def _lifecycle(self) -> Lifecycle:
        from modelyard.lifecycle.api import Lifecycle
        return Lifecycle(
            self.ctx, self._audit,
            load_model=lambda name, version: self._loader.load(name, version,
                                                               purpose="gate").model,
            # a version entering staging is compiled for serving, then backup_stages apply
            after_move=lambda change: self.protection.after_move(compile_on_move(self, change)),
            # retention deletes only what the backup store holds, never what a snapshot names
            backed_up=lambda name, numbers: self.protection.backed_up_before_delete(
                name, numbers),
            snapshot_versions=lambda name: self.protection.snapshots.versions(name))

    @functools.cached_property
    def _registrar(self) -> Registrar:
        from modelyard.registry.registration import Registrar
        return Registrar(self.ctx, self._after_registration)

    def _after_registration(self, mv: ModelVersion, action: str = "register") -> None:
        """Audit + stage policy, then ``max_versions`` (retention enforced)."""
        self._lifecycle.promotion.after_registration(mv, action)
        if action == "register":
            self._lifecycle.retention.enforce(mv.name)

    @functools.cached_property
    def _catalog(self) -> Catalog:
        from modelyard.registry.catalog import Catalog
        return Catalog(self.ctx, self.governance.moves, lambda: self._loader)

    @functools.cached_property
    def _transfer(self) -> Transfer:
        from modelyard.registry.transfer import Transfer
        return Transfer(self.ctx, self._registrar, self._loader, self._audit, self.promote)

    @functools.cached_property
    def _adopter(self) -> Adopter:
        from modelyard.registry.adopt import Adopter
        return Adopter(self.ctx, self._registrar)

    @property
    def vault(self) -> Vault:
        return self.ctx.vault

    @property
    def user(self) -> str:
        return self.ctx.user

    def prepare_vault(self) -> None:
        """Build the vault's S3 client in the background (``Context.prepare_vault``)."""
        self.ctx.prepare_vault()

    # -- read -----------------------------------------------------------------------------
    def versions(self, name: str) -> list[VersionRecord]:
        """Visible versions of a model, oldest first."""
        return [v for v in self.ctx.reads.versions(check_name(name)) if is_visible(v)]

    def resolve(self, name: str, ref: str | int | None = "latest") -> VersionRecord:
        """The version ``3``, ``v1.2.0``, ``latest``, ``production`` or ``@alias`` names."""
        return lookup(self.ctx.reads, name, ref)

    def get(self, name: str, ref: str | int | None = "latest", *, full: bool = True
            ) -> ModelVersion:
        """One version with its metrics, params, lineage and artifact location."""
        return self._loader.get(name, ref, full=full)

    def details(self, name: str, ref: str | int | None = "latest", *, full: bool = True
                ) -> ModelVersion:
        """``get``, plus ``unaudited``: stage moves no audit event explains that touch this
        version (both read at once on a server)."""
        return self._catalog.details(name, ref, full=full)

    def list_models(self) -> list[ModelRow]:
        """Every model: version count, latest semver, who holds staging / production; flat
        in the number of versions (``registry/catalog.py``)."""
        return self._catalog.list_models()

    def lineage(self, name: str, ref: str | int | None = "latest") -> LineageReport:
        """Code, data, params and environment of a version."""
        return self._catalog.lineage(
            name, ref, Path(self.settings.project_root or Path.cwd()).absolute())

    def checkout_data(self, name: str, ref: str | int | None, root: Path) -> list[dict[str, str]]:
        """Restore, through DVC, the exact training data a version was trained on."""
        return self._catalog.checkout_data(name, ref, root)

    def compare(self, name: str, refs: list[str] | None = None) -> Comparison:
        """Versions side by side; ``differences`` lists the keys whose values differ."""
        from modelyard.registry.compare import compare
        return compare(self._loader, name, refs)

    def history(self, name: str, version: str | int | None = None, *,
                verify: bool = False) -> list[AuditEvent]:
        """The model's audit trail, oldest first; ``verify`` checks the hash chain, its head's
        anchors, the HMACs and that the trail explains every stage holder."""
        events = self._audit.history(name, version, verify=verify)
        if verify:
            self.governance.check_unaudited(name)
        return events

    def requests(self, name: str | None = None) -> list[dict[str, Any]]:
        """Open promotion requests, oldest first."""
        return self._lifecycle.promotion.requests(name)

    def doctor(self) -> DoctorReport:
        """What is in use and whether each part answers. Secrets are shown by name only."""
        from modelyard.incidents import doctor
        return doctor.run(self.ctx)

    # -- register -------------------------------------------------------------------------
    def register(
        self, model: Any, name: str, *, metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None, input_example: Any = None, signature: Any = None,
        data: list[str | Path] | None = None, description: str | None = None,
        tags: dict[str, str] | None = None, seed: int | str | None = None,
        bump: str | None = None, version: str | None = None, flavor: Any = None,
        started_at: datetime | None = None, duration_s: float | None = None,
        pip_requirements: list[str] | None = None, training_data: Any = None,
    ) -> ModelVersion:
        """Log and register a model in one call; returns the new, fully registered version.
        ``training_data`` (a frame; else the first CSV/Parquet among ``data``) is profiled
        for data drift and data-quality checks."""
        return self._fresh(self._registrar.register(
            model, name, metrics=metrics, params=params, input_example=input_example,
            signature=signature, data=data, description=description, tags=tags, seed=seed,
            bump=bump, version=version, flavor=flavor, started_at=started_at,
            duration_s=duration_s, pip_requirements=pip_requirements,
            training_data=training_data))

    def register_directory(self, path: Path, name: str, *, follow_links: bool = False,
                           **options: Any) -> ModelVersion:
        """Register a model saved with ``mlflow.<flavor>.save_model`` (a folder with MLmodel);
        ``options`` as ``register``'s (metrics, params, data, description, tags, seed, bump,
        version). A link out of the folder is refused unless ``follow_links``."""
        return self._fresh(self._registrar.register_directory(
            Path(path), name, follow_links=follow_links, **options))

    def register_uri(self, uri: str, name: str, **options: Any) -> ModelVersion:
        """Register a model MLflow already holds (``models:/m-...`` or ``runs:/RUN/path``);
        ``options``: data, description, tags, seed, bump, version."""
        return self._fresh(self._registrar.register_uri(uri, name, **options))

    def _fresh(self, mv: ModelVersion) -> ModelVersion:
        """The new version with the stage and aliases policy gave it after registration."""
        if self.settings.default_stage == "none" and not self.settings.auto_promote:
            return mv
        record = self.tracking.get_version(mv.name, mv.version)
        return ModelVersion.from_record(record, metrics=mv.metrics, params=mv.params,
                                        artifact_location=mv.artifact_location)

    # -- load -----------------------------------------------------------------------------
    def load(self, name: str, ref: str | int | None = "production", *, verify: bool = True,
             train: Callable[[], Any] | None = None, purpose: str = "load") -> LoadedModel:
        """Load a version after checking every file against its manifest. Fallbacks, each
        logged: the last verified copy in the local cache when the registry is unreachable,
        then ``train()`` if given."""
        return self._loader.load(name, ref, verify=verify, train=train, purpose=purpose)

    def download(self, name: str, ref: str | int | None, dest: Path, *, verify: bool = True
                 ) -> tuple[ModelVersion, Path]:
        """Place a version's verified files at ``dest`` (new, empty, or an earlier load's)."""
        return self._loader.download(name, ref, Path(dest), verify=verify)

    def verify(self, name: str, ref: str | int | None = "latest") -> VerifyResult:
        """Check a version's stored files against its manifest without loading them."""
        return self._loader.verify(name, ref)

    # -- stages, approvals, rollback --------------------------------------------------------
    def promote(self, name: str, ref: str | int, to: str = "production", *,
                reason: str | None = None, force: bool = False,
                gates: Iterable[str] | None = None,
                holdout: Holdout | tuple[Any, Any] | None = None,
                scorer: Callable[[Any, Any], float] | None = None) -> StageChange:
        """Move a version into a stage (``staging``, ``production``, ``archived``, ``none``)
        once the policy's gates and ``gates`` (``"accuracy >= 0.85"``, ``"beat accuracy by
        0.01"``) pass, and with ``holdout=(X, y)`` it outscores production there; a failed gate
        raises ``GateFailed`` and changes nothing. With production approval required, a
        request is filed instead (``status == "pending"``)."""
        return self._lifecycle.promotion.promote(name, ref, to, reason=reason, force=force,
                                                 gates=gates, holdout=holdout, scorer=scorer)

    def approve(self, request_id: str, *, reason: str | None = None) -> StageChange:
        """Approve a pending promotion (by someone other than its requester)."""
        return self._lifecycle.promotion.approve(request_id, reason=reason)

    def reject(self, request_id: str, *, reason: str) -> Decision:
        """Close a pending promotion without promoting."""
        return self._lifecycle.promotion.reject(request_id, reason=reason)

    def rollback(self, name: str, stage: str = "production", to: str | int | None = None, *,
                 reason: str | None = None) -> StageChange:
        """Put back the previous holder of a stage (from the audit trail), or ``to``."""
        return self._lifecycle.promotion.rollback(name, stage, to, reason=reason)

    # -- aliases, tags, retention -----------------------------------------------------------
    def set_alias(self, name: str, ref: str | int, alias: str) -> AliasChange:
        """Point a user alias at a version (stage aliases move only through promote)."""
        return self._lifecycle.stages.set_alias(name, ref, alias)

    def remove_alias(self, name: str, alias: str) -> AliasChange:
        return self._lifecycle.stages.remove_alias(name, alias)

    def set_tag(self, name: str, ref: str | int, key: str, value: str) -> TagChange:
        """Set a user tag on a version (the ``modelyard.`` namespace is reserved)."""
        return self._lifecycle.labels.set_tag(name, ref, key, value)

    def remove_tag(self, name: str, ref: str | int, key: str) -> TagChange:
        return self._lifecycle.labels.remove_tag(name, ref, key)

    def cleanup(self, name: str, keep: int | None = None, *, delete: bool = False,
                yes: bool = False) -> CleanupResult:
        """Archive (or delete) versions beyond the newest ``keep``; a plan unless ``yes``."""
        return self._lifecycle.retention.cleanup(name, keep, delete=delete, yes=yes)

    # -- exchange ---------------------------------------------------------------------------
    def export(self, names: list[str] | None = None) -> dict[str, Any]:
        """The whole registry (or some models) as one JSON-ready document (no secrets)."""
        return self._transfer.export(names)

    def import_registry(self, doc: dict[str, Any] | str | bytes, *, dry_run: bool = False,
                        source_tracking_uri: str | None = None,
                        keep_stages: bool = False) -> ImportSummary:
        """Recreate an export here (``Transfer.import_registry``: stages are earned here)."""
        return self._transfer.import_registry(doc, dry_run=dry_run, keep_stages=keep_stages,
                                              source_tracking_uri=source_tracking_uri)

    def adopt(self, name: str) -> list[ModelVersion]:
        """Bring versions registered by plain MLflow under modelyard (semver, manifest)."""
        return self._adopter.adopt(name)

    # -- serving (pip install 'modelyard[serve]') ----------------------------------------------
    def app(self, name: str, ref: str = "production", **options: Any) -> Any:
        """The FastAPI app serving ``name@ref`` (``serving.create_app``'s options)."""
        from modelyard.serving import create_app
        return create_app(self, name, ref, **options)

    def predictor(self, name: str, ref: str = "production", **options: Any) -> Any:
        """An in-process predictor: verified loading, hot reload, per-version metrics."""
        from modelyard.serving import Predictor
        return Predictor(self, name, ref, **options)


__all__ = ["VersionRef", "Yard", "resolve"]
