"""Backups and restore: a second store that can bring any version back into an empty registry.

The backup store (``backup = "s3://bucket/prefix"`` or a folder) has the vault's layout:
file contents by SHA-256 under ``objects/`` (an object already there is never sent again),
``manifests/``, the audit trail under ``audit/``, and one *version record* per backed-up
version under ``records/NAME/VERSION.json``: the MLflow version fields, every tag, the
registered model's description and tags, the aliases the version held, its run's params and
metrics, lineage, and the state of the audit trail. The record is written last, so a transfer
that dies leaves nothing that claims to be complete, and a rerun sends only what is missing.

Three modules share the work: this one holds what both directions use (the results, the
progress meter, the record format, the store itself); ``backup`` sends versions there (and
backs up a version that enters a protected stage); ``restore`` brings them back through the
one registration pipeline (a new MLflow version: numbers are never reused) with the same
semver, tags, lineage, params, metrics and description, a ``modelyard.restored_from`` tag,
and, when asked, the aliases it held (moved through ``Stages``, so audited). Files come from
the backup store and are checked against the manifest before anything is registered.

>>> yard.protection.backup([("churn", "production")]).bytes_sent
>>> yard.protection.restore("churn", "v1.2.0", aliases=True).restored[0].semver
'1.2.0'
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelyard.context import Context
from modelyard.core.entities import ModelVersion, Result
from modelyard.core.names import T_RESTORED_FROM
from modelyard.errors import IntegrityError, InvalidInput
from modelyard.store.vault import Manifest, Vault

BackupProgress = Callable[[str, int], None]
"""Called with ``("total", n)`` when n more bytes are planned, then ``("bytes", n)`` as they
move (from several threads; S3 may report a negative amount when it rewinds a retried part)."""

RECORD_FORMAT = "modelyard-version-record"
RECORD_FORMAT_VERSION = 1
WORKERS = 10  # files in parallel; each large file goes in parallel parts as well


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
    stopped: str | None = None  # a store failed as a whole: why the rest was not tried

    @property
    def bytes_sent(self) -> int:
        return sum(v.bytes_sent for v in self.versions)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "store": self.store, "bytes_sent": self.bytes_sent,
                "versions": [v.to_dict() for v in self.versions], "failed": self.failed,
                "stopped": self.stopped}


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


class Meter:
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


def backup_store(ctx: Context) -> Vault:
    """The configured backup store; a clear error when there is none."""
    backup = ctx.backup
    if backup is None:
        raise InvalidInput("no backup store configured: set backup = \"s3://bucket/prefix\" "
                           "(or a folder) in modelyard.toml, or MODELYARD_BACKUP")
    return backup


def parse_manifest(raw: bytes, name: str, semver: str) -> Manifest:
    try:
        return Manifest.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(name=name, semver=semver, detail="manifest unreadable") from exc


def failure(name: str, version: int, semver: str | None, error: str) -> dict[str, Any]:
    return {"name": name, "version": version, "semver": semver, "error": error}
