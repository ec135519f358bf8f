"""restore: versions back from the backup store, through the one registration pipeline.

A restored version is a new MLflow version (numbers are never reused) with the same semver,
tags, lineage, params, metrics and description, and a ``modelyard.restored_from`` tag; with
``aliases`` it gets back the aliases it held, moved through ``Stages`` (so audited). Files
come from the backup store and are checked against the manifest, itself checked against the
version record, before anything is registered.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelyard.context import Context
from modelyard.core.entities import ModelVersion
from modelyard.core.lineage import Lineage
from modelyard.core.names import (
    STAGE_ALIASES,
    T_AUDIT_HEAD,
    T_BUMP,
    T_CLASS,
    T_FLAVOR,
    T_MANIFEST,
    T_REASON,
    T_RESTORED_FROM,
    T_SEMVER,
    T_SIGNER,
    T_STAGE,
    T_STATUS,
    T_VAULT,
    check_name,
    is_semver,
    parse_semver,
)
from modelyard.core.refs import is_visible
from modelyard.errors import (
    AuditTampered,
    Conflict,
    IntegrityError,
    ModelNotFound,
    NotFound,
    StorageError,
    YardError,
)
from modelyard.lifecycle.stages import Stages
from modelyard.protection.backup import Backups, copy_compiled
from modelyard.protection.backup_store import (
    RECORD_FORMAT,
    WORKERS,
    BackupProgress,
    Meter,
    RestoreReport,
    backup_store,
    failure,
    parse_manifest,
)
from modelyard.registry.pipeline import Draft
from modelyard.registry.registration import Registrar
from modelyard.registry.semver_plan import SemverPlan
from modelyard.store.files import copy_tree_safely
from modelyard.store.storage import redact
from modelyard.store.vault import (
    RECORDS,
    Vault,
    event_key,
    manifest_key,
    object_key,
    records_prefix,
    signature_key,
)
from modelyard.trail.audit import AuditLog, Auditor, head_tag

log = logging.getLogger("modelyard.restore")

# T_SIGNER too: a restored version is tagged signed only from the signature it brings.
_OWN_TAGS = (T_SEMVER, T_BUMP, T_REASON, T_STAGE, T_STATUS, T_MANIFEST, T_RESTORED_FROM,
             T_SIGNER)


class Restorer:
    """restore and restore_all."""

    def __init__(self, ctx: Context, registrar: Registrar, stages: Stages, audit: Auditor,
                 backups: Backups) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.registrar = registrar
        self.stages = stages
        self.audit = audit
        self.backups = backups
        self._signatures: dict[str, bytes | None] = {}  # checked bundles by manifest hash

    def restore(self, name: str, ref: str | int | None = None, *, aliases: bool = False,
                progress: BackupProgress | None = None) -> RestoreReport:
        """Bring back a version deleted from the registry (``ref``: its semver, ``v1.2.0``,
        its old MLflow number, or an alias it held), or every deleted version of a model."""
        check_name(name)
        backup = backup_store(self.ctx)
        records = self._records(backup, name)
        if not records:
            raise NotFound(f"no backup of {name} in {redact(backup.store.url)}")
        present = self._present(name)
        if ref is not None:
            chosen = self._pick(records, name, ref)
            if chosen["semver"] in present:
                raise Conflict(f"{name} v{chosen['semver']} is still in the registry (version "
                               f"{present[chosen['semver']]}); nothing to restore")
            todo = [chosen]
        else:
            todo = [r for r in _newest_per_semver(records) if r["semver"] not in present]
            if not todo:
                raise Conflict(f"every backed-up version of {name} is still in the registry; "
                               "nothing to restore")
        report = RestoreReport(skipped=[
            f"{name} v{semver}: still in the registry (version {number})"
            for semver, number in sorted(present.items())
            if ref is None and any(r["semver"] == semver for r in records)])
        with self.backups.paused():
            made: dict[str, ModelVersion] = {}
            ready = False
            for doc in sorted(todo, key=lambda r: int(r["version"])):
                try:
                    with tempfile.TemporaryDirectory(prefix="modelyard-restore-") as tmp:
                        # Files first, checked: nothing is created for a version that
                        # cannot come back whole.
                        local = self._fetch(backup, doc, Path(tmp) / "model", progress)
                        if not ready:
                            self._ensure_model(name, records[-1].get("model", {}))
                            self._restore_audit(backup, name)
                            ready = True
                        draft = self._draft(doc, local)
                        draft.signature = self._signatures.get(doc["manifest_sha256"])
                        made[doc["semver"]] = self.registrar.create(draft)
                        copy_compiled(backup, self.ctx.vault, name, doc.get("manifest_sha256"))
                except YardError as exc:
                    if ref is not None:
                        raise
                    report.failed.append(failure(name, int(doc["version"]), doc["semver"],
                                                  exc.message))
            report.restored = list(made.values())
            if aliases and made:
                self._restore_aliases(name, records if ref is None else todo, made, report)
        return report

    def restore_version(self, name: str, semver: str) -> ModelVersion:
        """One deleted version back, by semver (what ``snapshot restore`` needs of a version
        no longer in the registry); ``NotFound`` when the backup store cannot bring it back."""
        restored: list[ModelVersion] = list(self.restore(name, semver).restored)
        if not restored:
            raise NotFound(f"{name} v{semver} could not be restored from the backup store")
        return restored[0]

    def restore_all(self, *, aliases: bool = True,
                    progress: BackupProgress | None = None) -> RestoreReport:
        """Every backed-up model into this registry (after its database was lost): versions
        already here are skipped."""
        backup = backup_store(self.ctx)
        names = sorted({key.split("/")[1] for key in backup.store.list(RECORDS)
                        if key.count("/") == 2})
        if not names:
            raise NotFound(f"no backups in {redact(backup.store.url)}")
        report = RestoreReport()
        for name in names:
            try:
                part = self.restore(name, None, aliases=aliases, progress=progress)
            except Conflict as exc:
                report.skipped.append(exc.message)
                continue
            except YardError as exc:
                report.failed.append({"name": name, "error": exc.message})
                continue
            report.restored += part.restored
            report.skipped += part.skipped
            report.failed += part.failed
            report.aliases += part.aliases
        return report

    def _records(self, backup: Vault, name: str) -> list[dict[str, Any]]:
        docs = []
        for key in backup.store.list(records_prefix(name)):
            try:
                doc = json.loads(backup.store.get_bytes(key))
            except ValueError:
                log.warning("unreadable backup record %s; ignored", key)
                continue
            if (isinstance(doc, dict) and doc.get("format") == RECORD_FORMAT
                    and doc.get("name") == name and is_semver(str(doc.get("semver")))):
                docs.append(doc)
        return sorted(docs, key=lambda d: int(d["version"]))

    def _present(self, name: str) -> dict[str, int]:
        try:
            return {r.tags[T_SEMVER]: r.version for r in self.tracking.versions(name)
                    if is_visible(r) and r.tags.get(T_SEMVER)}
        except ModelNotFound:
            return {}

    @staticmethod
    def _pick(records: list[dict[str, Any]], name: str, ref: str | int) -> dict[str, Any]:
        text = str(ref).strip()
        if is_semver(text):
            wanted = str(parse_semver(text))
            found = [r for r in records if r["semver"] == wanted]
        elif text.isascii() and text.isdigit():
            found = [r for r in records if int(r["version"]) == int(text)]
        else:
            found = [r for r in records if text in r.get("mlflow", {}).get("aliases", [])]
        if not found:
            raise NotFound(f"no backup record of {name}@{text[:60]} (see `modelyard backup`)")
        return max(found, key=lambda r: str(r.get("backed_up_at", "")))

    def _ensure_model(self, name: str, model: dict[str, Any]) -> None:
        if self.tracking.ensure_registered_model(name, model.get("description") or None):
            for key, value in (model.get("tags") or {}).items():
                if key not in (T_AUDIT_HEAD, T_VAULT):
                    self.tracking.set_model_tag(name, str(key), str(value))

    def _restore_audit(self, backup: Vault, name: str) -> None:
        """Put back the events of the backed-up trail the vault lacks, when the vault's own
        trail is a beginning of it (a vault with a longer or another history is kept)."""
        source = AuditLog(backup.store, name)
        target = self.audit.log(name)
        theirs = source.sequence_numbers()
        if not theirs:
            return
        try:
            source.verify()
        except AuditTampered as exc:
            log.warning("the backed-up audit trail of %s is damaged (%s); not restored",
                        name, exc.message)
            return
        ours = target.sequence_numbers()
        if ours:
            last = ours[-1]
            if last >= theirs[-1]:
                return
            if last not in theirs or target.read(last).hash != source.read(last).hash:
                log.warning("the audit trail of %s differs from its backup; the vault's is kept",
                            name)
                return
        for seq in theirs:
            if seq not in ours:
                target.store.put_if_absent(event_key(name, seq),
                                           backup.store.get_bytes(event_key(name, seq)))
        newest = source.read(theirs[-1])
        self.tracking.set_model_tag(name, T_AUDIT_HEAD, head_tag(name, newest, self.audit.key))
        self.audit.binding.bind(name)

    def _fetch(self, backup: Vault, doc: dict[str, Any], local: Path,
               progress: BackupProgress | None) -> Path:
        """The version's files from the backup store into ``local``, checked against the
        manifest (itself checked against the record)."""
        name, number, semver = doc["name"], int(doc["version"]), str(doc["semver"])
        try:
            raw = backup.store.get_bytes(manifest_key(name, number))
        except StorageError as exc:
            raise IntegrityError(name=name, semver=semver,
                                 detail=f"its backed-up manifest is unreadable ({exc.message})"
                                 ) from exc
        manifest = parse_manifest(raw, name, semver)
        if manifest.sha256 != doc.get("manifest_sha256"):
            raise IntegrityError(name=name, semver=semver, detail="the backed-up manifest does "
                                 "not match its version record")
        # The signature is checked before any file is fetched: a bad one restores nothing.
        tagged = doc.get("mlflow", {}).get("tags", {}).get(T_SIGNER)
        self._signatures[manifest.sha256] = self.ctx.signatures.carried(
            _backed_up_signature(backup, manifest.sha256), manifest, tagged, name=name,
            semver=semver)
        meter = Meter(progress)
        meter.planned(manifest.total_size)

        root = local.resolve()

        def fetch(item: tuple[str, tuple[str, int]]) -> None:
            rel, (oid, _) = item
            target = (local / rel).resolve()
            if root not in target.parents:  # a manifest never writes outside the folder
                raise IntegrityError(name=name, semver=semver,
                                     detail=f"the backed-up manifest names a path outside "
                                     f"the model folder: {rel[:80]!r}")
            backup.store.get_file(object_key(oid), target, meter)

        items = list(manifest.files.items())
        with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(items)))) as pool:
            list(pool.map(fetch, items))
        manifest.verify_directory(local, label=name, semver=semver)
        return local

    def _draft(self, doc: dict[str, Any], local: Path) -> Draft:
        from modelyard.backend import mlmodel

        name, semver = doc["name"], str(doc["semver"])
        mlflow_doc = doc.get("mlflow", {})
        tags: dict[str, str] = {str(k): str(v) for k, v in mlflow_doc.get("tags", {}).items()}
        origin = f"{doc.get('registry', '?')} version {doc['version']}"[:5000]
        kept = {k: v for k, v in tags.items() if k not in _OWN_TAGS}
        stage = tags.get(T_STAGE, "none")
        run = doc.get("run", {})

        def save(folder: Path, run_id: str, model_id: str, location: str) -> None:
            copy_tree_safely(local, folder)

        return Draft(
            name=name, flavor=tags.get(T_FLAVOR) or mlmodel.read_mlmodel(local).flavor,
            model_class=tags.get(T_CLASS, ""), save=save,
            metrics={str(k): float(v) for k, v in run.get("metrics", {}).items()},
            params={str(k): str(v) for k, v in run.get("params", {}).items()},
            tags={**kept, T_RESTORED_FROM: origin}, fixed_tags={**kept, T_RESTORED_FROM: origin},
            description=mlflow_doc.get("description") or None,
            lineage=Lineage.from_tags(tags),
            stage=stage if stage not in STAGE_ALIASES else "none",
            semver=SemverPlan(fixed=semver, fixed_bump=tags.get(T_BUMP, ""),
                              fixed_reason=tags.get(T_REASON, "")),
            run_name=f"{name}-restore", run_tags={T_RESTORED_FROM: origin},
            manifest_extra={"restored_from": origin}, action="restore",
        )

    def _restore_aliases(self, name: str, records: Iterable[dict[str, Any]],
                         made: dict[str, ModelVersion], report: RestoreReport) -> None:
        """Each alias goes to the restored version whose record claimed it most recently."""
        claims: dict[str, dict[str, Any]] = {}
        for doc in records:
            for alias in doc.get("mlflow", {}).get("aliases", []):
                held = claims.get(alias)
                if held is None or str(doc.get("backed_up_at", "")) > str(
                        held.get("backed_up_at", "")):
                    claims[alias] = doc
        for alias, doc in sorted(claims.items()):
            mv = made.get(doc["semver"])
            if mv is None:
                continue
            why = f"restore of {name} v{mv.semver} from backup (it held {alias})"
            try:
                if alias in STAGE_ALIASES:
                    record = self.tracking.get_version(name, mv.version)
                    self.stages.move(name, record, alias, "promote", reason=why,
                                     detail={"restored": True})
                else:
                    self.stages.set_alias(name, mv.version, alias)
            except YardError as exc:
                report.failed.append({"name": name, "alias": alias, "error": exc.message})
                continue
            report.aliases.append({"name": name, "alias": alias, "version": mv.version,
                                   "semver": mv.semver})


def _backed_up_signature(backup: Vault, manifest_sha: str) -> bytes | None:
    try:
        return backup.store.get_bytes(signature_key(manifest_sha))
    except StorageError as exc:
        if "not found" in exc.message:
            return None
        raise


def _newest_per_semver(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for doc in records:
        held = best.get(doc["semver"])
        if held is None or str(doc.get("backed_up_at", "")) > str(held.get("backed_up_at", "")):
            best[doc["semver"]] = doc
    return list(best.values())
