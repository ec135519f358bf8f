"""backup: versions into the backup store, only the objects it lacks, the record last.

Objects go first, in parallel, each from the first good copy: the vault (copied inside S3
when both stores share an endpoint), else the MLflow artifact store; every copy's SHA-256 is
checked before it is sent. Then the manifest and the audit trail, and the version record
last (see ``protection`` for the store's layout). A version that enters a stage named in
``backup_stages`` is backed up after the move (``after_move``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard.context import Context
from modelyard.core.entities import ModelVersion
from modelyard.core.names import T_AUDIT_HEAD, T_SEMVER, T_VAULT, check_name
from modelyard.core.records import VersionRecord
from modelyard.core.refs import is_visible, lookup
from modelyard.errors import (
    IntegrityError,
    InvalidInput,
    ModelNotFound,
    StorageError,
    UserError,
    YardError,
)
from modelyard.lifecycle.stages import StageChange
from modelyard.protection.backup_store import (
    RECORD_FORMAT,
    RECORD_FORMAT_VERSION,
    WORKERS,
    BackedUpVersion,
    BackupProgress,
    BackupReport,
    Meter,
    backup_store,
    failure,
    parse_manifest,
)
from modelyard.registry.loading import Loader
from modelyard.store.files import sha256_file, sha256_stream
from modelyard.store.storage import ObjectStore, redact
from modelyard.store.vault import (
    Manifest,
    Vault,
    audit_prefix,
    compiled_key,
    manifest_key,
    object_key,
    record_key,
    signature_key,
)
from modelyard.trail.audit import AuditLog, Auditor

log = logging.getLogger("modelyard.backup")


@dataclass
class _Plan:
    """One version to back up: its manifest and the objects the backup store lacks."""

    record: VersionRecord
    mv: ModelVersion
    manifest: Manifest
    manifest_raw: bytes
    missing: dict[str, int]  # oid -> size
    result: BackedUpVersion


class Backups:
    """backup, backup_record, and the auto-backup after stage moves."""

    def __init__(self, ctx: Context, loader: Loader, audit: Auditor) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.loader = loader
        self.audit = audit
        self._paused = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No auto-backup meanwhile (a restore moving aliases back)."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def backup(self, targets: list[tuple[str, str | int | None]] | None = None, *,
               all: bool = False, progress: BackupProgress | None = None) -> BackupReport:
        """Copy versions into the backup store: objects first (only those it lacks), then
        the manifest and the audit trail, and the version record last."""
        backup = backup_store(self.ctx)
        records = self._select(targets or [], all)
        report = BackupReport(store=redact(backup.store.url))
        try:
            self._backup(backup, records, report, progress)
        except StorageError as exc:
            if not whole_store(exc):
                raise
            self._stopped(report, records, exc.message)
        log.info("backup: %d version(s) complete, %d bytes sent, %d failed",
                 len(report.versions), report.bytes_sent, len(report.failed))
        return report

    @staticmethod
    def _stopped(report: BackupReport, records: list[VersionRecord], problem: str) -> None:
        """A store failed as a whole: every version not complete yet is not backed up, for
        the one reason (trying the rest would only meet it again, a timeout each)."""
        report.stopped = problem
        done = {(v.name, v.version) for v in report.versions}
        failed = {(f["name"], f["version"]) for f in report.failed}
        for record in records:
            if (record.name, record.version) not in done | failed:
                report.failed.append(failure(record.name, record.version,
                                             record.tags.get(T_SEMVER),
                                             f"not backed up: {problem}"))

    def _backup(self, backup: Vault, records: list[VersionRecord], report: BackupReport,
                progress: BackupProgress | None) -> None:
        if records:  # one look-up first: a store that is down stops here, before any plan
            backup.store.exists(record_key(records[0].name, records[0].version))
        plans: list[_Plan] = []
        for record in records:
            try:
                plans.append(self._plan(record))
            except (IntegrityError, UserError) as exc:
                report.failed.append(failure(record.name, record.version,
                                              record.tags.get(T_SEMVER), exc.message))
        self._check_present(backup, plans)
        meter = Meter(progress)
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
        errors, stopped = self._send(backup, todo, meter)
        if stopped is not None:
            raise stopped
        copied_audit: set[str] = set()
        for plan in plans:
            broken = [errors[oid] for oid in plan.missing if oid in errors]
            if broken:
                report.failed.append(failure(plan.mv.name, plan.mv.version, plan.mv.semver,
                                              broken[0]))
                continue
            try:
                self._finish(backup, plan, copied_audit)
            except YardError as exc:
                if whole_store(exc):
                    raise
                report.failed.append(failure(plan.mv.name, plan.mv.version, plan.mv.semver,
                                              exc.message))
                continue
            report.versions.append(plan.result)

    def _select(self, targets: list[tuple[str, str | int | None]], every: bool
                ) -> list[VersionRecord]:
        if not targets and not every:
            raise InvalidInput("name what to back up (NAME or NAME@REF), or pass --all")
        reads = self.ctx.reads  # the lean reader: no MLflow import on this path
        wanted: list[tuple[str, str | int | None]] = list(targets)
        if every:  # this vault's models: another vault's manifests are not here to send
            mine, _ = self.audit.binding.split(reads.list_models())
            wanted += [(m.name, None) for m in mine]
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
        manifest = parse_manifest(raw, mv.name, mv.semver)
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
        down: list[StorageError] = []

        def size(oid: str) -> int | None:
            # pool.map's first exception leaves every queued look-up to run (and fail, after
            # its retries) before the pool closes: once the store is down, the rest is skipped.
            if down:
                return None
            try:
                return backup.store.size(object_key(oid))
            except StorageError as exc:
                if whole_store(exc):
                    down.append(exc)
                    return None
                raise

        with ThreadPoolExecutor(max_workers=min(16, len(sizes))) as pool:
            found = dict(zip(sizes, pool.map(size, sizes), strict=True))
        if down:
            raise down[0]
        for plan in plans:
            plan.missing = {oid: size for oid, size in _by_oid(plan.manifest).items()
                            if found[oid] != size}

    def _send(self, backup: Vault, todo: dict[str, tuple[int, _Plan]], meter: Meter
              ) -> tuple[dict[str, str], StorageError | None]:
        """Send every missing object in parallel: oid -> problem for the failures that are
        the version's, and the first failure of a store as a whole (after which nothing more
        is tried: the sends still queued return at once)."""
        errors: dict[str, str] = {}
        stopped: list[StorageError] = []
        if not todo:
            return errors, None
        with tempfile.TemporaryDirectory(prefix="modelyard-backup-") as tmp:
            sources = _ArtifactSource(self, Path(tmp))

            def send(oid: str) -> None:
                if stopped:
                    return
                size, plan = todo[oid]
                try:
                    self._send_one(backup, oid, size, plan, sources, Path(tmp), meter)
                except StorageError as exc:
                    if whole_store(exc):
                        stopped.append(exc)
                    errors[oid] = exc.message
                except YardError as exc:
                    errors[oid] = exc.message
                except OSError as exc:
                    errors[oid] = f"{exc.strerror or exc}"

            with ThreadPoolExecutor(max_workers=min(WORKERS, len(todo))) as pool:
                list(pool.map(send, todo))
        return errors, (stopped[0] if stopped else None)

    def _send_one(self, backup: Vault, oid: str, size: int, plan: _Plan,
                  sources: _ArtifactSource, tmp: Path, meter: Meter) -> None:
        """One object into the backup store, from the first source whose copy is good: the
        vault (copied inside S3 when both stores are on the same endpoint), else the MLflow
        artifact store. Every copy's SHA-256 is checked before it is sent."""
        key = object_key(oid)
        vault = self.ctx.vault.store
        vault_down: StorageError | None = None
        try:
            source, problem = self._vault_copy(vault, key, oid, size, tmp)
        except StorageError as exc:
            source, problem = None, exc.message
            vault_down = exc if whole_store(exc) else None
        if source == "copy":
            backup.store.copy_from(vault, key, key, meter)
            return
        if isinstance(source, Path):
            backup.store.put_file(key, source, meter)
            return
        log.info("%s: %s; sending the MLflow artifact store's copy", plan.mv.label, problem)
        try:
            fallback = sources.file(plan, oid)
        except YardError as exc:
            if vault_down is None or isinstance(exc, IntegrityError):
                raise
            # The vault's endpoint is down and the artifact store (often on the same S3)
            # failed too: the vault's endpoint is the part to name, and a store's failure.
            raise StorageError(f"{vault_down.message} (the vault, {redact(vault.url)}); the "
                               f"MLflow artifact store failed too: {exc.message}",
                               whole_store=True) from exc
        backup.store.put_file(key, fallback, meter)

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
        signature = self.ctx.signatures.bundle(plan.manifest.sha256)
        if signature is not None:  # restore checks it against the trusted keys
            backup.store.put_bytes(signature_key(plan.manifest.sha256), signature)
        copy_compiled(self.ctx.vault, backup, mv.name, mv.manifest_sha256)
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
                "tags": {k: v for k, v in model.tags.items() if k not in (T_AUDIT_HEAD, T_VAULT)},
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
        backup = backup_store(self.ctx)
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
        if (self._paused or not settings.backup or change.to not in settings.backup_stages
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


class _ArtifactSource:
    """The MLflow artifact store as the last source of a version's files (downloaded once
    per version, on first need, and checked file by file)."""

    def __init__(self, owner: Backups, tmp: Path) -> None:
        self.owner = owner
        self.tmp = tmp
        self.lock = threading.Lock()
        self.folders: dict[tuple[str, int], Path] = {}

    def file(self, plan: _Plan, oid: str) -> Path:
        mv = plan.mv
        with self.lock:
            folder = self.folders.get((mv.name, mv.version))
            if folder is None:
                folder = self.owner.tracking.artifacts.download(
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


def copy_compiled(source: Vault, target: Vault, name: str, manifest_sha256: str | None) -> bool:
    """Copy a version's compiled (ONNX) copy, when one was made (serving/compiled.py): its
    object, checked by its SHA-256, then its record, keyed by the manifest hash (a restored
    version has the same files, so the same key). True when copied. Never fails the caller:
    a copy can always be made again from the version's files."""
    if not manifest_sha256:
        return False
    key = compiled_key(name, manifest_sha256)
    try:
        if not source.store.exists(key):
            return False
        raw = source.store.get_bytes(key)
        oid = str(json.loads(raw).get("object") or "")
        if oid and not target.store.exists(object_key(oid)):
            data = source.store.get_bytes(object_key(oid))
            if sha256_stream([data])[0] != oid:
                log.warning("%s: the compiled copy is damaged; not copied", name)
                return False
            target.store.put_bytes(object_key(oid), data)
        target.store.put_bytes(key, raw)
    except (YardError, ValueError, AttributeError) as exc:
        log.warning("%s: compiled copy not copied: %s", name, getattr(exc, "message", exc))
        return False
    return True


def whole_store(exc: BaseException) -> bool:
    """Whether a failure is a store's as a whole (unreachable, no bucket, no credentials),
    not one object's: ``store.s3`` marks it so."""
    return isinstance(exc, StorageError) and bool(exc.fields.get("whole_store"))


def _by_oid(manifest: Manifest) -> dict[str, int]:
    return {oid: size for oid, size in manifest.files.values()}
