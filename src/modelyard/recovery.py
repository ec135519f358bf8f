"""Detect what is wrong with a model, recover it through the layers, verify the result.

Detection uses modelyard's own records, never a hint of what went wrong: the manifests in the
vault, the data hashes in lineage, the training-data profile recorded at registration (nulls,
duplicates, distribution shift by PSI), the audit trail's stage holders against the registry's
aliases, the audit hash chain, the policy's gates, and ``dvc.lock`` against the workspace.

Recovery walks the layers in order and stops at the first that works (DESIGN.md, "Recovery
layers"): L1 local cache or backup copy; L2 vault, DVC remote or backup store; L3 snapshot
restore; L4 retrain / re-run through the DVC pipeline. The layers are handed in by the facade
as a list of ``Layer`` objects, so the ones other verbs provide (backup restore, integrity
repair, snapshot restore, drift undo) join by being listed, not by being looked up.

>>> report = recovery.recover("churn", dry_run=True)
>>> [f.problem for f in report.findings], report.plan
(['model.pkl does not match its recorded SHA-256'], ['L1 local cache: put back ...'])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelyard.audit import Auditor
from modelyard.context import Context
from modelyard.entities import ModelVersion
from modelyard.errors import (
    AuditTampered,
    BackendError,
    IntegrityError,
    ModelNotFound,
    NotFound,
    StorageError,
    UserError,
    YardError,
)
from modelyard.lineage import DataRef
from modelyard.loading import Loader
from modelyard.names import T_FLAVOR, T_SEMVER
from modelyard.tracking import VersionRecord
from modelyard.vault import Manifest, object_key, profile_key, sha256_file

log = logging.getLogger("modelyard.recovery")

SERVING_STAGES = ("production", "staging")
# Kinds of finding, and what each means.
KINDS = {
    "model-files": "a version's files differ from its manifest or are missing",
    "model-missing": "a version the audit trail says holds a stage is gone from the registry",
    "stage": "a stage alias differs from the audit trail's holder",
    "promotion": "the production holder fails the policy's gates or is worse than before",
    "data": "training data differs from the hashes in lineage",
    "pipeline": "a DVC stage's outputs differ from dvc.lock (a run stopped midway)",
    "storage": "an object store does not answer",
    "audit": "the audit hash chain is broken",
}
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "logloss")
_ONCE_PER_TARGET = ("promotion", "storage")
WORSE_BY = 0.05  # relative: a production holder this much worse than the previous one


# -- results ------------------------------------------------------------------------------
@dataclass
class Finding:
    """One problem a check found: what, where, and which check saw it."""

    kind: str
    check: str
    target: str
    problem: str
    version: int | None = None
    path: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class Facade(Protocol):
    """The facade verbs other engineers' layers come from (P1 backup/restore, P2 integrity
    and snapshots, G drift). ``layers_from`` turns whichever of them a facade has into
    layers; the facade hands them in, nothing here looks them up."""

    def restore(self, name: str, ref: str | int | None = None, *, aliases: bool = False,
                progress: Any = None) -> Any: ...

    def repair(self, name: str | None = None, ref: str | int | None = None, *,
               all: bool = False, progress: Any = None) -> Any: ...

    def snapshot_restore(self, tag: str, *, dry_run: bool = False, data: bool = False
                         ) -> Any: ...

    def snapshots(self) -> list[Any]: ...

    def undo_drift(self, name: str) -> list[Any]: ...


def repair_layer(repair: Callable[..., Any]) -> Layer:
    """L2 through ``Yard.repair`` (P2): cache -> vault -> backup, verified."""

    def apply(finding: Finding) -> str:
        name, _, _ = finding.target.partition("@")
        report = repair(name, finding.version)
        if not getattr(report, "ok", False) or not getattr(report, "verified", False):
            raise IntegrityError(name=name, semver=str(finding.version),
                                 detail="repair left files unrepaired")
        return f"repaired {len(getattr(report, 'files', []))} file(s)"

    return Layer(2, "repair (cache, vault, backup)", frozenset({"model-files"}), apply)


def restore_layer(restore: Callable[..., Any]) -> Layer:
    """L2 through ``Yard.restore`` (P1): the version recreated from the backup store."""

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
    """L3 through ``Yard.snapshot_restore`` (P2): the newest snapshot's stage holders."""

    def newest() -> str:
        found = snapshots()
        if not found:
            raise NotFound("no snapshot to restore")
        return str(getattr(found[-1], "tag", found[-1]))

    def apply(finding: Finding) -> str:
        tag = newest()
        snapshot_restore(tag)
        return f"snapshot {tag} restored"

    return Layer(3, "snapshot restore", frozenset({"model-missing", "stage", "promotion"}),
                 apply, lambda f: "restore the newest snapshot's stage holders")


def undo_drift_layer(undo_drift: Callable[[str], list[Any]]) -> Layer:
    """L1 through ``Yard.undo_drift`` (G): the audited stage holders put back."""

    def apply(finding: Finding) -> str:
        name, _, _ = finding.target.partition("@")
        moved = undo_drift(name)
        return f"{len(moved)} stage(s) put back to the audited holder"

    return Layer(1, "audit trail (undo drift)", frozenset({"stage"}), apply)


class Builtin:
    """The layers modelyard's core can run by itself (cache, vault, DVC, rollback, re-run)."""

    def __init__(self, ctx: Context, loader: Loader, root: Path,
                 rollback: Callable[[str, str], Any]) -> None:
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
                  lambda f: f"dvc repro from stage {f.detail.get('stage')}"),
        ]

    # -- model files ----------------------------------------------------------------------
    def _version(self, finding: Finding) -> ModelVersion:
        name, _, _ = finding.target.partition("@")
        return self.loader.get(name, finding.version, full=True)

    def _upload(self, mv: ModelVersion, folder: Path, manifest: Manifest) -> None:
        manifest.verify_directory(folder, label=mv.name, semver=mv.semver or "?")
        self.ctx.tracking.put_artifacts(mv.artifact_location, folder)

    def from_cache(self, finding: Finding) -> str:
        mv = self._version(finding)
        manifest = self.loader.manifest_of(mv)
        cache = self.loader.cache_folder(mv)
        if not cache.is_dir():
            raise NotFound(f"no cached copy of {mv.label}")
        self._upload(mv, cache, manifest)
        return f"{len(manifest.files)} file(s) uploaded from {cache}"

    def from_vault(self, finding: Finding) -> str:
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
        from modelyard import mlmodel

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
        change = self.rollback_fn(name, "production")
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
        from modelyard import dvc_support

        md5 = str(finding.detail.get("hash", ""))
        if finding.detail.get("source") != "dvc":
            raise NotFound(f"{finding.path} is not DVC-tracked")
        dvc_support.checkout(self._data_path(finding), md5)
        return f"{finding.path} fetched from the DVC remote"

    # -- pipeline -------------------------------------------------------------------------
    def resume_pipeline(self, finding: Finding) -> str:
        done = run_dvc(["repro"], self.root, self.env)
        ran = [line.split("'")[1] for line in done.splitlines()
               if line.startswith("Running stage '") and line.count("'") >= 2]
        return f"dvc repro ran {', '.join(ran) or 'nothing'}"


def dvc_cache_path(root: Path, md5: str) -> Path | None:
    """Where DVC 3 keeps an object in the project's default local cache."""
    if len(md5) < 3 or md5.endswith(".dir"):
        return None
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def _replace_file(source: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.modelyard-recover")
    shutil.copyfile(source, tmp)
    tmp.replace(path)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a pipeline subprocess: ``python`` is this interpreter's."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONWARNINGS": "ignore", "DVC_NO_ANALYTICS": "1",
            **(extra or {})}


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


def run_dvc(args: Sequence[str], root: Path, env: dict[str, str] | None = None,
            timeout: float = 900) -> str:
    """``python -m dvc ARGS`` in ``root``; its output, or UserError naming the last lines."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True,
                          text=True, check=False, timeout=timeout, env=env or clean_env())
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-2:]
        raise UserError(f"dvc {' '.join(args)} failed: {' | '.join(tail)}")
    return done.stdout


# -- detection ----------------------------------------------------------------------------
GateCheck = Callable[[str, VersionRecord], list[dict[str, Any]]]


class Detector:
    """Every check ``recover`` and the drills run. Reads; changes nothing."""

    def __init__(self, ctx: Context, loader: Loader, audit: Auditor, root: Path,
                 gate_check: GateCheck) -> None:
        self.ctx = ctx
        self.loader = loader
        self.audit = audit
        self.root = root
        self.gate_check = gate_check

    def detect(self, name: str, *, pipeline: bool = True) -> list[Finding]:
        findings: list[Finding] = []
        try:
            records = self.ctx.tracking.versions(name)
        except NotFound:
            records = []
            if not self.audited_holders(name):  # no trace of it anywhere: a typo
                raise ModelNotFound(name=name) from None
        except (BackendError, StorageError) as exc:
            return [Finding("storage", "registry reachable", name, exc.message)]
        vault_up = True
        try:
            self.ctx.vault.store.check()
        except StorageError as exc:
            vault_up = False
            findings.append(Finding("storage", "vault reachable", f"{name}@production",
                                    f"the vault does not answer: {exc.message}"))
        holders = {stage: r for r in records for stage in SERVING_STAGES if stage in r.aliases}
        if vault_up:  # the audit trail lives in the vault
            findings += self.check_audit(name)
            findings += self.check_stages(name, records, holders)
        for stage, record in holders.items():
            findings += self.check_files(name, stage, record)
        if "production" in holders:
            findings += self.check_promotion(name, holders["production"])
        data = self.check_data(name, holders)
        findings += data
        if pipeline:
            covered = {f.path for f in data}
            findings += [f for f in self.check_pipeline() if f.path not in covered]
        return findings

    # -- the checks -------------------------------------------------------------------------
    def check_audit(self, name: str) -> list[Finding]:
        try:
            self.audit.history(name, verify=True)
        except AuditTampered as exc:
            return [Finding("audit", "audit hash chain", name, exc.message)]
        except NotFound:
            return []
        except (BackendError, StorageError) as exc:
            return [Finding("storage", "vault reachable", name, exc.message)]
        return []

    def audited_holders(self, name: str) -> dict[str, int | None]:
        with contextlib.suppress(YardError, ValueError):
            last = self.audit.log(name).last()
            if last is not None:
                return dict(last.stages)
        return {}

    def check_stages(self, name: str, records: list[VersionRecord],
                     holders: dict[str, VersionRecord]) -> list[Finding]:
        findings = []
        numbers = {r.version for r in records}
        audited = self.audited_holders(name)
        for stage in SERVING_STAGES:
            if stage not in audited:
                continue  # no audited holder known (imported, adopted): nothing to compare
            want = audited.get(stage)
            have = holders[stage].version if stage in holders else None
            if want is not None and want not in numbers:
                findings.append(Finding(
                    "model-missing", "audit trail vs registry", f"{name}@{stage}",
                    f"v#{want} holds {stage} in the audit trail but is not in the registry",
                    version=want))
            elif want != have:
                findings.append(Finding(
                    "stage", "audit trail vs aliases", f"{name}@{stage}",
                    f"{stage} alias is on #{have}, the audit trail says #{want}", version=have,
                    detail={"audited": want}))
        return findings

    def check_files(self, name: str, stage: str, record: VersionRecord) -> list[Finding]:
        semver = record.tags.get(T_SEMVER, "?")
        target = f"{name}@{stage}"
        try:
            self.loader.verify(name, record.version)
        except IntegrityError as exc:
            return [Finding("model-files", "manifest", target, exc.message, version=record.version,
                            detail={"semver": semver})]
        except (StorageError, BackendError) as exc:
            return [Finding("storage", "artifact store reachable", target, exc.message,
                            version=record.version, detail={"semver": semver})]
        return []

    def check_promotion(self, name: str, record: VersionRecord) -> list[Finding]:
        target = f"{name}@production"
        try:
            failed = [g for g in self.gate_check(name, record) if not g.get("passed")]
        except YardError as exc:
            log.warning("gates of %s not evaluated: %s", target, exc.message)
            failed = []
        findings = []
        if failed:
            findings.append(Finding("promotion", "policy gates", target,
                                    "; ".join(str(g.get("detail")) for g in failed),
                                    version=record.version))
        worse = self._worse_than_previous(name, record)
        if worse:
            findings.append(Finding("promotion", "metrics vs previous holder", target, worse,
                                    version=record.version))
        return findings

    def _worse_than_previous(self, name: str, record: VersionRecord) -> str:
        previous = None
        with contextlib.suppress(YardError, ValueError):
            for event in reversed(self.audit.log(name).events()):
                holder = event.stages.get("production")
                if holder is not None and holder != record.version:
                    previous = holder
                    break
        if previous is None or not record.run_id:
            return ""
        try:
            before = self.ctx.tracking.get_version(name, previous)
            if not before.run_id:
                return ""
            now_m = self.ctx.tracking.get_run(record.run_id)["metrics"]
            old_m = self.ctx.tracking.get_run(before.run_id)["metrics"]
        except YardError:
            return ""
        for key in sorted(set(now_m) & set(old_m)):
            old, new = float(old_m[key]), float(now_m[key])
            if old == 0:
                continue
            lower = any(word in key.lower() for word in _LOWER_IS_BETTER)
            change = (new - old) / abs(old)
            if (change < -WORSE_BY and not lower) or (change > WORSE_BY and lower):
                return (f"{key} {new:.4g} is {abs(change):.0%} worse than the previous "
                        f"production holder's {old:.4g}")
        return ""

    def check_data(self, name: str, holders: dict[str, VersionRecord]) -> list[Finding]:
        from modelyard.lineage import Lineage

        findings: list[Finding] = []
        seen: set[str] = set()
        for stage, record in holders.items():
            lineage = Lineage.from_tags(record.tags)
            for ref in lineage.data:
                if ref.path in seen:
                    continue
                seen.add(ref.path)
                problem = self._data_problem(ref)
                if not problem:
                    continue
                quality = self.data_quality(name, record.version, ref)
                findings.append(Finding(
                    "data", "data hash vs lineage" + (" + data quality" if quality else ""),
                    f"{name}@{stage}", "; ".join([problem, *quality]), version=record.version,
                    path=ref.path, detail={"hash": ref.hash, "source": ref.source,
                                           "quality": quality}))
        return findings

    def _full(self, ref: DataRef) -> Path:
        path = Path(ref.path)
        return path if path.is_absolute() else self.root / path

    def _data_problem(self, ref: DataRef) -> str:
        path = self._full(ref)
        if not path.exists():
            return f"{ref.path} is missing"
        if path.is_dir():
            return ""  # folders: the DVC pipeline check covers their stages
        actual = md5_file(path) if ref.source == "dvc" else sha256_file(path)
        if actual != ref.hash:
            return f"{ref.path} hash {actual[:12]} differs from lineage {ref.hash[:12]}"
        return ""

    def data_quality(self, name: str, version: int, ref: DataRef) -> list[str]:
        """What the data-quality checks see in ``ref`` against the recorded profile."""
        path = self._full(ref)
        if not path.is_file() or path.suffix.lower() != ".csv":
            return []
        try:
            profile = json.loads(self.ctx.vault.store.get_bytes(profile_key(name, version)))
        except (YardError, ValueError):
            return []
        return quality_problems(profile, path)

    def check_pipeline(self) -> list[Finding]:
        """Outputs ``dvc.lock`` records that are missing or differ: a stage stopped midway."""
        lock = self.root / "dvc.lock"
        if not lock.is_file():
            return []
        import yaml

        try:
            document = yaml.safe_load(lock.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return []
        findings = []
        for stage, body in (document.get("stages") or {}).items():
            for out in (body or {}).get("outs") or []:
                md5 = str(out.get("md5", ""))
                rel = str(out.get("path", ""))
                path = self.root / rel
                if not md5 or md5.endswith(".dir") or path.is_dir():
                    continue
                if not path.is_file() or md5_file(path) != md5:
                    state = "missing" if not path.is_file() else "differs from dvc.lock"
                    findings.append(Finding(
                        "pipeline", "dvc.lock vs workspace", f"stage {stage}",
                        f"{rel} {state}: stage {stage} did not finish", path=rel,
                        detail={"stage": stage}))
                    break
        return findings[:1]  # the first broken stage; repro resumes from there


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def quality_problems(profile: dict[str, Any], path: Path) -> list[str]:
    """Nulls, duplicated rows and distribution shift of a CSV against a training profile."""
    import pandas as pd

    from modelyard.profile import drifted, psi

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        return [f"unreadable: {exc}"[:200]]
    problems = []
    columns = profile.get("columns", {})
    nulls = []
    for column, spec in columns.items():
        if column in frame.columns:
            share = float(frame[column].isna().mean())
            if share > float(spec.get("missing", 0.0)) + 0.01:
                nulls.append(f"{column} {share:.0%}")
    if nulls:
        problems.append("nulls: " + ", ".join(nulls[:4]))
    dupes = float(frame.duplicated().mean()) if len(frame) else 0.0
    if dupes > float(profile.get("duplicates", 0.0)) + 0.01:
        problems.append(f"duplicated rows: {dupes:.0%}")
    shifted = drifted(psi(profile, frame))
    if shifted:
        problems.append("distribution shift (PSI): " + ", ".join(shifted[:4]))
    return problems


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
