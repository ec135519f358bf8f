"""``yard.incidents``: detect, recover, drill, health and reproduce, over the ports the
facade hands in (``ports.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.names import check_name

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context
    from modelyard.incidents.detection import Finding, GateCheck
    from modelyard.incidents.health import HealthReport, Monitor
    from modelyard.incidents.ports import (
        DrillRegistry,
        ProtectionVerbs,
        RegistryFactory,
        Rollback,
        UnauditedVerbs,
    )
    from modelyard.incidents.recovery import Baseline, Recovery, RecoveryReport
    from modelyard.incidents.reproduce import ReproduceReport
    from modelyard.incidents.runner import Drills
    from modelyard.incidents.scenarios import DrillReport, Scenario
    from modelyard.registry.loading import Loader
    from modelyard.trail.audit import Auditor


class Incidents:
    """What goes wrong, found and put right: detection, the recovery layers, drills that
    rehearse both, one health status, and reproducing a version from its lineage."""

    def __init__(self, ctx: Context, loader: Loader, audit: Auditor, *, gate_check: GateCheck,
                 rollback: Rollback, protection: ProtectionVerbs, governance: UnauditedVerbs,
                 registry: DrillRegistry, factory: RegistryFactory,
                 monitor: Monitor | None = None) -> None:
        self.ctx = ctx
        self.loader = loader
        self.audit = audit
        self.gate_check = gate_check
        self.rollback = rollback
        self.protection = protection
        self.governance = governance
        self.registry = registry
        self.factory = factory
        self.monitor = monitor
        self._drills: Drills | None = None  # keeps its sandboxes between drills

    @property
    def root(self) -> Path:
        return Path(self.ctx.settings.project_root or Path.cwd()).absolute()

    def _recovery(self) -> Recovery:
        from modelyard.incidents.detection import Detector
        from modelyard.incidents.recovery import Recovery, layers_from

        detector = Detector(self.ctx, self.loader, self.audit, self.root, self.gate_check,
                            self.governance.unaudited)
        layers = layers_from(self.ctx, self.loader, self.root, rollback=self.rollback,
                             protection=self.protection, governance=self.governance)
        return Recovery(detector, layers, self.loader, self.audit)

    def detect(self, name: str) -> list[Finding]:
        """What modelyard's own checks find wrong with a model (changes nothing)."""
        return self._recovery().detector.detect(check_name(name))

    def recover(self, name: str, *, dry_run: bool = False,
                findings: list[Finding] | None = None, verify: bool = True,
                baseline: Baseline | None = None) -> RecoveryReport:
        """Detect, recover through the layers (cache, vault/DVC, snapshot, re-run) and verify.

        >>> yard.incidents.recover("churn", dry_run=True).plan
        ['churn@production: model.pkl does not match ... -> L1 local cache: ...']
        """
        return self._recovery().recover(check_name(name), dry_run=dry_run, findings=findings,
                                        verify=verify, baseline=baseline)

    def verify_recovery(self, name: str, baseline: Baseline | None = None, *,
                        known: set[tuple[str, str, str]] | None = None
                        ) -> tuple[bool, list[str], list[Finding]]:
        """Every check again (``known`` problems aside), production loads, predictions equal
        ``baseline``'s."""
        return self._recovery().verify(check_name(name), baseline, known=known)

    # -- drills ---------------------------------------------------------------------------
    def _drill_runner(self) -> Drills:
        from modelyard.incidents.runner import Drills

        if self._drills is None:
            self._drills = Drills(self.ctx, self.registry, self.factory, self.audit,
                                  self.protection.snapshots)
        return self._drills

    def close(self) -> None:
        """Remove the drill sandboxes kept between drills (they go at exit otherwise)."""
        if self._drills is not None:
            self._drills.close()

    def scenarios(self) -> list[Scenario]:
        """The drill scenarios (``data-noise`` ... ``bad-promotion``)."""
        from modelyard.incidents.scenarios import SCENARIOS

        return list(SCENARIOS)

    def drill(self, scenario: str, *, model: str | None = None, live: bool = False,
              stage: str | None = None) -> DrillReport:
        """Break something on purpose (in a sandbox unless ``live``), then detect, recover and
        verify, timing each phase. Recorded in the ``modelyard-drills`` MLflow experiment.

        >>> yard.incidents.drill("model-corruption").layer
        'L1'
        """
        return self._drill_runner().run(scenario, model=model, live=live, stage=stage)

    def drill_all(self, *, model: str | None = None, live: bool = False,
                  progress: Callable[[DrillReport], None] | None = None,
                  scenarios: list[str] | None = None) -> list[DrillReport]:
        """Every scenario (or ``scenarios``), each from the same sandbox state, one result
        each."""
        return self._drill_runner().run_all(model=model, live=live, progress=progress,
                                            scenarios=scenarios)

    # -- health and reproduce ---------------------------------------------------------------
    def health(self, *, notify: bool = False, models: list[str] | None = None) -> HealthReport:
        """Registry, stores, holders, backups, drills, audit chains, serving: one status
        (``models``: the per-model checks for these models only).

        >>> yard.incidents.health().status
        'healthy'
        """
        from modelyard.incidents.health import Health

        backup_record = (self.protection.backup_record
                         if self.ctx.settings.backup is not None else None)
        return Health(self.ctx, self.loader, self.audit, monitor=self.monitor,
                      backup_record=backup_record,
                      unaudited=self.governance.unaudited).run(notify=notify, models=models)

    def reproduce(self, name: str, ref: str | int | None = "production", *,
                  tolerance: float = 1e-6) -> ReproduceReport:
        """Re-run a version's recorded commit, data and params in a clean git worktree through
        the DVC pipeline; registers nothing; says whether metrics and predictions match.

        >>> yard.incidents.reproduce("churn", "v1.2.0").reproducible
        True
        """
        from modelyard.incidents.reproduce import Reproducer

        return Reproducer(self.ctx, self.loader, self.root).run(name, ref, tolerance=tolerance)

    def last_reproduce(self, name: str, version: int) -> dict[str, Any] | None:
        """The stored result of the last ``reproduce`` of a version (MLflow number), or None."""
        from modelyard.incidents.reproduce import last_result

        return last_result(self.ctx, check_name(name), int(version))
