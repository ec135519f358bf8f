"""Recover a model through the layers, then verify the result.

``detection.py`` finds the problems; recovery walks the layers in order and stops at the
first that works (docs/design.md, "Recovery layers"): L1 local cache or backup copy; L2 vault,
DVC remote or backup store; L3 snapshot restore; L4 retrain / re-run through the DVC
pipeline. The layers are a list of ``Layer`` objects (``layers_from``): the ones other verbs
provide (backup restore, integrity repair, snapshot restore, undo of unaudited moves) come
from the verbs the facade hands in, so they join by being listed, not by being looked up.

>>> report = recovery.recover("churn", dry_run=True)
>>> [f.problem for f in report.findings], report.plan
(['model.pkl does not match its recorded SHA-256'], ['L1 local cache: put back ...'])
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.context import Context
from modelyard.core.entities import ModelVersion
from modelyard.core.names import T_FLAVOR
from modelyard.errors import (
    IntegrityError,
    NotFound,
    StorageError,
    UserError,
    YardError,
)
from modelyard.incidents.detection import Detector, Finding
from modelyard.project.dvc import clean_env, dvc_cache_path
from modelyard.registry.loading import Loader
from modelyard.store.vault import Manifest, object_key
from modelyard.trail.audit import Auditor

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.incidents.ports import ProtectionVerbs, Rollback, UnauditedVerbs

log = logging.getLogger("modelyard.recovery")

_ONCE_PER_TARGET = ("promotion", "storage")
ROLLBACK_REASON = "recover: the production holder failed its checks"  # in the audit trail


# -- results ------------------------------------------------------------------------------
@dataclass
class Attempt:
    """One layer tried on one finding."""

    layer: str
    via: str
    ok: bool
    detail: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fix:
    finding: Finding
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def layer(self) -> str | None:
        return next((a.layer for a in self.attempts if a.ok), None)

    def to_dict(self) -> dict[str, Any]:
        return {"finding": self.finding.to_dict(), "layer": self.layer,
                "attempts": [a.to_dict() for a in self.attempts]}


@dataclass
class RecoveryReport:
    """What ``recover`` found, tried and verified (``dry_run``: the plan only)."""

    name: str
    dry_run: bool
    findings: list[Finding]
    plan: list[str]
    fixes: list[Fix] = field(default_factory=list)
    recovered: bool = False
    verified: bool = False
    verification: list[str] = field(default_factory=list)
    remaining: list[Finding] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings or (self.recovered and self.verified)

    @property
    def layer(self) -> str | None:
        """The deepest layer any fix needed (``L1``..``L4``)."""
        used = [f.layer for f in self.fixes if f.layer]
        return max(used) if used else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "dry_run": self.dry_run, "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings], "plan": self.plan,
            "fixes": [f.to_dict() for f in self.fixes], "recovered": self.recovered,
            "layer": self.layer, "verified": self.verified, "verification": self.verification,
            "remaining": [f.to_dict() for f in self.remaining], "seconds": self.seconds,
        }


# -- layers -------------------------------------------------------------------------------
@dataclass
class Layer:
    """One way to put something back. ``apply`` raises (a ``YardError`` or ``OSError``) when
    it cannot; ``plan`` says in one line what ``apply`` would do."""

    level: int
    via: str
    kinds: frozenset[str]
    apply: Callable[[Finding], str]
    plan: Callable[[Finding], str] | None = None

    @property
    def label(self) -> str:
        return f"L{self.level}"

    def describe(self, finding: Finding) -> str:
        what = self.plan(finding) if self.plan else self.via
        return f"{self.label} {self.via}: {what}"


def layers_from(ctx: Context, loader: Loader, root: Path, *, rollback: Rollback,
                protection: ProtectionVerbs, governance: UnauditedVerbs) -> list[Layer]:
    """Every layer, in any order (``Recovery`` sorts them): the core's own (``Builtin``) and
    those other capabilities' verbs provide; the backup store's restore only when one is set."""
    layers = [*Builtin(ctx, loader, root, rollback).layers(),
              repair_layer(protection.repair),
              undo_unaudited_layer(governance.undo_unaudited),
              snapshot_layer(protection.snapshots.list, protection.snapshots.restore)]
    if ctx.settings.backup is not None:
        layers.append(restore_layer(protection.restore))
    return layers


def repair_layer(repair: Callable[..., Any]) -> Layer:
    """L2 through ``yard.protection.repair``: cache -> vault -> backup, verified."""

    def apply(finding: Finding) -> str:
        name, _, _ = finding.target.partition("@")
        report = repair(name, finding.version)
        if not getattr(report, "ok", False) or not getattr(report, "verified", False):
            raise IntegrityError(name=name, semver=str(finding.version),
                                 detail="repair left files unrepaired")
        return f"repaired {len(getattr(report, 'files', []))} file(s)"

    return Layer(2, "repair (cache, vault, backup)", frozenset({"model-files"}), apply)


def restore_layer(restore: Callable[..., Any]) -> Layer:
    """L2 through ``yard.protection.restore``: the version recreated from the backup store."""

    def apply(finding: Finding) -> str:
        name, _, _ = finding.target.partition("@")
        try:
            report = restore(name, finding.version, aliases=True)
        except YardError:
            # The number may be one a restore gave (not backed up under it): every deleted
            # version of the model, by semver, from the backup store.
            report = restore(name, None, aliases=True)
        if not getattr(report, "ok", False):
            raise NotFound(f"the backup store could not restore {finding.target}")
        return f"restored {len(getattr(report, 'restored', []))} version(s) from the backup"

    return Layer(2, "backup store restore", frozenset({"model-missing", "model-files"}), apply)


def snapshot_layer(snapshots: Callable[[], list[Any]],
                   snapshot_restore: Callable[..., Any]) -> Layer:
    """L3 through ``yard.protection.snapshots.restore``: the newest snapshot's stage holders."""

    def newest() -> str:
        found = snapshots()
        if not found:
            raise NotFound("no snapshot to restore")
        return str(getattr(found[-1], "tag", found[-1]))

    def apply(finding: Finding) -> str:
        tag = newest()
        done = snapshot_restore(tag)
        if getattr(done, "stopped", None) is not None:  # a part failed: the layer did not fix it
            raise YardError(f"snapshot {tag} restore stopped: {done.stopped}; {done.todo}")
        return f"snapshot {tag} restored"

    return Layer(3, "snapshot restore", frozenset({"model-missing", "stage", "promotion"}),
                 apply, lambda f: "restore the newest snapshot's stage holders")


def undo_unaudited_layer(undo: Callable[[str], list[Any]]) -> Layer:
    """L1 through ``yard.governance.undo_unaudited``: the audited stage holders put back."""

    def apply(finding: Finding) -> str:
        name, _, _ = finding.target.partition("@")
        moved = undo(name)
        return f"{len(moved)} stage(s) put back to the audited holder"

    return Layer(1, "audit trail (undo unaudited move)", frozenset({"stage"}), apply)


class Builtin:
    """The layers modelyard's core can run by itself (cache, vault, DVC, rollback, re-run)."""

    def __init__(self, ctx: Context, loader: Loader, root: Path,
                 rollback: Callable[..., Any]) -> None:
        self.ctx = ctx
        self.loader = loader
        self.root = root
        self.rollback_fn = rollback
        self.env = pipeline_env(ctx)

    def layers(self) -> list[Layer]:
        return [
            Layer(1, "local cache", frozenset({"model-files"}), self.from_cache,
                  lambda f: f"put back v{f.detail.get('semver')}'s files from the loader's "
                            "verified cache copy"),
            Layer(1, "rollback (audit trail)", frozenset({"promotion"}), self.rollback,
                  lambda f: "put back the previous production holder"),
            Layer(1, "local cache (serve the last verified copy)", frozenset({"storage"}),
                  self.serve_cached),
            Layer(1, "DVC cache", frozenset({"data"}), self.data_from_cache,
                  lambda f: f"dvc checkout {f.path} at md5 {f.detail.get('hash', '')[:12]}"),
            Layer(2, "vault", frozenset({"model-files"}), self.from_vault,
                  lambda f: "rebuild the files from the vault's objects and upload them"),
            Layer(2, "DVC remote", frozenset({"data"}), self.data_from_remote,
                  lambda f: f"dvc fetch + checkout {f.path}"),
            Layer(4, "DVC pipeline (resume)", frozenset({"pipeline"}), self.resume_pipeline,
                  lambda f: f"put back stage {f.detail.get('stage')}'s outputs from the DVC "
                            "cache or the commit; re-run it alone only if it registers nothing"),
        ]

    # -- model files ----------------------------------------------------------------------
    def _version(self, finding: Finding) -> ModelVersion:
        name, _, _ = finding.target.partition("@")
        return self.loader.get(name, finding.version, full=True)

    @staticmethod
    def _puts_back(finding: Finding) -> None:
        """These layers upload good copies over the store; a file the manifest does not list
        stays there after, so they leave such a finding to the repair layer."""
        extra = finding.detail.get("unexpected")
        if extra:
            raise UserError(f"{', '.join(extra[:3])} not in the manifest: putting files back "
                            "does not take them out (repair sets them aside)")

    def _upload(self, mv: ModelVersion, folder: Path, manifest: Manifest) -> None:
        manifest.verify_directory(folder, label=mv.name, semver=mv.semver or "?")
        self.ctx.tracking.artifacts.put_artifacts(mv.artifact_location, folder)

    def from_cache(self, finding: Finding) -> str:
        self._puts_back(finding)
        mv = self._version(finding)
        manifest = self.loader.manifest_of(mv)
        cache = self.loader.cache_folder(mv)
        if not cache.is_dir():
            raise NotFound(f"no cached copy of {mv.label}")
        self._upload(mv, cache, manifest)
        return f"{len(manifest.files)} file(s) uploaded from {cache}"

    def from_vault(self, finding: Finding) -> str:
        self._puts_back(finding)
        mv = self._version(finding)
        manifest = self.loader.manifest_of(mv)
        store = self.ctx.vault.store
        with tempfile.TemporaryDirectory(prefix="modelyard-recover-") as tmp:
            folder = Path(tmp)
            for rel, (oid, _) in manifest.files.items():
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                store.get_file(object_key(oid), target)
            self._upload(mv, folder, manifest)
        return f"{len(manifest.files)} file(s) rebuilt from the vault"

    def serve_cached(self, finding: Finding) -> str:
        """Keep serving the last verified copy in the local cache while a store is down (it
        was checked against its manifest when it was written there)."""
        from modelyard.backend import mlmodel

        name, _, _ = finding.target.partition("@")
        mv = self.loader.get(name, "production", full=False)  # what is being served
        cache = self.loader.cache_folder(mv)
        if not cache.is_dir():
            raise NotFound(f"no verified cached copy of {mv.label}")
        checked = "verified against its manifest"
        try:
            manifest = self.loader.manifest_of(mv)
            manifest.verify_directory(cache, label=mv.name, semver=mv.semver or "?")
        except StorageError:
            checked = "verified when cached (the vault is down too)"
        mlmodel.deserialize(cache, mv.tags.get(T_FLAVOR, ""))
        return f"{mv.label} loads from its cached copy ({checked}) while the store is down"

    # -- promotion ------------------------------------------------------------------------
    def rollback(self, finding: Finding) -> str:
        name, _, _ = finding.target.partition("@")
        change = self.rollback_fn(name, "production", reason=ROLLBACK_REASON)
        return f"production back to v{getattr(change, 'semver', '?')}"

    # -- data -----------------------------------------------------------------------------
    def _data_path(self, finding: Finding) -> Path:
        path = Path(finding.path or "")
        return path if path.is_absolute() else self.root / path

    def data_from_cache(self, finding: Finding) -> str:
        md5 = str(finding.detail.get("hash", ""))
        if finding.detail.get("source") != "dvc":
            raise NotFound(f"{finding.path} is not DVC-tracked")
        cached = dvc_cache_path(self.root, md5)
        if cached is None or not cached.is_file():
            raise NotFound(f"md5 {md5[:12]} is not in the DVC cache")
        path = self._data_path(finding)
        _replace_file(cached, path)
        return f"{finding.path} checked out from the DVC cache"

    def data_from_remote(self, finding: Finding) -> str:
        from modelyard.project import dvc as dvc_support

        md5 = str(finding.detail.get("hash", ""))
        if finding.detail.get("source") != "dvc":
            raise NotFound(f"{finding.path} is not DVC-tracked")
        dvc_support.checkout(self._data_path(finding), md5)
        return f"{finding.path} fetched from the DVC remote"

    # -- pipeline -------------------------------------------------------------------------
    def resume_pipeline(self, finding: Finding) -> str:
        """The broken stage's outputs back as ``dvc.lock`` records them; never a re-run of a
        stage that registers (recover never registers a version)."""
        from modelyard.incidents.pipeline_repair import repair_stage

        return repair_stage(self.root, str(finding.detail.get("stage", "")), self.env)


def _replace_file(source: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.modelyard-recover")
    shutil.copyfile(source, tmp)
    tmp.replace(path)


def pipeline_env(ctx: Context) -> dict[str, str]:
    """The environment for a pipeline run on behalf of ``ctx``: its stages register into the
    same registry and vault as ``ctx`` (never into one the environment happens to name)."""
    settings = ctx.settings
    env = {k: v for k, v in clean_env().items()
           if not k.startswith("MODELYARD_") and k not in ("MLFLOW_TRACKING_URI",
                                                           "MLFLOW_REGISTRY_URI")}
    env.update(MODELYARD_HOME=str(settings.home_path), MODELYARD_VAULT=settings.resolved_vault,
               MODELYARD_CACHE_DIR=str(ctx.cache_dir), MODELYARD_USER=ctx.user)
    if settings.tracking_uri:
        env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    if settings.backup:
        env["MODELYARD_BACKUP"] = settings.backup
    return env


# -- recover ------------------------------------------------------------------------------
class Recovery:
    """``recover``: detect, try the layers in order per finding, verify."""

    def __init__(self, detector: Detector, layers: list[Layer], loader: Loader,
                 audit: Auditor) -> None:
        self.detector = detector
        self.layers = sorted(layers, key=lambda layer: layer.level)
        self.loader = loader
        self.audit = audit

    def plan(self, findings: list[Finding]) -> list[str]:
        lines = []
        for finding in findings:
            options = [layer.describe(finding) for layer in self.layers
                       if finding.kind in layer.kinds]
            head = f"{finding.target}: {finding.problem}"
            lines.append(f"{head} -> " + (" | else ".join(options) if options
                                          else "no layer can recover this"))
        return lines

    def recover(self, name: str, *, dry_run: bool = False, pipeline: bool = True,
                findings: list[Finding] | None = None, baseline: Baseline | None = None,
                verify: bool = True) -> RecoveryReport:
        clock = time.perf_counter()
        found = self.detector.detect(name, pipeline=pipeline) if findings is None else findings
        report = RecoveryReport(name=name, dry_run=dry_run, findings=found,
                                plan=self.plan(found))
        report.seconds["detect"] = time.perf_counter() - clock
        if dry_run or not found:
            report.recovered = report.verified = not found
            return report
        clock = time.perf_counter()
        done: dict[tuple[str, str], Fix] = {}
        for finding in found:
            # One outage is one incident, whichever holders it hit.
            key = (finding.kind, "" if finding.kind == "storage" else finding.target)
            if finding.kind in _ONCE_PER_TARGET and key in done:
                continue  # one rollback answers every promotion finding of a stage
            done[key] = self.fix(finding)
            report.fixes.append(done[key])
        report.recovered = all(fix.layer for fix in report.fixes)
        report.seconds["recover"] = time.perf_counter() - clock
        if verify:
            clock = time.perf_counter()
            report.verified, report.verification, report.remaining = self.verify(
                name, baseline, pipeline=pipeline)
            report.seconds["verify"] = time.perf_counter() - clock
        with contextlib.suppress(YardError):
            self.audit.record(name, "recover", reason="modelyard recover", detail={
                "findings": [f.problem for f in found], "layer": report.layer,
                "recovered": report.recovered, "verified": report.verified})
        return report

    def fix(self, finding: Finding) -> Fix:
        fix = Fix(finding)
        for layer in self.layers:
            if finding.kind not in layer.kinds:
                continue
            clock = time.perf_counter()
            try:
                detail = layer.apply(finding)
                fix.attempts.append(Attempt(layer.label, layer.via, True, detail,
                                            time.perf_counter() - clock))
                log.info("%s recovered by %s %s: %s", finding.target, layer.label, layer.via,
                         detail)
                break
            except (YardError, OSError, subprocess.SubprocessError) as exc:
                message = getattr(exc, "message", None) or str(exc)
                fix.attempts.append(Attempt(layer.label, layer.via, False, message[:300],
                                            time.perf_counter() - clock))
        return fix

    def verify(self, name: str, baseline: Baseline | None, *, pipeline: bool = True,
               known: set[tuple[str, str, str]] | None = None
               ) -> tuple[bool, list[str], list[Finding]]:
        """Checks again (problems in ``known`` were there before and do not count), loads
        production, compares its predictions with ``baseline``."""
        lines: list[str] = []
        remaining = [f for f in self.detector.detect(name, pipeline=pipeline)
                     if finding_key(f) not in (known or set())]
        ok = not remaining
        lines.append("every check passes (manifests, data hashes, stages, audit, gates)" if ok
                     else f"{len(remaining)} problem(s) remain")
        try:
            loaded = self.loader.load(name, "production")
            lines.append(f"{loaded.version.label} loads (verified={loaded.verified})")
            if baseline is not None:
                same = baseline.matches(loaded.model)
                lines.append("predictions on the held-out sample equal the pre-incident ones"
                             if same else "predictions differ from the pre-incident ones")
                ok = ok and same
        except (YardError, OSError, ValueError) as exc:
            ok = False
            lines.append(f"production does not load: {getattr(exc, 'message', exc)}")
        return ok, lines, remaining


def finding_key(finding: Finding) -> tuple[str, str, str]:
    """What makes two findings the same problem (a drill ignores the ones there before)."""
    return finding.kind, finding.target, finding.check


@dataclass
class Baseline:
    """Predictions of the production model on a held-out sample, taken before an incident."""

    sample: Any
    predictions: Any

    @classmethod
    def of(cls, model: Any, sample: Any) -> Baseline:
        return cls(sample, _predict(model, sample))

    def matches(self, model: Any) -> bool:
        import numpy as np

        now = _predict(model, self.sample)
        try:
            return bool(np.array_equal(np.asarray(now), np.asarray(self.predictions)))
        except (TypeError, ValueError):
            return False


def _predict(model: Any, sample: Any) -> Any:
    import numpy as np

    return np.asarray(model.predict(sample))
