"""repair: what verify_all found missing or corrupt put back from a layer with a good copy.

For each broken version, first its manifest (a good one from any layer, or rebuilt from the
artifact store's files when they hash to the tagged value), then every file: the artifact
store first (the copy MLflow clients read), then the vault's and backup store's objects. The
sources are tried in order (the local cache, the vault, the backup store; for the object
stores, the artifact store too) and a copy is written only when its hash is the manifest's.
A file in the artifact store that the manifest does not list (a ``sitecustomize.py`` a
load would import) is taken out and kept in the vault under ``quarantine_key``, never
deleted unkept; MLflow's own record is not such a file (``vault.mlflow_bookkeeping``).
The end is verified again. Which layers there are and how they are checked is
``integrity.py``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard.core.entities import ModelVersion, Result
from modelyard.core.names import T_MANIFEST, T_SEMVER
from modelyard.core.records import VersionRecord
from modelyard.errors import IntegrityError, InvalidInput, YardError
from modelyard.protection.integrity import (
    MANIFEST_PATH,
    FileProblem,
    Integrity,
    IntegrityReport,
    Progress,
    Target,
    hash_object,
)
from modelyard.store.files import sha256_file
from modelyard.store.storage import ObjectStore
from modelyard.store.vault import (
    Manifest,
    manifest_key,
    mlflow_bookkeeping,
    object_key,
    quarantine_key,
)

log = logging.getLogger("modelyard.integrity")


@dataclass
class RepairedFile(Result):
    name: str
    version: int
    path: str
    served_by: str  # "cache" | "vault" | "backup" | "artifacts"
    layer: str = "artifacts"  # the layer that was repaired
    action: str = "restored"  # "restored" | "quarantined" (taken out, kept at ``kept_at``)
    kept_at: str = ""  # quarantined: the vault key its content is kept under


@dataclass
class RepairReport(Result):
    ok: bool
    files: list[RepairedFile]
    unrepairable: list[FileProblem]
    verified: bool
    after: IntegrityReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "verified": self.verified,
                "files": [f.to_dict() for f in self.files],
                "unrepairable": [p.to_dict() for p in self.unrepairable],
                "after": self.after.to_dict() if self.after else None}


class Repairer:
    """repair over the layers an ``Integrity`` checks, with its verify_all before and after."""

    def __init__(self, integrity: Integrity) -> None:
        self.integrity = integrity
        self.ctx = integrity.ctx
        self.tracking = integrity.tracking
        self.artifacts = integrity.artifacts
        self.loader = integrity.loader

    def repair(self, name: str | None = None, ref: str | int | None = None, *,
               all: bool = False, progress: Progress | None = None) -> RepairReport:
        """Put back every missing or corrupt file of the artifact store (and of the vault and
        backup store) from the first layer holding a copy whose hash is right: the local
        cache, the vault, the backup store (or, for the object stores, the artifact store).
        Every copy's hash is checked before it is written; the end is verified again."""
        if not all and name is None:
            raise InvalidInput("name a model (NAME or NAME@REF) to repair, or pass all=True")
        scope = (None, None) if all else (name, ref)
        before = self.integrity.verify_all(*scope, progress=progress)
        stores = self.integrity.stores()
        repaired: list[RepairedFile] = []
        unrepairable: list[FileProblem] = []
        broken = [v for v in before.versions if not v.ok]
        records = {(r.name, r.version): r for r in self.integrity.records(*scope)} if broken else {}
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        for version in broken:
            record = records.get((version.name, version.version))
            if record is None:
                unrepairable += version.problems
                continue
            done, failed = self._repair_version(record, version.problems, stores, stamp)
            repaired += done
            unrepairable += failed
        after = self.integrity.verify_all(*scope) if broken else before
        return RepairReport(ok=after.ok, files=repaired, unrepairable=unrepairable,
                            verified=after.ok, after=after)

    def _repair_version(self, record: VersionRecord, problems: list[FileProblem],
                        stores: dict[str, ObjectStore], stamp: str
                        ) -> tuple[list[RepairedFile], list[FileProblem]]:
        target = Target(record, record.tags[T_MANIFEST])
        repaired: list[RepairedFile] = []
        failed: list[FileProblem] = []

        def done(path: str, served_by: str, layer: str) -> None:
            repaired.append(RepairedFile(name=record.name, version=record.version, path=path,
                                         served_by=served_by, layer=layer))

        # 1. the manifest: a good one from any layer (or rebuilt from good artifact files)
        good: dict[str, bytes] = {}
        for layer, store in stores.items():
            raw, manifest, _ = self.integrity.read_manifest(store, target)
            if manifest is not None and raw is not None:
                good[layer] = raw
                target.manifest = target.manifest or manifest
        target.location = self.tracking.artifact_location(record)
        if target.manifest is None:
            rebuilt = self._manifest_from_artifacts(target)
            if rebuilt is not None:
                self.ctx.vault.write_manifest(record.name, record.version, rebuilt, {
                    "semver": record.tags.get(T_SEMVER), "source": record.source,
                    "run_id": record.run_id, "repaired": True})
                target.manifest = rebuilt
                done(MANIFEST_PATH, "artifacts", "vault")
                good["vault"] = self.ctx.vault.store.get_bytes(
                    manifest_key(record.name, record.version))
        manifest = target.manifest
        if manifest is None:
            return repaired, list(problems)
        for problem in problems:
            if problem.path != MANIFEST_PATH or problem.layer not in stores:
                continue
            source = next(iter(good), None)
            if source is None or source == problem.layer:
                failed.append(problem)
                continue
            stores[problem.layer].put_bytes(manifest_key(record.name, record.version),
                                            good[source])
            done(MANIFEST_PATH, source, problem.layer)

        # 2. objects of the vault / backup store, then 3. the artifact store's files
        cache = self._cache_folder(record)
        file_problems = [p for p in problems
                         if p.path != MANIFEST_PATH and p.problem != "unexpected"]
        for problem in problems:
            if problem.problem != "unexpected" or problem.layer != "artifacts":
                continue
            try:
                key = self._quarantine(target, problem.path, stamp)
            except (YardError, OSError) as exc:
                log.warning("%s: not set aside (%s)", problem.path,
                            getattr(exc, "message", exc))
                failed.append(problem)
                continue
            repaired.append(RepairedFile(
                name=record.name, version=record.version, path=problem.path,
                served_by="artifacts", layer="artifacts", action="quarantined", kept_at=key))
        # The artifact store first (the copy MLflow reads), then the object stores.
        ordered = sorted(file_problems, key=lambda p: p.layer != "artifacts")
        fixed_objects: set[tuple[str, str]] = set()
        for problem in ordered:
            entry = manifest.files.get(problem.path)
            if entry is None:
                failed.append(problem)
                continue
            oid = entry[0]
            if problem.layer != "artifacts" and (problem.layer, oid) in fixed_objects:
                continue
            sources = self._sources(problem.layer, problem.path, oid, cache, target, stores)
            served = self._copy_first_good(sources, oid, problem, target, stores)
            if served is None:
                failed.append(problem)
                continue
            if problem.layer != "artifacts":
                fixed_objects.add((problem.layer, oid))
            done(problem.path, served, problem.layer)
        return repaired, failed

    def _quarantine(self, target: Target, rel: str, stamp: str) -> str:
        """Take a file the manifest does not list out of the artifact store, keeping its
        content in the vault first (checked by hash): nothing is deleted that is not kept."""
        if not rel or rel.startswith("/") or ".." in rel.split("/"):
            raise InvalidInput(f"unsafe artifact path {rel[:80]!r}; left in place")
        key = quarantine_key(target.name, target.version, stamp, rel)
        store = self.ctx.vault.store
        with tempfile.TemporaryDirectory(prefix="modelyard-quarantine-") as tmp:
            local = Path(tmp) / rel.rsplit("/", 1)[-1]
            self._fetch_artifact(target, rel, local)
            found = (sha256_file(local), local.stat().st_size)
            store.put_file(key, local)
        if hash_object(store, key) != found:
            raise IntegrityError(name=target.name, semver=str(target.version),
                                 detail=f"the vault's copy of {rel} does not match; "
                                 "left in place")
        self.artifacts.delete_artifact(target.location, rel)
        log.warning("%s #%s: %s is not in the manifest; moved to the vault at %s",
                    target.name, target.version, rel, key)
        return key

    def _cache_folder(self, record: VersionRecord) -> Path | None:
        with contextlib.suppress(Exception):
            return self.loader.cache_folder(ModelVersion.from_record(record))
        return None

    def _sources(self, layer: str, rel: str, oid: str, cache: Path | None, target: Target,
                 stores: dict[str, ObjectStore]) -> list[tuple[str, Callable[[Path], None]]]:
        """Where a good copy may be, in order: (layer name, fetch into a local path)."""
        sources: list[tuple[str, Callable[[Path], None]]] = []
        if cache is not None and (cache / rel).is_file():
            cached = cache / rel

            def from_cache(dest: Path) -> None:
                shutil.copyfile(cached, dest)

            sources.append(("cache", from_cache))
        if layer != "artifacts":
            sources.append(("artifacts", lambda dest: self._fetch_artifact(target, rel, dest)))
        for name, store in stores.items():
            if name != layer:
                sources.append((name, _store_fetch(store, object_key(oid))))
        if layer == "artifacts":  # cache, vault, backup
            return sources
        order = ["cache", "vault", "backup", "artifacts"]
        return sorted(sources, key=lambda s: order.index(s[0]))

    def _fetch_artifact(self, target: Target, rel: str, dest: Path) -> None:
        root = self.artifacts.local_artifact_root(target.location)
        if root is not None:
            shutil.copyfile(root / rel, dest)
        else:
            self.artifacts.fetch_artifact(target.location, rel, dest)

    def _copy_first_good(self, sources: list[tuple[str, Callable[[Path], None]]], oid: str,
                         problem: FileProblem, target: Target,
                         stores: dict[str, ObjectStore]) -> str | None:
        """Fetch from each source in turn; write the first copy whose hash is ``oid``."""
        base = problem.path.rsplit("/", 1)[-1]
        for served_by, fetch in sources:
            with tempfile.TemporaryDirectory(prefix="modelyard-repair-") as tmp:
                local = Path(tmp) / base
                try:
                    fetch(local)
                except (YardError, OSError) as exc:
                    log.info("%s: no copy in %s (%s)", problem.path, served_by, exc)
                    continue
                if sha256_file(local) != oid:
                    log.warning("%s: the copy in %s has the wrong hash; not used", problem.path,
                                served_by)
                    continue
                if problem.layer == "artifacts":
                    self.artifacts.put_artifact(target.location, problem.path, local)
                else:
                    stores[problem.layer].put_file(object_key(oid), local)
                return served_by
        return None

    def _manifest_from_artifacts(self, target: Target) -> Manifest | None:
        """The manifest rebuilt from the artifact store, if it hashes to the tagged value
        (MLflow's bookkeeping left out when the folder holds it: ``mlflow_bookkeeping``)."""
        listing = self.artifacts.artifact_files(target.location)
        files: dict[str, tuple[str, int]] = {}
        for rel in sorted(listing):
            found = self.integrity.hash_artifact(target.location, rel)
            if found is None:
                return None
            files[rel] = found
        manifest = Manifest(files)
        if manifest.sha256 != target.expected:
            bookkeeping = mlflow_bookkeeping(
                listing, (), target.name,
                lambda rel: self.integrity.read_small_artifact(target.location, rel,
                                                               listing.get(rel)))
            manifest = Manifest({k: v for k, v in files.items() if k not in bookkeeping})
        return manifest if manifest.sha256 == target.expected else None


def _store_fetch(store: ObjectStore, key: str) -> Callable[[Path], None]:
    def fetch(dest: Path) -> None:
        store.get_file(key, dest)
    return fetch
