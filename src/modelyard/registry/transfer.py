"""Export and import: a registry (or some models) as one JSON document, and back.

>>> doc = yard.export(["churn"])                      # one JSON-ready document
>>> other.import_registry(doc)                        # recreate it on another tracking server

Imported versions go through the one registration pipeline (``pipeline.py``) with their
semver; their signature is checked against the trusted keys, then their files fetched and
checked (manifest; unsigned: pickles, by allowlist) before the version becomes visible.

An export is a document anyone can edit, so the stage a version held in the source is not
taken on its word: a staging or production holder arrives in stage ``none`` and is promoted
here through the promotion policy (gates, approvals, permissions), unless the exported audit
trail is signed with this registry's ``audit_key`` and names that version as the holder.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - export_format loads pydantic: imported where used
    from modelyard.registry.export_format import ExportDoc, ModelDoc, VersionDoc

from modelyard.backend.tracking import Tracking
from modelyard.context import Context
from modelyard.core.entities import ImportSummary, ModelVersion
from modelyard.core.lineage import Lineage
from modelyard.core.names import (
    STAGE_ALIASES,
    STAGES,
    T_BUMP,
    T_CLASS,
    T_FLAVOR,
    T_IMPORTED_FROM,
    T_MANIFEST,
    T_REASON,
    T_SEMVER,
    T_SIGNER,
    T_STAGE,
    T_STATUS,
    T_VAULT,
    check_name,
)
from modelyard.core.records import VersionRecord
from modelyard.core.refs import is_visible
from modelyard.errors import (
    AuditTampered,
    Conflict,
    GateFailed,
    IntegrityError,
    InvalidInput,
    ModelNotFound,
    StorageError,
    UserError,
    YardError,
)
from modelyard.registry.loading import Loader
from modelyard.registry.pickles import check_pickles
from modelyard.registry.pipeline import Draft
from modelyard.registry.registration import Registrar
from modelyard.registry.semver_plan import SemverPlan
from modelyard.store.files import copy_tree_safely, read_capped
from modelyard.store.storage import redact
from modelyard.store.vault import Manifest, drop_mlflow_bookkeeping
from modelyard.trail.audit import AuditEvent, Auditor, check_chain

log = logging.getLogger("modelyard.transfer")


class Transfer:
    """export and import. ``promote`` is the promotion verb (gates, approvals, permissions)
    an imported stage holder goes through."""

    def __init__(self, ctx: Context, registrar: Registrar, loader: Loader,
                 audit: Auditor, promote: Callable[..., Any]) -> None:
        self.promote = promote
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.registrar = registrar
        self.loader = loader
        self.audit = audit

    def export(self, names: list[str] | None = None) -> dict[str, Any]:
        """The whole registry (or some models) as one JSON-ready document.

        Holds MLflow's registry records, modelyard's tags, manifests, metrics and params; never
        environment variables or credentials (the tracking URI's password is redacted).
        """
        if names:
            for model_name in names:
                check_name(model_name)
            models = [self.tracking.get_model(n) for n in dict.fromkeys(names)]
        else:
            models = sorted(self.tracking.list_models(), key=lambda m: m.name)
        out_models = []
        for model in models:
            records = [r for r in self.ctx.listing.versions(model.name) if is_visible(r)]
            out_models.append({
                "name": model.name,
                "description": model.description,
                "creation_timestamp": model.created_ms,
                "last_updated_timestamp": model.updated_ms,
                "tags": dict(model.tags),
                "aliases": dict(model.aliases),
                "versions": [self._export_version(r) for r in records],
                "audit": [e.to_dict() for e in self.audit.log(model.name).events()],
            })
        log.info("exported %d model(s)", len(out_models))
        from modelyard.registry.export_format import FORMAT, FORMAT_VERSION

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tracking_uri": redact(self.tracking.tracking_uri),
            "models": out_models,
        }

    def _export_version(self, record: VersionRecord) -> dict[str, Any]:
        mv = self.loader.version(record, full=True)
        manifest: dict[str, Any] | None = None
        signature: bytes | None = None
        if mv.manifest_sha256:
            try:
                found = self.ctx.vault.read_manifest(mv.name, mv.version, mv.manifest_sha256,
                                                 mv.semver or "?")
                manifest = json.loads(found.canonical())
                signature = self.ctx.signatures.bundle(found.sha256)
            except YardError as exc:
                log.warning("%s: manifest not exported: %s", mv.label, exc.message)
        return {
            "name": record.name,
            "version": record.version,
            "creation_timestamp": record.created_ms,
            "last_updated_timestamp": record.updated_ms,
            "description": record.description,
            "user_id": record.user_id,
            "source": redact(record.source),
            "run_id": record.run_id,
            "status": record.status,
            "tags": dict(record.tags),
            "aliases": list(record.aliases),
            "semver": mv.semver,
            "bump": mv.bump,
            "bump_reason": mv.bump_reason,
            "stage": mv.stage if mv.stage in STAGES else "none",
            "manifest_sha256": mv.manifest_sha256,
            "manifest": manifest,
            "signature": signature.decode() if signature is not None else None,
            "lineage": mv.lineage.to_dict(),
            "metrics": mv.metrics,
            "params": mv.params,
            "artifact_location": redact(mv.artifact_location),
        }

    def import_registry(
        self,
        doc: dict[str, Any] | str | bytes,
        *,
        dry_run: bool = False,
        source_tracking_uri: str | None = None,
        keep_stages: bool = False,
    ) -> ImportSummary:
        """Recreate an export here: same semvers, stages, aliases, tags, metrics and params,
        with the files copied in and checked against their manifests.

        Stage holders earn their stage here through the promotion policy unless the exported
        trail proves them (see the module's docstring); ``keep_stages`` takes them as exported,
        for a document this process made itself a moment ago (the drill sandbox's copy of the
        real registry), never for a file that passed through other hands.

        The whole document is validated, and compared with this registry, before anything is
        written. Versions already here (same model, semver and manifest hash) are skipped, so
        importing a file twice creates nothing the second time. A version whose files cannot
        be fetched or do not match their manifest is reported in ``failed``; nothing
        unverifiable is created.
        """
        from modelyard.registry.export_format import parse_export

        parsed = parse_export(doc)
        plan = self._plan_import(parsed)
        summary = ImportSummary(
            dry_run=dry_run, source=parsed.tracking_uri, models=len(parsed.models),
            skipped=[{"name": v.name, "version": v.version, "semver": v.semver, "reason": why}
                     for _, _, skipped in plan for v, why in skipped],
        )
        if dry_run:
            summary.would_create = [
                {"name": v.name, "semver": v.semver, "source_version": v.version}
                for _, todo, _ in plan for v in todo
            ]
            return summary
        source = self._source_tracking(source_tracking_uri or parsed.tracking_uri)
        for model, todo, _ in plan:
            if not todo:
                continue
            created_here = self._ensure_imported_model(model)
            trail = [AuditEvent.from_dict(e) for e in model.audit]
            self.audit.adopt_trail(model.name, trail)
            made: dict[int, int] = {}
            deferred: dict[int, str] = {}  # source number -> the stage it must earn here
            for version in todo:
                stage = version.stage
                if stage in STAGE_ALIASES and not keep_stages and not self._proven_holder(
                        model.name, trail, stage, version.version):
                    deferred[version.version] = stage
                    stage = "none"
                try:
                    mv = self._import_version(version, parsed.tracking_uri, source, stage)
                except YardError as exc:
                    log.warning("import of %s failed: %s", version.label, exc.message)
                    summary.failed.append({"name": version.name, "semver": version.semver,
                                              "source_version": version.version,
                                              "error": exc.message})
                    continue
                made[version.version] = mv.version
                summary.created.append({"name": mv.name, "semver": mv.semver,
                                           "version": mv.version,
                                           "source_version": version.version})
            if created_here and not made:
                # Nothing could be imported: leave no empty model behind.
                try:
                    self.tracking.delete_model_if_empty(model.name)
                except YardError as exc:
                    log.warning("empty model %s left behind: %s", model.name, exc.message)
                continue
            self._import_aliases(model, made, summary, deferred)
            self._record_import(model.name, parsed.tracking_uri, made, trail)
            self._promote_deferred(model.name, made, deferred, parsed.tracking_uri, summary)
        log.info("import: %d created, %d skipped, %d failed", len(summary.created),
                 len(summary.skipped), len(summary.failed))
        return summary

    def _plan_import(
        self, parsed: ExportDoc
    ) -> list[tuple[ModelDoc, list[VersionDoc], list[tuple[VersionDoc, str]]]]:
        """What to create and what to skip per model; Conflict if a semver is already taken
        here by a version with other contents. Reads the target only."""
        from modelyard.registry.export_format import check_exported_trail

        plan = []
        conflicts: list[str] = []
        for model in parsed.models:
            try:
                existing = [r for r in self.ctx.listing.versions(model.name) if is_visible(r)]
            except ModelNotFound:
                existing = []
            by_semver = {r.tags[T_SEMVER]: r for r in existing if r.tags.get(T_SEMVER)}
            todo: list[VersionDoc] = []
            skipped: list[tuple[VersionDoc, str]] = []
            for version in sorted(model.versions, key=lambda v: v.version):
                if version.semver is None:
                    skipped.append((version, "not managed by modelyard in the source "
                                             "(run `modelyard adopt` there first)"))
                    continue
                if version.manifest_sha256 is None:
                    skipped.append((version, "no manifest hash recorded: cannot be verified"))
                    continue
                here = by_semver.get(version.semver)
                if here is None:
                    todo.append(version)
                elif here.tags.get(T_MANIFEST) == version.manifest_sha256:
                    skipped.append((version, f"already present as version {here.version}"))
                else:
                    conflicts.append(f"{model.name} v{version.semver} exists here (version "
                                     f"{here.version}) with different contents")
            plan.append((model, todo, skipped))
            check_exported_trail(model)
        if conflicts:
            more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            raise Conflict(f"import refused, nothing changed: {conflicts[0]}{more}")
        return plan

    def _source_tracking(self, uri: str) -> Tracking | None:
        """A Tracking for the exporting server, used only to download its artifacts."""
        from modelyard.core.settings import Settings

        if not uri or "***" in uri:
            return None
        if uri.startswith("sqlite:"):
            path = Path(uri.removeprefix("sqlite:///"))
            if not path.is_file():  # never create an empty database by asking it
                return None
        try:
            return Tracking(Settings(tracking_uri=uri))
        except ValueError:
            return None

    def _fetch_exported(self, version: VersionDoc, source: Tracking | None,
                        dest: Path) -> Path:
        """Download the exported version's files from wherever they are reachable."""
        candidates: list[str] = []
        location = version.artifact_location
        if location and "***" not in location:
            _check_exported_location(location, source)
            candidates.append(location)
        if version.source.startswith(("models:/m-", "runs:/")) and source is not None and (
            source.tracking_uri.startswith(("http://", "https://", "sqlite:"))
        ):
            candidates.append(version.source)
        problems: list[str] = []
        for index, uri in enumerate(candidates):
            if uri.startswith("mlflow-artifacts:") and source is None:
                problems.append(f"{uri}: the source tracking server is unknown")
                continue
            target = dest / f"try{index}"
            try:
                if source is not None:
                    local = source.artifacts.download(uri, target)
                else:
                    local = self.tracking.artifacts.download(uri, target)
            except YardError as exc:
                problems.append(f"{uri}: {exc.message}")
                continue
            if local.is_dir() and any(local.iterdir()):
                return local
            problems.append(f"{uri}: nothing there")
        detail = "; ".join(problems) if problems else "no artifact location in the export"
        raise StorageError(
            detail=f"the artifacts of {version.label} are unreachable, so it was not imported "
            f"({detail[:400]})"
        )

    def _ensure_imported_model(self, model: ModelDoc) -> bool:
        try:
            self.tracking.get_model(model.name)
            return False
        except ModelNotFound:
            pass
        self.tracking.ensure_registered_model(model.name, model.description or None)
        for key, value in model.tags.items():
            if key != T_VAULT:  # the source's vault: this registry's is set with the trail
                self.tracking.set_model_tag(model.name, key, value)
        return True

    def _proven_holder(self, name: str, trail: list[AuditEvent], stage: str,
                       number: int) -> bool:
        """Whether the exported trail proves ``number`` held ``stage`` where it was made: it
        is signed with this registry's ``audit_key`` (HMAC on every event) and its newest
        event names that version as the holder."""
        key = self.audit.key
        if key is None or not trail or trail[-1].stages.get(stage) != number:
            return False
        try:
            check_chain(name, trail, key=key)
        except AuditTampered:
            return False
        return True

    def _promote_deferred(self, name: str, made: dict[int, int], deferred: dict[int, str],
                          source_uri: str, summary: ImportSummary) -> None:
        """Each stage holder the trail does not prove goes through the promotion policy
        here; a gate that fails, an approval required or a missing permission is reported,
        and the version stays in stage ``none`` (or waits as a pending request)."""
        for number, stage in sorted(deferred.items(), key=lambda item: item[1]):
            if number not in made:
                continue
            version = made[number]
            try:
                change = self.promote(name, version, to=stage, force=True,
                                      reason=f"import: held {stage} in {redact(source_uri)}")
            except (GateFailed, UserError) as exc:
                summary.warnings.append(f"{name} version {version} not put in {stage}: "
                                        f"{exc.message}")
                continue
            if change.status == "pending":
                summary.warnings.append(
                    f"{name} version {version}: {stage} needs approval here; request "
                    f"{change.request_id} filed")
            else:
                summary.aliases.append({"name": name, "alias": stage, "version": version})

    def _import_version(self, version: VersionDoc, source_uri: str,
                        source: Tracking | None, stage: str) -> ModelVersion:
        semver = version.semver or "?"
        origin = f"{source_uri} version {version.version}"[:5000]
        signature = self.ctx.signatures.carried(version.signature, version.manifest_object(),
                                                version.tags.get(T_SIGNER), name=version.name,
                                                semver=semver)
        with tempfile.TemporaryDirectory(prefix="modelyard-import-") as tmp:
            local = self._fetch_exported(version, source, Path(tmp))
            if version.manifest is not None:
                exported = version.manifest_object()
                exported.verify_directory(local, label=version.name, semver=semver)
                # MLflow's record names the source's version, not the one made here.
                drop_mlflow_bookkeeping(local, version.name, exported.files)
            elif Manifest.of_directory(local).sha256 != version.manifest_sha256:
                drop_mlflow_bookkeeping(local, version.name)
            if Manifest.of_directory(local).sha256 != version.manifest_sha256:
                raise IntegrityError(name=version.name, semver=semver,
                                     detail="the fetched files do not match the exported "
                                     "manifest hash")
            if signature is None:  # a signed version's files are vouched for by its signer
                check_pickles(local, version.label, extra=self.ctx.settings.trusted_pickle_types)

            def save(folder: Path, run_id: str, model_id: str, location: str) -> None:
                copy_tree_safely(local, folder)

            own = (T_SEMVER, T_BUMP, T_REASON, T_STAGE, T_STATUS, T_MANIFEST, T_SIGNER)
            kept = {k: v for k, v in version.tags.items() if k not in own}
            draft = Draft(
                name=version.name, flavor=version.tags.get(T_FLAVOR) or _flavor_of(local),
                model_class=version.tags.get(T_CLASS, ""), save=save,
                metrics=dict(version.metrics), params=dict(version.params),
                tags={**kept, T_IMPORTED_FROM: origin}, fixed_tags=kept,
                description=version.description or None,
                lineage=Lineage.from_tags(version.tags), stage=stage,
                semver=SemverPlan(fixed=version.semver, fixed_bump=version.bump or "",
                                  fixed_reason=version.bump_reason or ""),
                run_name=f"{version.name}-import", run_tags={T_IMPORTED_FROM: origin},
                manifest_extra={"imported_from": origin}, action="import",
                signature=signature,
            )
            return self.registrar.create(draft)

    def _record_import(self, name: str, source_uri: str, made: dict[int, int],
                       trail: list[AuditEvent]) -> None:
        """One event saying what the import did, whose ``stages`` are the holders here now
        (the imported events name the source registry's version numbers)."""
        aliases = self.tracking.get_model(name).aliases
        holders = {stage: aliases.get(stage) for stage in STAGE_ALIASES}
        detail: dict[str, Any] = {"source": source_uri,
                                  "versions": {str(k): v for k, v in sorted(made.items())}}
        if trail:
            detail["source_audit_head"] = f"{trail[-1].seq}:{trail[-1].hash}"

        def build(prev: AuditEvent | None) -> dict[str, Any]:
            return {"action": "import", "stages": holders, "detail": detail,
                    "reason": f"imported {len(made)} version(s)"}

        self.audit.append(name, build)

    def _import_aliases(self, model: ModelDoc, made: dict[int, int],
                        summary: ImportSummary, deferred: dict[int, str]) -> None:
        """Give imported versions their aliases; an alias already held here is not moved,
        and a stage alias of a version that must earn its stage here is left to promotion."""
        if not made:
            return
        current = self.tracking.get_model(model.name).aliases
        wanted: dict[str, int] = dict(model.aliases)
        for version in model.versions:
            for alias in version.aliases:
                wanted[alias] = version.version
        for alias, source_number in sorted(wanted.items()):
            if source_number not in made or deferred.get(source_number) == alias:
                continue
            holder = current.get(alias)
            if holder is not None and holder != made[source_number]:
                summary.warnings.append(
                    f"{model.name}: alias {alias!r} is held here by version {holder}; not moved"
                )
                continue
            self.tracking.set_alias(model.name, alias, made[source_number])
            summary.aliases.append({"name": model.name, "alias": alias,
                                       "version": made[source_number]})


def _flavor_of(local: Path) -> str:
    import yaml

    from modelyard.backend.mlmodel import MAX_MLMODEL_BYTES

    try:  # fetched from the export's tracking server: its size is not ours to trust
        data = yaml.safe_load(read_capped(local / "MLmodel", MAX_MLMODEL_BYTES, "an MLmodel file"))
        flavors = list((data or {}).get("flavors", {}))
    except (InvalidInput, ValueError, AttributeError, yaml.YAMLError):
        return "python_function"
    return next((f for f in flavors if f != "python_function"), "python_function")


def _check_exported_location(location: str, source: Tracking | None) -> None:
    """Artifacts come only from the store the export names: a local path is accepted only
    inside the exporting embedded registry's own artifact folder, never elsewhere on disk."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(location)
    if parsed.scheme not in ("", "file") and len(parsed.scheme) != 1:
        return  # s3://, mlflow-artifacts:, http(s):// belong to the exporting stores
    path = Path(unquote(parsed.path) if parsed.scheme == "file" else location).resolve()
    root: Path | None = None
    if source is not None and source.tracking_uri.startswith("sqlite:///"):
        db = Path(source.tracking_uri.removeprefix("sqlite:///"))
        root = (db.parent / "artifacts").resolve()
    if root is None or not (path == root or root in path.parents):
        raise InvalidInput(
            f"the export names artifacts at {redact(location)[:200]}, outside the exporting "
            "registry's artifact store: refused (import reads only the stores the export names)"
        )
