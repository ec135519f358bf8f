"""What the incident verbs need from the rest of modelyard, as small Protocols.

The facade (``yard.py``) hands these in; nothing in ``incidents`` imports the facade. A drill
runs on a whole registry (the sandbox's or the real one), so ``DrillRegistry`` is the widest:
the verbs a drill calls on the registry it breaks and repairs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.backend.tracking import Tracking
    from modelyard.context import Context
    from modelyard.core.entities import ImportSummary, LoadedModel, ModelVersion
    from modelyard.core.settings import Settings
    from modelyard.incidents.detection import Finding
    from modelyard.incidents.recovery import Baseline, RecoveryReport


class ProtectionVerbs(Protocol):
    """The protection verbs recovery layers, health and live drills use (``yard.protection``)."""

    def restore(self, name: str, ref: str | int | None = None, *, aliases: bool = False,
                progress: Any = None) -> Any: ...

    def repair(self, name: str | None = None, ref: str | int | None = None, *,
               all: bool = False, progress: Any = None) -> Any: ...

    def backup(self, targets: list[tuple[str, str | int | None]] | None = None, *,
               all: bool = False, progress: Any = None) -> Any: ...

    def backup_record(self, name: str, version: int) -> dict[str, Any] | None: ...

    @property
    def snapshots(self) -> SnapshotVerbs: ...


class SnapshotVerbs(Protocol):
    def create(self, tag: str, *, models: list[str] | None = None, message: str | None = None,
               include_data: bool = True, include_models: bool = True) -> Any: ...

    def list(self) -> list[Any]: ...

    def diff(self, tag: str, other: str | None = None) -> Any: ...

    def restore(self, tag: str, *, dry_run: bool = False, data: bool = False) -> Any: ...


class UnauditedVerbs(Protocol):
    """Stage holders no audit event explains (``yard.governance``)."""

    def unaudited(self, name: str | None = None) -> list[Any]: ...

    def undo_unaudited(self, name: str) -> list[Any]: ...


class Rollback(Protocol):
    def __call__(self, name: str, stage: str = "production", to: str | int | None = None, *,
                 reason: str | None = None) -> Any: ...


class DrillIncidents(Protocol):
    def detect(self, name: str) -> list[Finding]: ...

    def recover(self, name: str, *, dry_run: bool = False,
                findings: list[Finding] | None = None, verify: bool = True,
                baseline: Baseline | None = None) -> RecoveryReport: ...

    def verify_recovery(self, name: str, baseline: Baseline | None = None, *,
                        known: set[tuple[str, str, str]] | None = None
                        ) -> tuple[bool, list[str], list[Finding]]: ...


class DrillRegistry(Protocol):
    """A registry a drill breaks, detects, recovers and verifies (a ``Yard``)."""

    ctx: Context
    settings: Settings
    tracking: Tracking

    @property
    def incidents(self) -> DrillIncidents: ...

    @property
    def protection(self) -> ProtectionVerbs: ...

    def get(self, name: str, ref: str | int | None = "latest", *, full: bool = True
            ) -> ModelVersion: ...

    def load(self, name: str, ref: str | int | None = "production", *, verify: bool = True,
             train: Callable[[], Any] | None = None, purpose: str = "load") -> LoadedModel: ...

    def register(self, model: Any, name: str, *, metrics: dict[str, float] | None = None,
                 input_example: Any = None, description: str | None = None,
                 pip_requirements: list[str] | None = None) -> ModelVersion: ...

    def promote(self, name: str, ref: str | int, to: str = "production", *,
                reason: str | None = None, force: bool = False) -> Any: ...

    def export(self, names: list[str] | None = None) -> dict[str, Any]: ...

    def import_registry(self, doc: dict[str, Any] | str | bytes, *, dry_run: bool = False,
                        source_tracking_uri: str | None = None,
                        keep_stages: bool = False) -> ImportSummary: ...


# Builds a registry on given settings (the sandbox's, or a stale config's for a drill).
RegistryFactory = Callable[["Settings"], DrillRegistry]
