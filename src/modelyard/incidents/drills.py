"""Incident drills: break a throwaway copy on purpose, detect, recover, verify, time it.

Each drill runs four timed phases: inject -> detect -> recover -> verify. Detection and
recovery are ``recover``'s own (``recovery.py``): a drill never tells them what it broke.
MTTR is detect + recover + verify.

By default a drill runs in a sandbox: a temporary embedded home (SQLite registry, artifact
folder, vault, backup folder, DVC cache and remote) holding a small generated DVC project
(``modelyard init``'s pipeline at the seeds' 4,000 rows) and, when ``model`` names a real
model, a copy of that model's versions (export -> import). Data and pipeline scenarios run on
the generated project; model, registry, storage and promotion scenarios on the imported copy
when there is one. The real registry is only written to record the drill (an MLflow run in the
``modelyard-drills`` experiment, ``drills/RUN.json`` in the vault, an audit event).

>>> [s.name for s in drills.scenarios()][:3]
['data-noise', 'data-missing', 'data-duplicates']
>>> report = drills.run("model-corruption")
>>> report.layer, report.verified, round(report.mttr, 2)
('L1', True, 0.41)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.context import Context
from modelyard.errors import InvalidInput, NotFound, UserError, YardError
from modelyard.incidents.recovery import Baseline, RecoveryReport, finding_key
from modelyard.project.dvc import run_dvc, set_param
from modelyard.store.vault import drill_key

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.core.settings import Settings
    from modelyard.protection.snapshots import SnapshotDiff
    from modelyard.yard import Yard

log = logging.getLogger("modelyard.drills")

EXPERIMENT = "modelyard-drills"
SANDBOX_ROWS = 4000  # the seeds' size
SANDBOX_TREES = 20
STAGES = ("prepare", "train", "evaluate")


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # data | model | registry | storage | pipeline | promotion
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCENARIOS = [
    Scenario("data-noise", "data", "Gaussian noise added to the numeric columns of the "
             "production version's DVC-tracked training data"),
    Scenario("data-missing", "data", "30% of the values of three numeric columns removed"),
    Scenario("data-duplicates", "data", "half of the training rows duplicated"),
    Scenario("model-corruption", "model", "bytes of the production version's model file "
             "flipped in the artifact store"),
    Scenario("model-deletion", "registry", "the production version deleted from the registry"),
    Scenario("artifact-loss", "model", "the production version's files deleted from the "
             "artifact store and the local cache"),
    Scenario("pipeline-failure", "pipeline", "a DVC stage (--stage, default train) fails "
             "midway, leaving a partial output"),
    Scenario("registry-loss", "registry", "every registered model deleted from the registry"),
    Scenario("storage-outage", "storage", "the artifact store stops answering while the "
             "production model is loaded"),
    Scenario("bad-promotion", "promotion", "a clearly worse version forced into production"),
]
_BY_NAME = {s.name: s for s in SCENARIOS}
# --all runs the scenarios that leave nothing to rebuild first (a drill that cannot recover
# leaves the sandbox broken, and the next one would pay for a new sandbox).
_ALL_ORDER = ["model-corruption", "artifact-loss", "storage-outage", "bad-promotion",
              "data-noise", "data-missing", "data-duplicates", "pipeline-failure",
              "model-deletion", "registry-loss"]


@dataclass
class DrillReport:
    """One drill: what was broken, what saw it, what put it back, and how long it took."""

    scenario: str
    model: str
    sandbox: bool
    injected: str
    detected: bool = False
    detected_by: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    layer: str | None = None
    via: str | None = None
    recovered: bool = False
    verified: bool = False
    verification: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    stage: str | None = None
    run_id: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def mttr(self) -> float:
        return sum(self.phases.get(p, 0.0) for p in ("detect", "recover", "verify"))

    @property
    def total(self) -> float:
        return self.mttr + self.phases.get("inject", 0.0)

    @property
    def ok(self) -> bool:
        return self.detected and self.recovered and self.verified

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(mttr=round(self.mttr, 4), total=round(self.total, 4), ok=self.ok)
        data["phases"] = {k: round(v, 4) for k, v in self.phases.items()}
        return data


# -- the sandbox --------------------------------------------------------------------------
def _only(kept: dict[str, str], cache: Path) -> dict[str, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), kept.get("PATH", "")])
    return {**kept, "PATH": path, "PYTHONWARNINGS": "ignore", "DVC_NO_ANALYTICS": "1",
            "MODELYARD_CACHE_DIR": str(cache), "MODELYARD_USER": "drill"}


class Sandbox:
    """A throwaway embedded home with a generated DVC project, built on first use."""

    def __init__(self, factory: Callable[[Settings], Yard], cache: Path,
                 source: Yard | None = None, model: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="modelyard-drill-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self.project = self.root / "project"
        self.factory = factory
        self.cache = cache
        self.env = _only({k: v for k, v in os.environ.items()
                          if not k.startswith(("MLFLOW_", "MODELYARD_", "AWS_"))}, cache)
        self.source = source
        self.real_model = model
        self.pipeline_model = "drill-churn"
        self._yard: Yard | None = None
        self._generated = False
        self._imported = False
        self.broken = False

    def close(self) -> None:
        self._finalizer()

    # -- building -------------------------------------------------------------------------
    @property
    def yard(self) -> Yard:
        if self._yard is None:
            self._init_project()
            from modelyard.core.config import load_settings

            settings = load_settings({"cache_dir": str(self.cache)}, cwd=self.project,
                                     environ={k: v for k, v in self.env.items()
                                              if not k.startswith("MODELYARD_")})
            self._yard = self.factory(settings)
        return self._yard

    def _init_project(self) -> None:
        """The sandbox's home: an empty registry and the template's policy. The DVC project
        around it is made only when a drill needs the generated pipeline."""
        from modelyard.project.scaffold import template_root

        self.project.mkdir(parents=True)
        _empty_registry(self.cache, self.project / ".modelyard" / "mlflow.db")
        self._write_toml((template_root() / "modelyard.toml").read_text())

    def _write_toml(self, text: str) -> None:
        (self.project / "modelyard.toml").write_text(
            f'backup = "{self.root / "backup"}"\n' + text)

    def _init_pipeline(self) -> None:
        from modelyard.project import git
        from modelyard.project.scaffold import init_project

        toml = (self.project / "modelyard.toml").read_text()
        git.init_repository(self.project)
        init_project(self.project, name=self.pipeline_model, force=True)
        (self.project / "modelyard.toml").write_text(toml)
        params = self.project / "params.yaml"
        set_param(params, "prepare", "n_rows", str(SANDBOX_ROWS))
        set_param(params, "train", "n_estimators", str(SANDBOX_TREES))
        set_param(params, "train", "cv_folds", "2")
        run_dvc(["remote", "add", "-d", "sandbox", str(self.root / "dvc-remote")],
                self.project, self.env)
        self.commit("sandbox: scaffold")

    def commit(self, message: str) -> None:
        from modelyard.project import git

        subprocess.run(["git", "add", "-A"], cwd=self.project, capture_output=True,
                       check=False, env=self.env)
        subprocess.run(["git", *git.identity_options(self.project), "commit", "-q",
                        "--allow-empty", "-m", message], cwd=self.project,
                       capture_output=True, check=False, env=self.env)

    def generated(self) -> str:
        """The generated pipeline's model, trained, pushed and in production."""
        yard = self.yard
        if not self._generated:
            self._init_pipeline()
            run_dvc(["repro"], self.project, self.env)
            self.commit("sandbox: train v1")
            run_dvc(["push", "-q"], self.project, self.env)
            info = json.loads((self.project / "model.json").read_text())
            yard.promote(self.pipeline_model, info["version"], to="production", force=True,
                         reason="drill sandbox baseline")
            self._generated = True
        return self.pipeline_model

    def imported(self) -> str:
        """The real model's versions copied in (export -> import), or the generated one."""
        if self.source is None or self.real_model is None:
            return self.generated()
        if not self._imported:
            document = self.source.export([self.real_model])
            summary = self.yard.import_registry(
                document, source_tracking_uri=self.source.tracking.tracking_uri)
            if not summary.created:
                raise UserError(f"no version of {self.real_model} could be copied into the "
                                "drill sandbox")
            # The sandbox mirrors the backup store too: what was copied in is backed up, as
            # the real model's promoted versions are.
            self.yard.backup([(self.real_model, None)])
            self._imported = True
        return self.real_model

    def model_for(self, scenario: Scenario) -> str:
        return self.generated() if scenario.kind in ("data", "pipeline") else self.imported()

    def baseline(self, model: str) -> Baseline | None:
        loaded = self.yard.load(model, "production")
        sample = self.sample(Path(loaded.path))
        return Baseline.of(loaded.model, sample) if sample is not None else None

    def sample(self, folder: Path, rows: int = 100) -> Any:
        import pandas as pd

        test = self.project / "data" / "prepared" / "test.csv"
        example = folder / "input_example.json"
        if example.is_file():
            data = json.loads(example.read_text())
            data = data.get("dataframe_split", data) if isinstance(data, dict) else data
            if isinstance(data, dict) and "columns" in data:
                columns = list(data["columns"])
                if test.is_file():
                    frame = pd.read_csv(test, dtype={"customer_id": str})
                    if set(columns) <= set(frame.columns):
                        out = frame[columns].head(rows)
                        for column in out.columns:
                            if not pd.api.types.is_numeric_dtype(out[column]):
                                out[column] = out[column].astype(object)
                        return out
                return pd.DataFrame(data["data"], columns=columns)
        return None


def _empty_registry(cache: Path, target: Path) -> None:
    """An embedded MLflow database with its schema in place, copied from one made once per
    MLflow version (creating the schema costs seconds every time otherwise)."""
    from importlib.metadata import version

    from modelyard.backend.tracking import Tracking
    from modelyard.core.config import load_settings

    template = cache / "drills" / f"empty-mlflow-{version('mlflow')}.db"
    if not template.is_file():
        with tempfile.TemporaryDirectory(prefix="modelyard-db-") as tmp:
            settings = load_settings({"home": tmp}, environ={}, cwd=Path(tmp))
            ok, detail = Tracking(settings).health()
            if not ok:
                raise UserError(f"cannot create the sandbox registry: {detail}")
            template.parent.mkdir(parents=True, exist_ok=True)
            partial = template.with_name(f".{template.name}.{uuid.uuid4().hex[:6]}")
            shutil.copyfile(Path(tmp) / "mlflow.db", partial)
            partial.replace(template)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)


# -- the drills ---------------------------------------------------------------------------
Recover = Callable[..., RecoveryReport]


def _differences(diff: SnapshotDiff) -> list[str]:
    """What a live drill left different from the snapshot taken first: aliases moved and
    versions deleted, one line each."""
    moved = [f"{m['name']}: {m['alias']} {m['before']} -> {m['after']}" for m in diff.moved]
    gone = [f"{d.get('name')} {d.get('semver') or d.get('version')} deleted"
            for d in diff.deleted]
    return moved + gone


class Drills:
    """``drill`` and ``drill_scenarios``. ``factory`` builds a facade on given settings (the
    sandbox's); ``snapshot`` / ``snapshot_diff`` are the snapshot verbs live drills need."""

    def __init__(self, ctx: Context, yard: Yard, factory: Callable[[Settings], Yard],
                 snapshot: Callable[..., Any] | None = None,
                 snapshot_diff: Callable[[str], SnapshotDiff] | None = None) -> None:
        self.ctx = ctx
        self.real = yard
        self.factory = factory
        self.snapshot = snapshot
        self.snapshot_diff = snapshot_diff
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
                progress: Callable[[DrillReport], None] | None = None) -> list[DrillReport]:
        reports = {}
        for name in _ALL_ORDER:
            report = self.run(name, model=model, live=live)
            reports[name] = report
            if progress is not None:
                progress(report)
        return [reports[s.name] for s in SCENARIOS]

    def run(self, scenario: str, *, model: str | None = None, live: bool = False,
            stage: str | None = None) -> DrillReport:
        spec = _BY_NAME.get(scenario)
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
        if self.snapshot is None or self.snapshot_diff is None:
            raise UserError("live drills need snapshots (`modelyard snapshot`), which this "
                            "installation does not have yet; run the drill in its sandbox")
        if model is None:
            raise InvalidInput("a live drill needs --model NAME")
        if spec.kind in ("data", "pipeline"):
            raise UserError(f"{spec.name} runs in the sandbox only (it rewrites the project's "
                            "data and pipeline outputs)")
        tag = f"drill-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
        self.snapshot(tag, include_data=False)  # live drills never touch the project's data
        report = self._drill(self.real, None, spec, model, stage)
        report.sandbox = False
        differences = _differences(self.snapshot_diff(tag))
        report.notes.append("registry matches the snapshot taken first" if not differences
                            else "registry differs from the snapshot: " + "; ".join(differences))
        if differences:
            report.verified = False
        self._record(report, model)
        return report

    # -- one drill ------------------------------------------------------------------------
    def _drill(self, yard: Yard, box: Sandbox | None, spec: Scenario, model: str,
               stage: str | None) -> DrillReport:
        report = DrillReport(scenario=spec.name, model=model, sandbox=box is not None,
                             injected="", stage=stage if spec.kind == "pipeline" else None)
        if spec.kind == "pipeline" and report.stage is None:
            report.stage = "train"
        baseline = box.baseline(model) if box is not None else _live_baseline(yard, model)
        before = yard.detect(model)
        known = {finding_key(f) for f in before}
        if before:
            report.notes.append("there before the drill (not counted): "
                                + "; ".join(f.problem for f in before))
        injector = Injector(yard, box, model)
        clock = time.perf_counter()
        report.injected, undo = injector.inject(spec.name, report.stage)
        report.phases["inject"] = time.perf_counter() - clock

        clock = time.perf_counter()
        findings = [f for f in yard.detect(model) if finding_key(f) not in known]
        report.phases["detect"] = time.perf_counter() - clock
        report.detected = bool(findings)
        report.detected_by = sorted({f.check for f in findings})
        report.findings = [f"{f.target}: {f.problem}" for f in findings]

        clock = time.perf_counter()
        result = yard.recover(model, findings=findings, verify=False)
        report.phases["recover"] = time.perf_counter() - clock
        report.layer = result.layer
        report.via = next((a.via for fix in result.fixes for a in fix.attempts if a.ok), None)
        report.recovered = bool(findings) and result.recovered

        clock = time.perf_counter()
        if undo is not None:
            undo()  # the outage ends: verification reads the stores again
        verified, lines, remaining = yard.verify_recovery(model, baseline, known=known)
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
                                            "modelyard.drill": report.scenario,
                                            "modelyard.drill.model": report.model})
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
                self.real._audit.record(model, "drill", reason=report.scenario, detail={
                    "run_id": report.run_id, "ok": report.ok, "layer": report.layer,
                    "mttr_s": round(report.mttr, 3), "sandbox": report.sandbox})


def newest_drill(ctx: Context) -> dict[str, Any] | None:
    """The newest drill record in the vault, or None."""
    from modelyard.store.vault import DRILLS

    keys = sorted(ctx.vault.store.list(DRILLS))
    if not keys:
        return None
    try:
        return dict(json.loads(ctx.vault.store.get_bytes(keys[-1])))
    except (YardError, ValueError):
        return None


def _live_baseline(yard: Yard, model: str) -> Baseline | None:
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


# -- injection ----------------------------------------------------------------------------
class Injector:
    """Breaks one thing on purpose. ``inject`` returns (what was done, an undo for outages)."""

    def __init__(self, yard: Yard, box: Sandbox | None, model: str) -> None:
        self.yard = yard
        self.box = box
        self.model = model

    def inject(self, scenario: str, stage: str | None) -> tuple[str, Callable[[], None] | None]:
        method = getattr(self, "_" + scenario.replace("-", "_"))
        result: tuple[str, Callable[[], None] | None] = (
            method(stage) if scenario == "pipeline-failure" else method())
        return result

    # -- data -----------------------------------------------------------------------------
    def _training_csv(self) -> Path:
        if self.box is None:
            raise UserError("data drills run in the sandbox")
        mv = self.yard.get(self.model, "production", full=False)
        for ref in mv.lineage.data:
            if ref.path.endswith(".csv"):
                path = Path(ref.path)
                return path if path.is_absolute() else self.box.project / path
        raise NotFound(f"{mv.label} records no CSV training data")

    def _rewrite(self, change: Callable[[Any], Any]) -> Path:
        import pandas as pd

        path = self._training_csv()
        frame = pd.read_csv(path, dtype={"customer_id": str})
        change(frame).to_csv(path, index=False)
        return path

    def _numeric(self, frame: Any) -> list[str]:
        import pandas as pd

        return [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
                and c != "churn" and frame[c].nunique() > 2]

    def _data_noise(self) -> tuple[str, None]:
        import numpy as np

        columns: list[str] = []

        def change(frame: Any) -> Any:
            rng = np.random.default_rng(7)
            columns.extend(self._numeric(frame))
            for column in columns:
                spread = float(frame[column].std() or 1.0)
                frame[column] = frame[column] + rng.normal(0, 3 * spread, len(frame))
            return frame

        path = self._rewrite(change)
        return f"noise (3 sd) added to {', '.join(columns)} in {path.name}", None

    def _data_missing(self) -> tuple[str, None]:
        import numpy as np

        columns: list[str] = []

        def change(frame: Any) -> Any:
            rng = np.random.default_rng(8)
            columns.extend(self._numeric(frame)[:3])
            for column in columns:
                frame.loc[rng.random(len(frame)) < 0.3, column] = np.nan
            return frame

        path = self._rewrite(change)
        return f"30% of {', '.join(columns)} removed in {path.name}", None

    def _data_duplicates(self) -> tuple[str, None]:
        import pandas as pd

        def change(frame: Any) -> Any:
            return pd.concat([frame, frame.sample(frac=0.5, random_state=9)], ignore_index=True)

        path = self._rewrite(change)
        return f"half of the rows of {path.name} duplicated", None

    # -- model files ----------------------------------------------------------------------
    def _production(self) -> Any:
        return self.yard.get(self.model, "production", full=True)

    def _model_corruption(self) -> tuple[str, None]:
        mv = self._production()
        with tempfile.TemporaryDirectory(prefix="modelyard-drill-") as tmp:
            local = self.yard.tracking.download(mv.source, Path(tmp) / "files")
            victim = max((p for p in local.rglob("*") if p.is_file()),
                         key=lambda p: p.stat().st_size)
            data = bytearray(victim.read_bytes())
            middle = len(data) // 2
            for i in range(middle, min(middle + 64, len(data))):
                data[i] ^= 0xFF
            victim.write_bytes(bytes(data))
            self.yard.tracking.put_artifacts(mv.artifact_location, local)
            rel = victim.relative_to(local).as_posix()
        return f"64 bytes of {rel} of {mv.label} flipped in the artifact store", None

    def _artifact_loss(self) -> tuple[str, None]:
        mv = self._production()
        self.yard.tracking.delete_artifacts(mv.artifact_location)
        shutil.rmtree(self.yard._loader.cache_folder(mv), ignore_errors=True)
        return f"{mv.label}'s files deleted from the artifact store and the local cache", None

    def _storage_outage(self) -> tuple[str, Callable[[], None]]:
        if self.box is None:
            raise UserError("storage-outage runs in the sandbox")
        home = self.yard.settings.home_path
        stores = [home / "vault", home / "artifacts"]
        for store in stores:
            store.rename(store.with_name(store.name + ".outage"))
            store.write_text("outage")  # a file where the folder was: reads and writes fail

        def end() -> None:
            for store in stores:
                store.unlink()
                store.with_name(store.name + ".outage").rename(store)

        return ("the artifact store and the vault stopped answering while production was "
                "served", end)

    # -- registry -------------------------------------------------------------------------
    def _model_deletion(self) -> tuple[str, None]:
        mv = self._production()
        self.yard.tracking.delete_version(self.model, mv.version)
        return f"{mv.label} (MLflow #{mv.version}) deleted from the registry", None

    def _registry_loss(self) -> tuple[str, None]:
        tracking = self.yard.tracking
        count = 0
        for model in tracking.list_models():
            for record in tracking.versions(model.name):
                tracking.delete_version(model.name, record.version)
                count += 1
            tracking.delete_model_if_empty(model.name)
        return f"registry emptied ({count} versions deleted)", None

    # -- promotion ------------------------------------------------------------------------
    def _bad_promotion(self) -> tuple[str, None]:
        from sklearn.dummy import DummyClassifier

        mv = self._production()
        loaded = self.yard.load(self.model, "production")
        sample = self.box.sample(Path(loaded.path)) if self.box else None
        if sample is None:
            raise UserError(f"{mv.label} has no input example to build a worse model from")
        target = loaded.model.predict(sample)
        worse = DummyClassifier(strategy="most_frequent").fit(sample, target)
        metrics = {k: v * 0.5 for k, v in mv.metrics.items() if isinstance(v, (int, float))}
        bad = self.yard.register(worse, self.model, metrics=metrics, input_example=sample.head(5),
                                 description="drill: a clearly worse model",
                                 pip_requirements=["scikit-learn"])
        # Promoted from a machine whose stale config has no gates: the registry's own
        # policy never saw it.
        stale = self.yard.settings.model_copy(update={
            "gates": [], "required_tags": {}, "beat_production_metric": None})
        type(self.yard)(stale).promote(self.model, bad.version, to="production", force=True,
                                       reason="drill: bad promotion (stale config, no gates)")
        return (f"{bad.label} (a constant predictor, metrics halved) promoted over {mv.label} "
                "by a config without gates", None)

    # -- pipeline -------------------------------------------------------------------------
    def _pipeline_failure(self, stage: str | None) -> tuple[str, None]:
        import yaml

        if self.box is None:
            raise UserError("pipeline-failure runs in the sandbox")
        stage = stage or "train"
        project = self.box.project
        spec = yaml.safe_load((project / "dvc.yaml").read_text())["stages"][stage]
        outs = [next(iter(o)) if isinstance(o, dict) else o
                for o in [*spec.get("outs", []), *spec.get("metrics", [])]]
        partial = outs[-1]
        script = project / "src" / f"{stage}.py"
        original = script.read_bytes()
        script.write_text(
            "import pathlib, sys\n"
            f"out = pathlib.Path({partial!r})\n"
            "out.parent.mkdir(parents=True, exist_ok=True)\n"
            "out.write_text('{\"partial\": ')  # the process dies midway through its output\n"
            "sys.exit(137)\n")
        try:
            subprocess.run([sys.executable, "-m", "dvc", "repro", "-f", "-s", stage],
                           cwd=project, capture_output=True, text=True, check=False,
                           env=self.box.env, timeout=600)
        finally:
            script.write_bytes(original)  # the fault was transient (an OOM kill, say)
        return f"stage {stage} killed midway (exit 137), {partial} left half-written", None
