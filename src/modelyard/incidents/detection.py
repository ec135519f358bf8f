"""Detect what is wrong with a model, from modelyard's own records, never from a hint.

The checks read the manifests in the vault, the data hashes in lineage, the training-data
profile recorded at registration (nulls, duplicates, distribution shift by PSI), the audit
trail's stage holders against the registry's aliases, the audit hash chain, the policy's
gates, and ``dvc.lock`` against the workspace. Each problem is a ``Finding``; ``recovery.py``
walks the layers for it, and the drills and ``health`` run the same checks.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelyard.context import Context
from modelyard.core.lineage import DataRef
from modelyard.core.names import MLFLOW_STAGE, T_SEMVER, T_STAGE
from modelyard.core.records import VersionRecord
from modelyard.core.refs import is_visible
from modelyard.errors import (
    AuditTampered,
    BackendError,
    IntegrityError,
    ModelNotFound,
    NotFound,
    StorageError,
    UnexpectedFiles,
    YardError,
)
from modelyard.lifecycle.gates import describe
from modelyard.project.dvc import md5_file, recorded_md5
from modelyard.registry.loading import Loader
from modelyard.store.files import sha256_file
from modelyard.store.vault import profile_key
from modelyard.trail.audit import Auditor

log = logging.getLogger("modelyard.detection")

SERVING_STAGES = ("production", "staging")
# Kinds of finding, and what each means.
KINDS = {
    "model-files": "a version's files differ from its manifest, are missing, or are not in it",
    "model-missing": "a version the audit trail says holds a stage is gone from the registry",
    "stage": "a stage alias differs from the audit trail's holder",
    "promotion": "the production holder fails the policy's gates",
    "data": "training data differs from the hashes in lineage",
    "pipeline": "a DVC stage's outputs differ from dvc.lock (a run stopped midway)",
    "storage": "an object store does not answer",
    "audit": "the audit hash chain is broken",
}



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


GateCheck = Callable[[str, VersionRecord], list[dict[str, Any]]]


class Detector:
    """Every check ``recover`` and the drills run. Reads; changes nothing."""

    def __init__(self, ctx: Context, loader: Loader, audit: Auditor, root: Path,
                 gate_check: GateCheck,
                 unaudited: Callable[[str], list[Any]] | None = None) -> None:
        self.ctx = ctx
        self.loader = loader
        self.audit = audit
        self.root = root
        self.gate_check = gate_check
        # ``yard.governance.unaudited``: holders moved around modelyard by any MLflow API
        # (aliases, the stage field), the same check health and history --verify run.
        self.unaudited = unaudited

    def detect(self, name: str, *, pipeline: bool = True) -> list[Finding]:
        findings: list[Finding] = []
        self.audit.binding.check_model(name)  # a registry and a vault apart: one line, no checks
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
            findings += self.check_unaudited(name, {f.target for f in findings})
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
            else:
                # The alias agrees; the stage tags and MLflow's stage field must too (a move
                # interrupted after its alias, before its tags, leaves them behind).
                wrong = sorted(r.version for r in records if is_visible(r) and (
                    (r.version != want and (r.tags.get(T_STAGE) == stage
                                            or r.current_stage == MLFLOW_STAGE[stage]))
                    or (r.version == want and r.tags.get(T_STAGE) not in (None, stage))))
                if wrong:
                    findings.append(Finding(
                        "stage", "audit trail vs stage tags", f"{name}@{stage}",
                        f"the stage tag or MLflow's stage field of #{wrong[0]} disagrees with "
                        f"the audit trail's {stage} holder {_number(want)}", version=wrong[0],
                        detail={"audited": want}))
        return findings

    def check_unaudited(self, name: str, seen: set[str]) -> list[Finding]:
        """Stage holders no audit event explains that the alias check did not already name
        (MLflow's stage field moved, a stage tag edited)."""
        if self.unaudited is None:
            return []
        try:
            moved = self.unaudited(name)
        except YardError:
            return []
        return [Finding("stage", "unaudited move", f"{name}@{d.stage}", d.detail,
                        version=d.holder_version, detail={"audited": d.audited_version})
                for d in moved if f"{name}@{d.stage}" not in seen]

    def check_files(self, name: str, stage: str, record: VersionRecord) -> list[Finding]:
        semver = record.tags.get(T_SEMVER, "?")
        target = f"{name}@{stage}"
        try:
            self.loader.verify(name, record.version)
        except UnexpectedFiles as exc:
            # Files the manifest does not list: putting files back leaves them there; the
            # repair layer sets them aside.
            return [Finding("model-files", "manifest", target, exc.message, version=record.version,
                            detail={"semver": semver,
                                    "unexpected": list(exc.fields.get("files", []))})]
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
                                    "; ".join(describe(g) for g in failed),
                                    version=record.version))
        # No comparison of metrics with the previous holder: whether a metric is better
        # higher or lower is the policy's to say (its gates), never guessed from its name, and
        # recover only ever repairs.
        return findings

    def check_data(self, name: str, holders: dict[str, VersionRecord]) -> list[Finding]:
        from modelyard.core.lineage import Lineage

        findings: list[Finding] = []
        seen: set[str] = set()
        for stage, record in holders.items():
            lineage = Lineage.from_tags(record.tags)
            for ref in lineage.data:
                if ref.path in seen:
                    continue
                seen.add(ref.path)
                problem, expected = self._data_problem(ref)
                if not problem:
                    continue
                quality = self.data_quality(name, record.version, ref)
                findings.append(Finding(
                    "data", "data hash vs lineage" + (" + data quality" if quality else ""),
                    f"{name}@{stage}", "; ".join([problem, *quality]), version=record.version,
                    path=ref.path, detail={"hash": expected, "source": ref.source,
                                           "quality": quality}))
        return findings

    def _full(self, ref: DataRef) -> Path:
        path = Path(ref.path)
        return path if path.is_absolute() else self.root / path

    def _data_problem(self, ref: DataRef) -> tuple[str, str]:
        """(what is wrong with the workspace's copy of ``ref``, the hash it should have).

        A DVC-tracked file is expected to match what the project's own ``dvc.lock`` (or
        ``.dvc`` file) records now, not the production version's lineage: a project whose
        data moved on since that version was trained is healthy. Only a file DVC does not
        track is compared with the lineage's hash."""
        path = self._full(ref)
        if not path.exists():
            return f"{ref.path} is missing", ref.hash
        if path.is_dir():
            return "", ref.hash  # folders: the DVC pipeline check covers their stages
        if ref.source == "dvc":
            rel = path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) \
                else ref.path
            recorded = recorded_md5(self.root, rel)
            actual = md5_file(path)
            if recorded is not None:
                if actual != recorded:
                    return (f"{ref.path} hash {actual[:12]} differs from what the project's "
                            f"DVC files record ({recorded[:12]})", recorded)
                return "", recorded
            if actual != ref.hash:
                return (f"{ref.path} hash {actual[:12]} differs from lineage "
                        f"{ref.hash[:12]}", ref.hash)
            return "", ref.hash
        actual = sha256_file(path)
        if actual != ref.hash:
            return f"{ref.path} hash {actual[:12]} differs from lineage {ref.hash[:12]}", ref.hash
        return "", ref.hash

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
        from modelyard.project.dvc import load_dvc_yaml

        document = load_dvc_yaml(lock)
        if not isinstance(document, dict):
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
        return findings  # each broken stage: recover puts each one's outputs back


def quality_problems(profile: dict[str, Any], path: Path) -> list[str]:
    """Nulls, duplicated rows and distribution shift of a CSV against a training profile."""
    import pandas as pd

    from modelyard.core.profile import drifted, psi

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


def _number(version: int | None) -> str:
    return "nobody" if version is None else f"#{version}"
