"""Value objects the facade returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from modelyard.lineage import Lineage
from modelyard.tracking import VersionRecord

T_SEMVER = "modelyard.semver"
T_BUMP = "modelyard.bump"
T_REASON = "modelyard.bump_reason"
T_STAGE = "modelyard.stage"
T_MANIFEST = "modelyard.manifest_sha256"
T_STATUS = "modelyard.status"
T_SCHEMA = "modelyard.schema"
T_FLAVOR = "modelyard.flavor"
T_CLASS = "modelyard.model_class"
T_PARAMS = "modelyard.params"
T_ROLLED_BACK = "modelyard.rolled_back"

STATUS_PENDING = "pending"
STATUS_READY = "ready"


def iso(ms: int) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


@dataclass
class ModelVersion:
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
class LoadedModel:
    """What ``Yard.load`` returns: the model object and where it came from."""

    model: Any
    version: ModelVersion
    path: str
    source: str  # "cache", "registry", "vault" or "train"
    verified: bool
