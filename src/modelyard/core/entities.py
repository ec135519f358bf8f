"""The typed results the facade returns; the CLI renders them and ``--json`` serialises
``to_dict()``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from modelyard.core.lineage import Lineage
from modelyard.core.names import T_BUMP, T_MANIFEST, T_REASON, T_SEMVER, T_STAGE
from modelyard.core.records import VersionRecord


class Result:
    """Base of the typed results verbs return: ``to_dict()`` for ``--json``, and read-only
    item access (``result["ok"]``) for scripts written against the earlier dict results."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


def iso(ms: int) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


@dataclass
class ModelVersion(Result):
    """One registered version as modelyard sees it."""

    name: str
    version: int
    semver: str | None
    stage: str
    run_id: str | None
    source: str
    artifact_location: str
    bump: str | None
    bump_reason: str | None
    manifest_sha256: str | None
    aliases: list[str]
    tags: dict[str, str]
    description: str
    created_at: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)
    managed: bool = True
    # Unaudited stage moves touching this version (governance; filled by ``details``).
    unaudited: list[dict[str, Any]] = field(default_factory=list)
    # The signature's state, signer and detail (``store/signatures.py``; filled by ``details``).
    signature: dict[str, Any] | None = None

    @classmethod
    def from_record(
        cls,
        record: VersionRecord,
        *,
        metrics: dict[str, float] | None = None,
        params: dict[str, str] | None = None,
        artifact_location: str | None = None,
    ) -> ModelVersion:
        tags = record.tags
        stage = tags.get(T_STAGE, "none")
        return cls(
            name=record.name,
            version=record.version,
            semver=tags.get(T_SEMVER),
            stage=stage,
            run_id=record.run_id,
            source=record.source,
            artifact_location=artifact_location or record.source,
            bump=tags.get(T_BUMP),
            bump_reason=tags.get(T_REASON),
            manifest_sha256=tags.get(T_MANIFEST),
            aliases=list(record.aliases),
            tags={k: v for k, v in tags.items()},
            description=record.description,
            created_at=iso(record.created_ms),
            metrics=dict(metrics or {}),
            params=dict(params or {}),
            lineage=Lineage.from_tags(tags),
            managed=T_SEMVER in tags,
        )

    @property
    def label(self) -> str:
        return f"{self.name} v{self.semver}" if self.semver else f"{self.name} #{self.version}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lineage"] = self.lineage.to_dict()
        return data


@dataclass
class LoadedModel(Result):
    """What ``Yard.load`` returns: the model object and where it came from."""

    model: Any
    version: ModelVersion
    path: str
    source: str  # "cache", "registry", "vault" or "train"
    verified: bool


@dataclass
class ModelRow(Result):
    """One line of ``list``: a model, its version count and stage holders."""

    name: str
    versions: int
    latest: str | None
    latest_version: int | None
    highest_semver: str | None
    staging: str | None
    production: str | None
    description: str
    updated_at: int
    # Unaudited stage moves (governance): one dict per UnauditedHolder; empty when none.
    unaudited: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LineageReport(Result):
    name: str
    version: int
    semver: str | None
    run_id: str | None
    params: dict[str, str]
    lineage: dict[str, Any]
    restored: list[dict[str, str]] = field(default_factory=list)


@dataclass
class VerifyResult(Result):
    name: str
    version: int
    semver: str | None
    ok: bool
    files: int
    bytes: int
    signature: str = "unsigned"  # "signed" (by a trusted or retired-trusted key) or "unsigned"
    signer: str | None = None  # the signing key's id (SHA-256 of its PEM public key)


@dataclass
class Comparison(Result):
    name: str
    versions: list[dict[str, Any]]
    differences: list[str]


@dataclass
class AliasChange(Result):
    name: str
    alias: str
    version: int
    semver: str | None = None
    previous: int | None = None
    deleted: bool = False
    event: int | None = None


@dataclass
class TagChange(Result):
    name: str
    version: int
    key: str
    semver: str | None = None
    value: str | None = None
    previous: str | None = None
    deleted: bool = False
    event: int | None = None


@dataclass
class CleanupResult(Result):
    name: str
    keep: int
    delete: bool
    applied: bool
    plan: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    event: int | None = None


@dataclass
class ImportSummary(Result):
    dry_run: bool
    source: str
    models: int
    created: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    aliases: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    would_create: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.would_create is None:
            data.pop("would_create")
        return data


@dataclass
class Decision(Result):
    """A closed promotion request (``reject``)."""

    id: str
    name: str
    version: int
    semver: str | None
    stage: str
    status: str
    requested_by: str
    decided_by: str
    reason: str | None
    event: int | None = None
    request: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # The request's fields first, as ``requests`` shows them, then the decision.
        return {**self.request, "status": self.status, "rejected_by": self.decided_by,
                "reason": self.reason, "event": self.event}


@dataclass
class Check(Result):
    component: str
    target: str
    ok: bool
    detail: str


@dataclass
class DoctorReport(Result):
    ok: bool
    mode: str
    tracking_uri: str
    artifact_location: str
    vault: str
    user: str
    credentials: dict[str, str]
    checks: list[Check]
    ui: str = ""  # how to open MLflow's UI on this registry (a command, or the server's URL)
