"""Backups and restore: a second store that can bring any version back into an empty registry.

The backup store (``backup = "s3://bucket/prefix"`` or a folder) has the vault's layout:
file contents by SHA-256 under ``objects/`` (an object already there is never sent again),
``manifests/``, the audit trail under ``audit/``, and one *version record* per backed-up
version under ``records/NAME/VERSION.json``: the MLflow version fields, every tag, the
registered model's description and tags, the aliases the version held, its run's params and
metrics, lineage, and the state of the audit trail. The record is written last, so a transfer
that dies leaves nothing that claims to be complete, and a rerun sends only what is missing.

``restore`` brings a version back through the one registration pipeline (a new MLflow
version: numbers are never reused) with the same semver, tags, lineage, params, metrics and
description, a ``modelyard.restored_from`` tag, and, when asked, the aliases it held (moved
through ``Stages``, so audited). Files come from the backup store and are checked against the
manifest before anything is registered.

>>> yard.backup([("churn", "production")]).bytes_sent
>>> yard.restore("churn", "v1.2.0", aliases=True).restored[0].semver
'1.2.0'
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard.audit import AuditLog, Auditor
from modelyard.context import Context
from modelyard.entities import ModelVersion, Result
from modelyard.errors import (
    AuditTampered,
    Conflict,
    IntegrityError,
    InvalidInput,
    ModelNotFound,
    NotFound,
    StorageError,
    UserError,
    YardError,
)
from modelyard.lineage import Lineage
from modelyard.loading import Loader
from modelyard.names import (
    STAGE_ALIASES,
    T_AUDIT_HEAD,
    T_BUMP,
    T_CLASS,
    T_FLAVOR,
    T_MANIFEST,
    T_REASON,
    T_RESTORED_FROM,
    T_SEMVER,
    T_STAGE,
    T_STATUS,
    check_name,
    is_semver,
    parse_semver,
)
from modelyard.refs import is_visible, lookup
from modelyard.registration import Draft, Registrar, SemverPlan
from modelyard.stages import StageChange, Stages
from modelyard.storage import ObjectStore, copy_tree_safely, redact
from modelyard.tracking import VersionRecord
from modelyard.vault import (
    RECORDS,
    Manifest,
    Vault,
    audit_prefix,
    event_key,
    manifest_key,
    object_key,
    record_key,
    records_prefix,
    sha256_file,
)

log = logging.getLogger("modelyard.protection")

BackupProgress = Callable[[str, int], None]
"""Called with ``("total", n)`` when n more bytes are planned, then ``("bytes", n)`` as they
move (from several threads; S3 may report a negative amount when it rewinds a retried part)."""

RECORD_FORMAT = "modelyard-version-record"
RECORD_FORMAT_VERSION = 1
_WORKERS = 10  # files in parallel; each large file goes in parallel parts as well
_OWN_TAGS = (T_SEMVER, T_BUMP, T_REASON, T_STAGE, T_STATUS, T_MANIFEST, T_RESTORED_FROM)


@dataclass
class BackedUpVersion(Result):
    name: str
    version: int
    semver: str | None
    files_sent: int = 0
    bytes_sent: int = 0
    files_skipped: int = 0
    files: int = 0
    bytes_total: int = 0


@dataclass
class BackupReport(Result):
    """What ``backup`` did: the versions now complete in the backup store, and failures."""

    store: str
    versions: list[BackedUpVersion] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bytes_sent(self) -> int:
        return sum(v.bytes_sent for v in self.versions)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "store": self.store, "bytes_sent": self.bytes_sent,
                "versions": [v.to_dict() for v in self.versions], "failed": self.failed}


@dataclass
class RestoreReport(Result):
    """What ``restore`` brought back (new MLflow versions), and what it left alone."""

    restored: list[ModelVersion] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    aliases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "skipped": self.skipped, "failed": self.failed,
                "aliases": self.aliases,
                "restored": [{"name": mv.name, "version": mv.version, "semver": mv.semver,
                              "restored_from": mv.tags.get(T_RESTORED_FROM)}
                             for mv in self.restored]}


@dataclass
class _Plan:
    """One version to back up: its manifest and the objects the backup store lacks."""

    record: VersionRecord
    mv: ModelVersion
    manifest: Manifest
    manifest_raw: bytes
    missing: dict[str, int]  # oid -> size
    result: BackedUpVersion


class _Meter:
    """Thread-safe byte counter in front of the caller's progress callback."""

    def __init__(self, progress: BackupProgress | None) -> None:
        self.progress = progress
        self.lock = threading.Lock()
        self.sent = 0

    def planned(self, amount: int) -> None:
        if self.progress is not None and amount:
            self.progress("total", amount)

    def __call__(self, amount: int) -> None:
        with self.lock:
            self.sent += amount
        if self.progress is not None:
            self.progress("bytes", amount)


class Protector:
    """backup, backup_record, restore, restore_all, and the auto-backup after stage moves."""

    def __init__(self, ctx: Context, registrar: Registrar, loader: Loader, stages: Stages,
                 audit: Auditor) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.registrar = registrar
        self.loader = loader
        self.stages = stages
        self.audit = audit
        self._restoring = False

    def store(self) -> Vault:
        backup = self.ctx.backup
        if backup is None:
            raise InvalidInput("no backup store configured: set backup = \"s3://bucket/prefix\" "
                               "(or a folder) in modelyard.toml, or MODELYARD_BACKUP")
        return backup

    # -- backup ---------------------------------------------------------------------------
    def backup(self, targets: list[tuple[str, str | int | None]] | None = None, *,
               all: bool = False, progress: BackupProgress | None = None) -> BackupReport:
        """Copy versions into the backup store: objects first (only those it lacks), then
        the manifest and the audit trail, and the version record last."""
        backup = self.store()
        records = self._select(targets or [], all)
        report = BackupReport(store=redact(backup.store.url))
        plans: list[_Plan] = []
        for record in records:
            try:
                plans.append(self._plan(record))
            except (IntegrityError, UserError) as exc:
                report.failed.append(_failure(record.name, record.version,
                                              record.tags.get(T_SEMVER), exc.message))
        self._check_present(backup, plans)
        meter = _Meter(progress)
        todo: dict[str, tuple[int, _Plan]] = {}
        for plan in plans:
            for oid, size in plan.missing.items():
                if oid not in todo:
                    todo[oid] = (size, plan)
                    plan.result.files_sent += 1
                    plan.result.bytes_sent += size
            plan.result.files_skipped = len(set(_by_oid(plan.manifest))) - len(
                plan.missing)
        meter.planned(sum(size for size, _ in todo.values()))
        errors = self._send(backup, todo, meter)
        copied_audit: set[str] = set()
        for plan in plans:
            broken = [errors[oid] for oid in plan.missing if oid in errors]
            if broken:
                report.failed.append(_failure(plan.mv.name, plan.mv.version, plan.mv.semver,
                                              broken[0]))
                continue
            try:
                self._finish(backup, plan, copied_audit)
            except YardError as exc:
                report.failed.append(_failure(plan.mv.name, plan.mv.version, plan.mv.semver,
                                              exc.message))
                continue
            report.versions.append(plan.result)
        log.info("backup: %d version(s) complete, %d bytes sent, %d failed",
                 len(report.versions), report.bytes_sent, len(report.failed))
        return report

    def _select(self, targets: list[tuple[str, str | int | None]], every: bool
                ) -> list[VersionRecord]:
        if not targets and not every:
            raise InvalidInput("name what to back up (NAME or NAME@REF), or pass --all")
        reads = self.ctx.reads  # the lean reader: no MLflow import on this path
        wanted: list[tuple[str, str | int | None]] = list(targets)
        if every:
            wanted += [(m.name, None) for m in reads.list_models()]
        chosen: dict[tuple[str, int], VersionRecord] = {}
        for name, ref in wanted:
            check_name(name)
            if ref is None:
                records = [r for r in reads.versions(name) if is_visible(r)]
            else:
                records = [lookup(reads, name, ref)]
            for record in records:
                chosen.setdefault((record.name, record.version), record)
        return list(chosen.values())

    def _plan(self, record: VersionRecord) -> _Plan:
        mv = self.loader.version(record, full=True)
        if not mv.semver or not mv.manifest_sha256:
            raise InvalidInput(f"{mv.label} is not managed by modelyard (run `modelyard adopt "
                               f"{mv.name}` first); not backed up")
        try:
            raw = self.ctx.vault.store.get_bytes(manifest_key(mv.name, mv.version))
        except StorageError as exc:
            if "not found" not in exc.message:
                raise  # the vault is unreachable: nothing can be backed up
            raise IntegrityError(name=mv.name, semver=mv.semver, detail="its manifest is "
                                 "missing from the vault; not backed up") from exc
        manifest = _parse_manifest(raw, mv.name, mv.semver)
        if manifest.sha256 != mv.manifest_sha256:
            raise IntegrityError(name=mv.name, semver=mv.semver,
                                 detail="the vault's manifest does not match the hash tagged "
                                 "on the version; not backed up")
        result = BackedUpVersion(name=mv.name, version=mv.version, semver=mv.semver,
                                 files=len(manifest.files), bytes_total=manifest.total_size)
        return _Plan(record, mv, manifest, raw, {}, result)

    def _check_present(self, backup: Vault, plans: list[_Plan]) -> None:
        """Fill each plan's missing objects: those absent, or of another size, in the store."""
        sizes = {oid: size for plan in plans for oid, size in _by_oid(plan.manifest).items()}
        if not sizes:
            return
        with ThreadPoolExecutor(max_workers=min(16, len(sizes))) as pool:
            found = dict(zip(sizes, pool.map(lambda oid: backup.store.size(object_key(oid)),
                                             sizes), strict=True))
        for plan in plans:
            plan.missing = {oid: size for oid, size in _by_oid(plan.manifest).items()
                            if found[oid] != size}

    def _send(self, backup: Vault, todo: dict[str, tuple[int, _Plan]], meter: _Meter
              ) -> dict[str, str]:
        """Send every missing object in parallel; returns oid -> problem for the failures."""
        errors: dict[str, str] = {}
        if not todo:
            return errors
        with tempfile.TemporaryDirectory(prefix="modelyard-backup-") as tmp:
            sources = _ArtifactSource(self, Path(tmp))

            def send(oid: str) -> None:
                size, plan = todo[oid]
                try:
                    self._send_one(backup, oid, size, plan, sources, Path(tmp), meter)
                except YardError as exc:
                    errors[oid] = exc.message
                except OSError as exc:
                    errors[oid] = f"{exc.strerror or exc}"

            with ThreadPoolExecutor(max_workers=min(_WORKERS, len(todo))) as pool:
                list(pool.map(send, todo))
        return errors

    def _send_one(self, backup: Vault, oid: str, size: int, plan: _Plan,
                  sources: _ArtifactSource, tmp: Path, meter: _Meter) -> None:
        """One object into the backup store, from the first source whose copy is good: the
        vault (copied inside S3 when both stores are on the same endpoint), else the MLflow
        artifact store. Every copy's SHA-256 is checked before it is sent."""
        key = object_key(oid)
        vault = self.ctx.vault.store
        try:
            source, problem = self._vault_copy(vault, key, oid, size, tmp)
        except StorageError as exc:
            source, problem = None, exc.message
        if source == "copy":
            backup.store.copy_from(vault, key, key, meter)
            return
        if isinstance(source, Path):
            backup.store.put_file(key, source, meter)
            return
        log.info("%s: %s; sending the MLflow artifact store's copy", plan.mv.label, problem)
        backup.store.put_file(key, sources.file(plan, oid), meter)

    def _vault_copy(self, vault: ObjectStore, key: str, oid: str, size: int, tmp: Path
                    ) -> tuple[Path | str | None, str]:
        """Where the vault's good copy of an object can be sent from: a local file, "copy"
        (inside S3), or None with the reason."""
        if vault.size(key) != size:
            return None, "the vault has no copy of a file"
        local = vault.local_path(key)
        if local is not None:
            return (local, "") if sha256_file(local) == oid else (
                None, "the vault's copy of a file is damaged")
        if self.ctx.backup is not None and self.ctx.backup.store.can_copy_from(vault):
            if vault.sha256(key) == oid:
                return "copy", ""
            return None, "the vault's copy of a file is damaged"
        staged = tmp / f"vault-{oid}"
        vault.get_file(key, staged)
        if sha256_file(staged) == oid:
            return staged, ""
        return None, "the vault's copy of a file is damaged"

    def _finish(self, backup: Vault, plan: _Plan, copied_audit: set[str]) -> None:
        mv = plan.mv
        backup.store.put_bytes(manifest_key(mv.name, mv.version), plan.manifest_raw)
        head = None
        if mv.name not in copied_audit:
            self._copy_audit(self.ctx.vault, backup, mv.name)
            copied_audit.add(mv.name)
        with contextlib.suppress(YardError):
            last = AuditLog(backup.store, mv.name).last()
            head = f"{last.seq}:{last.hash}" if last else None
        record = self._record(plan, head)
        # Last: a record means every object, the manifest and the trail are in the store.
        backup.store.put_bytes(record_key(mv.name, mv.version),
                               json.dumps(record, indent=1, sort_keys=True).encode())

    @staticmethod
    def _copy_audit(source: Vault, target: Vault, name: str) -> None:
        """Events are immutable: copy the ones the target lacks."""
        have = set(target.store.list(audit_prefix(name)))
        for key in source.store.list(audit_prefix(name)):
            if key not in have:
                target.store.put_bytes(key, source.store.get_bytes(key))

    def _record(self, plan: _Plan, audit_head: str | None) -> dict[str, Any]:
        mv, record = plan.mv, plan.record
        try:
            model = self.ctx.reads.get_model(mv.name)
            model_doc: dict[str, Any] = {
                "description": model.description,
                "tags": {k: v for k, v in model.tags.items() if k != T_AUDIT_HEAD},
                "aliases": dict(model.aliases)}
            held = sorted(a for a, v in model.aliases.items() if v == mv.version)
        except ModelNotFound:  # pragma: no cover - deleted while we copied
            model_doc, held = {"description": "", "tags": {}, "aliases": {}}, list(mv.aliases)
        return {
            "format": RECORD_FORMAT,
            "format_version": RECORD_FORMAT_VERSION,
            "name": mv.name,
            "version": mv.version,
            "semver": mv.semver,
            "manifest_sha256": mv.manifest_sha256,
            "files": len(plan.manifest.files),
            "bytes": plan.manifest.total_size,
            "registry": redact(self.tracking.tracking_uri),
            "backed_up_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "backed_up_by": self.ctx.user,
            "mlflow": {
                "name": record.name, "version": record.version, "source": redact(record.source),
                "run_id": record.run_id, "description": record.description,
                "creation_timestamp": record.created_ms,
                "last_updated_timestamp": record.updated_ms, "user_id": record.user_id,
                "status": record.status, "tags": dict(record.tags), "aliases": held,
            },
            "model": model_doc,
            "run": {"run_id": mv.run_id, "params": dict(mv.params),
                    "metrics": dict(mv.metrics)},
            "lineage": mv.lineage.to_dict(),
            "stage": mv.stage,
            "audit": {"head": audit_head},
        }

    def backup_record(self, name: str, version: int) -> dict[str, Any] | None:
        """The version record in the backup store, or None when that version has none."""
        backup = self.store()
        key = record_key(check_name(name), int(version))
        if not backup.store.exists(key):
            return None
        data: dict[str, Any] = json.loads(backup.store.get_bytes(key))
        return data

    # -- auto-backup ----------------------------------------------------------------------
    def after_move(self, change: StageChange) -> None:
        """Back up a version that entered a stage of ``backup_stages``; a failure is logged
        and audited (``backup_failed``), and never undoes the move."""
        settings = self.ctx.settings
        if (self._restoring or not settings.backup or change.to not in settings.backup_stages
                or change.status == "pending"):
            return
        try:
            report = self.backup([(change.name, change.version)])
            problem = report.failed[0]["error"] if report.failed else None
        except Exception as exc:  # noqa: BLE001 - the move is done; nothing may undo it
            problem = exc.message if isinstance(exc, YardError) else f"{type(exc).__name__}"
        if problem is None:
            return
        log.error("%s #%s entered %s but its backup failed: %s", change.name, change.version,
                  change.to, problem)
        with contextlib.suppress(YardError):
            self.audit.record(change.name, "backup_failed", version=change.version,
                              semver=change.semver, from_=None, to=None,
                              reason=problem[:500], detail={"stage": change.to})

    # -- restore --------------------------------------------------------------------------
    def restore(self, name: str, ref: str | int | None = None, *, aliases: bool = False,
                progress: BackupProgress | None = None) -> RestoreReport:
        """Bring back a version deleted from the registry (``ref``: its semver, ``v1.2.0``,
        its old MLflow number, or an alias it held), or every deleted version of a model."""
        check_name(name)
        backup = self.store()
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
        self._restoring = True
        try:
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
                        made[doc["semver"]] = self.registrar.create(self._draft(doc, local))
                except YardError as exc:
                    if ref is not None:
                        raise
                    report.failed.append(_failure(name, int(doc["version"]), doc["semver"],
                                                  exc.message))
            report.restored = list(made.values())
            if aliases and made:
                self._restore_aliases(name, records if ref is None else todo, made, report)
        finally:
            self._restoring = False
        return report

    def restore_all(self, *, aliases: bool = True,
                    progress: BackupProgress | None = None) -> RestoreReport:
        """Every backed-up model into this registry (after its database was lost): versions
        already here are skipped."""
        backup = self.store()
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
                if key != T_AUDIT_HEAD:
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
        self.tracking.set_model_tag(name, T_AUDIT_HEAD, f"{newest.seq}:{newest.hash}")

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
        manifest = _parse_manifest(raw, name, semver)
        if manifest.sha256 != doc.get("manifest_sha256"):
            raise IntegrityError(name=name, semver=semver, detail="the backed-up manifest does "
                                 "not match its version record")
        meter = _Meter(progress)
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
        with ThreadPoolExecutor(max_workers=max(1, min(_WORKERS, len(items)))) as pool:
            list(pool.map(fetch, items))
        manifest.verify_directory(local, label=name, semver=semver)
        return local

    def _draft(self, doc: dict[str, Any], local: Path) -> Draft:
        from modelyard import mlmodel

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


class _ArtifactSource:
    """The MLflow artifact store as the last source of a version's files (downloaded once
    per version, on first need, and checked file by file)."""

    def __init__(self, owner: Protector, tmp: Path) -> None:
        self.owner = owner
        self.tmp = tmp
        self.lock = threading.Lock()
        self.folders: dict[tuple[str, int], Path] = {}

    def file(self, plan: _Plan, oid: str) -> Path:
        mv = plan.mv
        with self.lock:
            folder = self.folders.get((mv.name, mv.version))
            if folder is None:
                folder = self.owner.tracking.download(
                    mv.source, self.tmp / f"artifacts-{mv.name}-{mv.version}")
                self.folders[(mv.name, mv.version)] = folder
        for rel, (file_oid, _) in plan.manifest.files.items():
            if file_oid == oid:
                path = folder / rel
                if path.is_file() and sha256_file(path) == oid:
                    return path
        raise IntegrityError(name=mv.name, semver=mv.semver or "?",
                             detail=f"no good copy of object {oid[:12]}... in the vault or the "
                             "MLflow artifact store; not backed up")


def _parse_manifest(raw: bytes, name: str, semver: str) -> Manifest:
    try:
        return Manifest.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(name=name, semver=semver, detail="manifest unreadable") from exc


def _newest_per_semver(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for doc in records:
        held = best.get(doc["semver"])
        if held is None or str(doc.get("backed_up_at", "")) > str(held.get("backed_up_at", "")):
            best[doc["semver"]] = doc
    return list(best.values())


def _by_oid(manifest: Manifest) -> dict[str, int]:
    return {oid: size for oid, size in manifest.files.values()}


def _failure(name: str, version: int, semver: str | None, error: str) -> dict[str, Any]:
    return {"name": name, "version": version, "semver": semver, "error": error}
