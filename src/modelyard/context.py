"""What every verb needs, resolved once: settings, the bound MLflow edge, the vault, the user.

``Yard`` builds one ``Context`` and hands it to each verb module; no verb reaches back into
the facade. Settings come from ``config.load_settings`` (arguments > environment > TOML >
defaults), with the project root found by walking up from the working folder.

>>> ctx = build_context(load_settings({"home": "/tmp/x"}))
>>> ctx.settings.resolved_tracking_uri
'sqlite:////tmp/x/mlflow.db'
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.backend.identity import Identity, Permissions, resolve_identity
from modelyard.backend.lean.reader import Reader
from modelyard.backend.tracking import Tracking
from modelyard.core.config import load_settings
from modelyard.core.settings import Settings
from modelyard.store.s3 import S3Store
from modelyard.store.signatures import Signatures
from modelyard.store.storage import ObjectStore, open_store
from modelyard.store.vault import Vault

__all__ = ["Context", "Reads", "build_context", "load_settings"]

Reads = Reader | Tracking  # what answers a read verb (both speak the reader's calls)
if TYPE_CHECKING:  # pragma: no cover
    from modelyard.backend.lean.writer import RestWriter

    Writes = RestWriter | Tracking  # where pure metadata writes go


@dataclass
class Context:
    """The resolved settings and the clients bound to them (one per ``Yard``)."""

    settings: Settings
    tracking: Tracking
    _vault: Vault | None = field(default=None, repr=False)
    _backup: Vault | None = field(default=None, repr=False)
    _reads: Reads | None = field(default=None, repr=False)
    _identity: Identity | None = field(default=None, repr=False)
    _permissions: Permissions | None = field(default=None, repr=False)
    _writes: Writes | None = field(default=None, repr=False)
    _signatures: Signatures | None = field(default=None, repr=False)
    # The environment the lean reader takes MLflow's client settings from (credentials, TLS):
    # None is this process's. The dashboard sets each viewer's own credentials here.
    environ: Mapping[str, str] | None = field(default=None, repr=False)

    @property
    def reads(self) -> Reads:
        """Where read verbs look things up: the lean reader (MLflow's REST API, or the
        embedded SQLite file read-only; no mlflow import) when it can answer for this
        registry, else MLflow's client. Writes always go through ``tracking``."""
        if self._reads is None:
            from modelyard.backend.lean.reader import open_reader

            self._reads = (open_reader(self.settings, environ=self.environ,
                                       fallback=lambda: self.tracking) or self.tracking)
        return self._reads

    @property
    def writes(self) -> Writes:
        """Where pure metadata writes go (aliases, version tags, the stage field, the audit
        head tag): on a tracking server the lean reader speaks to, MLflow's REST API through
        the reader's own transport (no mlflow import); else MLflow's client (the embedded
        default keeps writing through MLflow)."""
        if self._writes is None:
            from modelyard.backend.lean.reader import RestReader

            reads = self.reads
            if isinstance(reads, RestReader):
                from modelyard.backend.lean.writer import RestWriter

                self._writes = RestWriter(reads.transport)
            else:
                self._writes = self.tracking
        return self._writes

    @property
    def listing(self) -> Reads:
        """Where a write path lists every version of a model: the embedded registry's
        read-only reader (rows, not MLflow objects: 2,000 versions in milliseconds), else
        MLflow's client, whose long timeouts suit a 10,000-row search on a busy server (the
        lean REST reader keeps the 10 s deadline of a command-line read)."""
        from modelyard.backend.lean.reader import AbsentReader, SqliteReader

        reads: object = self.reads
        if isinstance(reads, AbsentReader):  # a yard opened before its database existed
            reads = reads.current()
        return reads if isinstance(reads, SqliteReader) else self.tracking

    @property
    def vault(self) -> Vault:
        """The content-addressed store (opened on first use: S3 costs an import)."""
        if self._vault is None:
            self._vault = Vault(self.open_store(self.settings.resolved_vault))
        return self._vault

    @property
    def signatures(self) -> Signatures:
        """Signing versions and checking their signatures (``store/signatures.py``)."""
        if self._signatures is None:
            self._signatures = Signatures(self.vault, self.settings)
        return self._signatures

    @property
    def backup(self) -> Vault | None:
        """The backup store, when one is configured."""
        if self._backup is None and self.settings.backup:
            self._backup = Vault(self.open_backup_store())
        return self._backup

    def open_backup_store(self) -> ObjectStore:
        """The backup store (its own endpoint and profile when set); ``backup`` must be set."""
        settings = self.settings
        return open_store(settings.backup or "",
                          endpoint_url=settings.backup_endpoint_url or settings.s3_endpoint_url,
                          profile=settings.backup_profile)

    def open_store(self, url: str) -> ObjectStore:
        return open_store(url, endpoint_url=self.settings.s3_endpoint_url)

    def prepare_vault(self) -> None:
        """Start building the vault's S3 client in the background (a no-op for a folder), for
        a verb that will need it after its registry requests (``S3Store.prepare``)."""
        store = self.vault.store
        if isinstance(store, S3Store):
            store.prepare()

    @property
    def identity(self) -> Identity:
        """Who this yard acts as (asked of the server once, when it authenticates)."""
        if self._identity is None:
            self._identity = resolve_identity(self.settings, self.reads)
        return self._identity

    @property
    def user(self) -> str:
        """The actor of audit events, requests and decisions (see ``identity.py``)."""
        return self.identity.user

    @property
    def permissions(self) -> Permissions:
        if self._permissions is None:
            self._permissions = Permissions(self.identity, self.reads)
        return self._permissions

    @property
    def cache_dir(self) -> Path:
        return self.settings.resolved_cache_dir

    @property
    def registry_id(self) -> str:
        """A short, stable identity of this registry (its URIs), for keying local caches.

        Two projects, or the embedded default and a server, never share cache entries.
        """
        ident = f"{self.tracking.tracking_uri}\n{self.tracking.registry_uri}"
        return hashlib.sha256(ident.encode()).hexdigest()[:16]


def build_context(settings: Settings) -> Context:
    return Context(settings=settings, tracking=Tracking(settings))
