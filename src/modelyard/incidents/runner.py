"""Running drills: break a throwaway copy on purpose, detect, recover, verify, time it.

By default a drill runs in a sandbox (``sandbox.py``); a live drill runs on the real registry
between a snapshot and a comparison with it. The real registry is only written to record the
drill (an MLflow run in the ``modelyard-drills`` experiment, ``drills/RUN.json`` in the vault,
an audit event).

>>> report = drills.run("model-corruption")
>>> report.layer, report.verified, round(report.mttr, 2)
('L1', True, 0.41)
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.context import Context
from modelyard.core.names import T_DRILL, T_DRILL_MODEL
from modelyard.errors import InvalidInput, UserError, YardError
from modelyard.incidents.inject import Injector
from modelyard.incidents.recovery import Baseline, finding_key
from modelyard.incidents.sandbox import Sandbox
from modelyard.incidents.scenarios import (
    ALL_ORDER,
    BY_NAME,
    EXPERIMENT,
    SCENARIOS,
    STAGES,
    DrillReport,
    Scenario,
)
from modelyard.store.vault import drill_key

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.incidents.ports import DrillRegistry, RegistryFactory, SnapshotVerbs
    from modelyard.protection.snapshots import SnapshotDiff
    from modelyard.trail.audit import Auditor

log = logging.getLogger("modelyard.drills")


def _differences(diff: SnapshotDiff) -> list[str]:
    """What a live drill left different from the snapshot taken first: aliases moved and
    versions deleted, one line each."""
    moved = [f"{m['name']}: {m['alias']} {m['before']} -> {m['after']}" for m in diff.moved]
    gone = [f"{d.get('name')} {d.get('semver') or d.get('version')} deleted"
            for d in diff.deleted]
    return moved + gone


class Drills:
    """``drill`` and its scenarios. ``factory`` builds a registry on given settings (the
    sandbox's); ``snapshots`` are the snapshot verbs a live drill needs (None: no backup
    store, so no live drills); ``audit`` records each drill on the real model."""

    def __init__(self, ctx: Context, real: DrillRegistry, factory: RegistryFactory,
                 audit: Auditor, snapshots: SnapshotVerbs | None = None) -> None:
        self.ctx = ctx
        self.real = real
        self.factory = factory
        self.audit = audit
        self.snapshots = snapshots
        self._sandboxes: dict[str | None, Sandbox] = {}

    def scenarios(self) -> list[Scenario]:
        return list(SCENARIOS)

    def close(self) -> None:
        for sandbox in self._sandboxes.values():
            sandbox.close()
        self._sandboxes.clear()

    def sandbox(self, model: str | None) -> Sandbox:
        box = self._sandboxes.get(model)
        if box is None or box.broken:
            if box is not None:
                box.close()
            source = self.real if model else None
            if model:
                self.real.get(model, "production", full=False)  # NotFound names what is wrong
            box = Sandbox(self.factory, self.ctx.cache_dir, source, model)
            self._sandboxes[model] = box
        return box

    def run_all(self, *, model: str | None = None, live: bool = False,
                progress: Callable[[DrillReport], None] | None = None,
                scenarios: list[str] | None = None) -> list[DrillReport]:
        """Every scenario (or ``scenarios``), each from the same starting state: in the
        sandbox, the state built once and put back before each one, so one drill that fails
        (or leaves something behind) never spoils the next, whatever the order."""
        names = [n for n in ALL_ORDER if scenarios is None or n in scenarios]
        unknown = sorted(set(scenarios or []) - set(ALL_ORDER))
        if unknown:
            raise InvalidInput(f"unknown drill {unknown[0]!r}")
        box = None
        if not live:
            box = self.sandbox(model)
            box.freeze(sorted({box.pipeline_model if BY_NAME[n].kind in ("data", "pipeline")
                               else (model or box.pipeline_model) for n in names}))
        reports = {}
        for name in names:
            if box is not None:
                box.reset()
            try:
                report = self.run(name, model=model, live=live)
            except YardError as exc:  # this scenario could not run: the next ones still do
                report = DrillReport(scenario=name, model=model or "-", sandbox=not live,
                                     injected="", notes=[f"did not run: {exc.message}"])
            reports[name] = report
            if progress is not None:
                progress(report)
        return [reports[s.name] for s in SCENARIOS if s.name in reports]

    def run(self, scenario: str, *, model: str | None = None, live: bool = False,
            stage: str | None = None) -> DrillReport:
        spec = BY_NAME.get(scenario)
        if spec is None:
            raise InvalidInput(f"unknown drill {scenario!r}: one of "
                               f"{', '.join(s.name for s in SCENARIOS)}")
        if stage is not None and (scenario != "pipeline-failure" or stage not in STAGES):
            raise InvalidInput("--stage is for pipeline-failure: prepare, train or evaluate")
        if live:
            return self._live(spec, model, stage)
        box = self.sandbox(model)
        report = self._drill(box.yard, box, spec, box.model_for(spec), stage)
        if not report.ok:
            box.broken = True
        self._record(report, model)
        return report

    def _live(self, spec: Scenario, model: str | None, stage: str | None) -> DrillReport:
        if self.snapshots is None:
            raise UserError("live drills need snapshots (`modelyard snapshot`), which this "
                            "installation does not have yet; run the drill in its sandbox")
        if model is None:
            raise InvalidInput("a live drill needs --model NAME")
        if spec.kind in ("data", "pipeline"):
            raise UserError(f"{spec.name} runs in the sandbox only (it rewrites the project's "
                            "data and pipeline outputs)")
        tag = f"drill-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
        self.snapshots.create(tag, include_data=False)  # live drills never touch the project's data
        report = self._drill(self.real, None, spec, model, stage)
        report.sandbox = False
        differences = _differences(self.snapshots.diff(tag))
        report.notes.append("registry matches the snapshot taken first" if not differences
                            else "registry differs from the snapshot: " + "; ".join(differences))
        if differences:
            report.verified = False
        self._record(report, model)
        return report

    # -- one drill ------------------------------------------------------------------------
    def _drill(self, yard: DrillRegistry, box: Sandbox | None, spec: Scenario, model: str,
               stage: str | None) -> DrillReport:
        report = DrillReport(scenario=spec.name, model=model, sandbox=box is not None,
                             injected="", stage=stage if spec.kind == "pipeline" else None)
        if spec.kind == "pipeline" and report.stage is None:
            report.stage = "train"
        baseline = box.baseline(model) if box is not None else _live_baseline(yard, model)
        before = yard.incidents.detect(model)
        known = {finding_key(f) for f in before}
        if before:
            report.notes.append("there before the drill (not counted): "
                                + "; ".join(f.problem for f in before))
        injector = Injector(yard, box, model, self.factory)
        clock = time.perf_counter()
        report.injected, undo = injector.inject(spec.name, report.stage)
        report.phases["inject"] = time.perf_counter() - clock

        clock = time.perf_counter()
        findings = [f for f in yard.incidents.detect(model) if finding_key(f) not in known]
        report.phases["detect"] = time.perf_counter() - clock
        report.detected = bool(findings)
        report.detected_by = sorted({f.check for f in findings})
        report.findings = [f"{f.target}: {f.problem}" for f in findings]

        clock = time.perf_counter()
        result = yard.incidents.recover(model, findings=findings, verify=False)
        report.phases["recover"] = time.perf_counter() - clock
        report.layer = result.layer
        report.via = next((a.via for fix in result.fixes for a in fix.attempts if a.ok), None)
        report.recovered = bool(findings) and result.recovered

        clock = time.perf_counter()
        if undo is not None:
            undo()  # the outage ends: verification reads the stores again
        verified, lines, remaining = yard.incidents.verify_recovery(model, baseline, known=known)
        report.phases["verify"] = time.perf_counter() - clock
        report.verified = verified and report.recovered
        report.verification = lines
        if remaining:
            report.notes += [f"still: {f.problem}" for f in remaining]
        return report

    # -- records --------------------------------------------------------------------------
    def _record(self, report: DrillReport, model: str | None) -> None:
        """An MLflow run in ``modelyard-drills``, ``drills/RUN.json`` in the vault, and an
        audit event on the real model. A failure to record never fails the drill."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        report.run_id = f"{stamp}-{report.scenario}-{uuid.uuid4().hex[:6]}"
        body = report.to_dict()
        body["at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            tracking = self.ctx.tracking
            run = tracking.create_run(EXPERIMENT, run_name=f"{report.scenario}",
                                      tags={"mlflow.user": self.ctx.user,
                                            T_DRILL: report.scenario,
                                            T_DRILL_MODEL: report.model})
            metrics = {f"{k}_s": v for k, v in report.phases.items()}
            metrics.update(mttr_s=report.mttr, total_s=report.total,
                           detected=float(report.detected), recovered=float(report.recovered),
                           verified=float(report.verified))
            tracking.log_batch(run, metrics=metrics, params={
                "scenario": report.scenario, "model": report.model, "sandbox": report.sandbox,
                "layer": report.layer or "none", "stage": report.stage or ""}, fresh_run=True)
            tracking.end_run(run, "FINISHED" if report.ok else "FAILED")
            body["mlflow_run_id"] = run
        except YardError as exc:
            log.warning("drill not recorded in MLflow: %s", exc.message)
        with contextlib.suppress(YardError):
            self.ctx.vault.store.put_bytes(drill_key(report.run_id),
                                           json.dumps(body, default=str).encode())
        if model:
            with contextlib.suppress(YardError):
                self.audit.record(model, "drill", reason=report.scenario, detail={
                    "run_id": report.run_id, "ok": report.ok, "layer": report.layer,
                    "mttr_s": round(report.mttr, 3), "sandbox": report.sandbox})


def _live_baseline(yard: DrillRegistry, model: str) -> Baseline | None:
    loaded = yard.load(model, "production")
    example = Path(loaded.path) / "input_example.json"
    if not example.is_file():
        return None
    import pandas as pd

    data = json.loads(example.read_text())
    data = data.get("dataframe_split", data) if isinstance(data, dict) else data
    if not (isinstance(data, dict) and "columns" in data):
        return None
    return Baseline.of(loaded.model, pd.DataFrame(data["data"], columns=data["columns"]))


