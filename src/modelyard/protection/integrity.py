"""verify_all and repair: every version checked against its manifest in every layer that holds
it, and what is missing or corrupt put back from a layer that has a good copy.

Layers:

- ``artifacts``: MLflow's artifact store, the primary copy MLflow clients read;
- ``vault``: ``objects/`` (content-addressed) and ``manifests/NAME/VERSION.json``;
- ``backup``: the backup store, same layout, when one is configured (a version is checked there
  once its manifest is there; a version never backed up is not a problem).

A tag is never trusted for a path: paths come from the manifest, and the manifest is checked
against the hash tagged on the version. Hashing reads 8 MiB chunks (``store.files``), during
which hashlib releases the GIL, so the files are hashed in parallel threads (an object shared
by many versions is hashed once per layer).

>>> report = yard.verify_all()
>>> [(p.path, p.layer, p.problem) for v in report.versions for p in v.problems]
[('model.pkl', 'artifacts', 'missing')]
>>> yard.repair(all=True).files[0].served_by
'vault'
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.context import Context
from modelyard.core.entities import ModelVersion, Result
from modelyard.core.names import T_MANIFEST, T_SEMVER, check_name
from modelyard.core.records import VersionRecord
from modelyard.core.refs import is_visible, lookup
from modelyard.errors import InvalidInput, StorageError, YardError
from modelyard.registry.loading import Loader
from modelyard.store.files import file_chunks, sha256_file, sha256_stream
from modelyard.store.storage import ObjectStore
from modelyard.store.vault import MLFLOW_RECORD, Manifest, manifest_key, object_key

log = logging.getLogger("modelyard.integrity")

Progress = Callable[[int, int], None]
"""Called with (bytes checked so far, bytes to check in all)."""

LAYERS = ("artifacts", "vault", "backup")
PROBLEMS = ("missing", "differs", "manifest-missing", "manifest-differs")
MANIFEST_PATH = "(manifest)"


# -- results ------------------------------------------------------------------------------------
@dataclass
class FileProblem(Result):
    """One file (or manifest) of a version that is missing or differs in one layer."""

    path: str
    layer: str  # "artifacts" | "vault" | "backup"
    problem: str  # "missing" | "differs" | "manifest-missing" | "manifest-differs"
    name: str = ""
    version: int = 0
    detail: str = ""


@dataclass
class VersionIntegrity(Result):
    name: str
    version: int
    semver: str | None
    ok: bool
    problems: list[FileProblem] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    layers: list[str] = field(default_factory=list)  # the layers checked

    @property
    def label(self) -> str:
        return f"{self.name} v{self.semver}" if self.semver else f"{self.name} #{self.version}"


@dataclass
class IntegrityReport(Result):
    ok: bool
    versions: list[VersionIntegrity]
    skipped: list[str] = field(default_factory=list)  # versions without a manifest (adopt them)
    bytes_hashed: int = 0
    seconds: float = 0.0
    drift: list[dict[str, Any]] = field(default_factory=list)  # unaudited stage holders

    @property
    def problems(self) -> list[FileProblem]:
        return [p for v in self.versions for p in v.problems]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "versions": [v.to_dict() for v in self.versions],
                "skipped": self.skipped, "bytes_hashed": self.bytes_hashed,
                "seconds": round(self.seconds, 3), "drift": self.drift}


@dataclass
class RepairedFile(Result):
    name: str
    version: int
    path: str
    served_by: str  # "cache" | "vault" | "backup" | "artifacts"
    layer: str = "artifacts"  # the layer that was repaired


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


# -- hashing ------------------------------------------------------------------------------------
def hash_object(store: ObjectStore, key: str) -> tuple[str, int] | None:
    """(sha256, size) of an object, or None when there is none."""
    try:
        return sha256_stream(store.chunks(key))
    except StorageError as exc:
        if "not found" in exc.message:
            return None
        raise


def _workers() -> int:
    return min(16, max(4, 2 * (os.cpu_count() or 2)))


# -- what one version holds ----------------------------------------------------------------------
@dataclass
class _Target:
    record: VersionRecord
    expected: str  # the manifest hash tagged on the version
    manifest: Manifest | None = None
    manifest_raw: bytes | None = None
    location: str = ""
    listing: dict[str, int | None] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def version(self) -> int:
        return self.record.version

    def problem(self, path: str, layer: str, problem: str, detail: str = "") -> None:
        self.problems.append(FileProblem(path=path, layer=layer, problem=problem,
                                         name=self.name, version=self.version, detail=detail))


class Integrity:
    """verify_all and repair over the artifact store, the vault and the backup store."""

    def __init__(self, ctx: Context, loader: Loader) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.artifacts = ctx.tracking.artifacts
        self.loader = loader

    # -- which versions ---------------------------------------------------------------------
    def _records(self, name: str | None, ref: str | int | None = None) -> list[VersionRecord]:
        reads = self.ctx.reads
        if name is not None and ref is not None:
            return [lookup(reads, name, ref)]
        names = [check_name(name)] if name else [m.name for m in reads.list_models()]
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(names)))) as pool:
            found = list(pool.map(reads.versions, names))
        return [v for versions in found for v in versions if is_visible(v)]

    def _stores(self) -> dict[str, ObjectStore]:
        stores = {"vault": self.ctx.vault.store}
        backup = self.ctx.backup
        if backup is not None:
            stores["backup"] = backup.store
        return stores

    # -- verify -----------------------------------------------------------------------------
    def verify_all(self, name: str | None = None, ref: str | int | None = None, *,
                   progress: Progress | None = None) -> IntegrityReport:
        """Every visible version (or one model's, or one version) against its manifest in
        every layer; per version and per file what is missing or differs."""
        import time

        started = time.perf_counter()
        records = self._records(name, ref)
        skipped = [f"{r.name} #{r.version}" for r in records if not r.tags.get(T_MANIFEST)]
        targets = [_Target(r, r.tags[T_MANIFEST]) for r in records if r.tags.get(T_MANIFEST)]
        stores = self._stores()
        with ThreadPoolExecutor(max_workers=_workers()) as pool:
            list(pool.map(lambda t: self._inspect(t, stores), targets))
            hashed = self._check_files(pool, targets, stores, progress)
        versions = []
        for target in targets:
            manifest = target.manifest
            versions.append(VersionIntegrity(
                name=target.name, version=target.version,
                semver=target.record.tags.get(T_SEMVER), ok=not target.problems,
                problems=sorted(target.problems, key=lambda p: (LAYERS.index(p.layer), p.path)),
                files=len(manifest.files) if manifest else 0,
                bytes=manifest.total_size if manifest else 0, layers=target.layers))
        return IntegrityReport(ok=all(v.ok for v in versions), versions=versions,
                               skipped=skipped, bytes_hashed=hashed,
                               seconds=time.perf_counter() - started)

    def _read_manifest(self, store: ObjectStore, target: _Target
                       ) -> tuple[bytes | None, Manifest | None, str | None]:
        """(raw bytes, manifest if it matches the tag, problem) of one layer's manifest."""
        try:
            raw = store.get_bytes(manifest_key(target.name, target.version))
        except StorageError as exc:
            if "not found" in exc.message:
                return None, None, "manifest-missing"
            raise
        try:
            manifest = Manifest.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError):
            return raw, None, "manifest-differs"
        if manifest.sha256 != target.expected:
            return raw, None, "manifest-differs"
        return raw, manifest, None

    def _inspect(self, target: _Target, stores: dict[str, ObjectStore]) -> None:
        """Manifests of every layer, and the listing of the artifact store."""
        for layer, store in stores.items():
            raw, manifest, problem = self._read_manifest(store, target)
            if layer == "backup" and problem == "manifest-missing":
                continue  # never backed up: nothing to check there
            target.layers.append(layer)
            if problem:
                target.problem(MANIFEST_PATH, layer, problem)
            elif target.manifest is None:
                target.manifest, target.manifest_raw = manifest, raw
        target.layers.insert(0, "artifacts")
        target.location = self.tracking.artifact_location(target.record)
        target.listing = self.artifacts.artifact_files(target.location)

    def _check_files(self, pool: ThreadPoolExecutor, targets: list[_Target],
                     stores: dict[str, ObjectStore], progress: Progress | None) -> int:
        """Hash every artifact file and every object the manifests name (each object once per
        layer); record what is missing or differs. Returns the bytes hashed."""
        jobs: list[tuple[int, Callable[[], None]]] = []
        # objects: (layer, oid) -> the (target, path) entries that use it
        users: dict[tuple[str, str], list[tuple[_Target, str]]] = {}
        for target in targets:
            manifest = target.manifest
            if manifest is None:
                continue  # no layer holds a good manifest: its problem is reported already
            for rel, (oid, size) in sorted(manifest.files.items()):
                listed = target.listing.get(rel, -1)
                if listed == -1:
                    target.problem(rel, "artifacts", "missing")
                elif listed is not None and listed != size:
                    target.problem(rel, "artifacts", "differs",
                                   f"{listed} bytes, expected {size}")
                else:
                    jobs.append((size, self._artifact_job(target, rel, oid)))
                for layer in target.layers:
                    if layer != "artifacts":
                        users.setdefault((layer, oid), []).append((target, rel))
        sizes: dict[str, int] = {oid: size for t in targets if t.manifest
                                 for oid, size in t.manifest.files.values()}
        for (layer, oid), entries in users.items():
            jobs.append((sizes[oid], self._object_job(stores[layer], layer, oid, entries)))
        total = sum(size for size, _ in jobs)
        done = [0]
        lock = threading.Lock()

        def run(job: tuple[int, Callable[[], None]]) -> None:
            size, work = job
            work()
            if progress is not None:
                with lock:
                    done[0] += size
                    progress(done[0], total)

        list(pool.map(run, sorted(jobs, key=lambda j: -j[0])))  # big files first
        return total

    def _artifact_job(self, target: _Target, rel: str, oid: str) -> Callable[[], None]:
        def work() -> None:
            found = self._hash_artifact(target.location, rel)
            if found is None:
                target.problem(rel, "artifacts", "missing")
            elif found[0] != oid:
                target.problem(rel, "artifacts", "differs", f"sha256 {found[0][:12]}..., "
                               f"expected {oid[:12]}...")
        return work

    def _object_job(self, store: ObjectStore, layer: str, oid: str,
                    entries: list[tuple[_Target, str]]) -> Callable[[], None]:
        def work() -> None:
            found = hash_object(store, object_key(oid))
            problem = None if found is not None and found[0] == oid else (
                "missing" if found is None else "differs")
            if problem:
                for target, rel in entries:
                    target.problem(rel, layer, problem, f"object {oid[:12]}...")
        return work

    def _hash_artifact(self, location: str, rel: str) -> tuple[str, int] | None:
        root = self.artifacts.local_artifact_root(location)
        if root is not None:
            try:
                return sha256_stream(file_chunks(root / rel))
            except FileNotFoundError:
                return None
        with tempfile.TemporaryDirectory(prefix="modelyard-verify-") as tmp:
            local = Path(tmp) / "file"
            try:
                self.artifacts.fetch_artifact(location, rel, local)
            except YardError as exc:
                log.info("%s could not be read from %s: %s", rel, location, exc.message)
                return None
            return sha256_stream(file_chunks(local))

    # -- repair -----------------------------------------------------------------------------
    def repair(self, name: str | None = None, ref: str | int | None = None, *,
               all: bool = False, progress: Progress | None = None) -> RepairReport:
        """Put back every missing or corrupt file of the artifact store (and of the vault and
        backup store) from the first layer holding a copy whose hash is right: the local
        cache, the vault, the backup store (or, for the object stores, the artifact store).
        Every copy's hash is checked before it is written; the end is verified again."""
        if not all and name is None:
            raise InvalidInput("name a model (NAME or NAME@REF) to repair, or pass all=True")
        scope = (None, None) if all else (name, ref)
        before = self.verify_all(*scope, progress=progress)
        stores = self._stores()
        repaired: list[RepairedFile] = []
        unrepairable: list[FileProblem] = []
        broken = [v for v in before.versions if not v.ok]
        records = {(r.name, r.version): r for r in self._records(*scope)} if broken else {}
        for version in broken:
            record = records.get((version.name, version.version))
            if record is None:
                unrepairable += version.problems
                continue
            done, failed = self._repair_version(record, version.problems, stores)
            repaired += done
            unrepairable += failed
        after = self.verify_all(*scope) if broken else before
        return RepairReport(ok=after.ok, files=repaired, unrepairable=unrepairable,
                            verified=after.ok, after=after)

    def _repair_version(self, record: VersionRecord, problems: list[FileProblem],
                        stores: dict[str, ObjectStore]
                        ) -> tuple[list[RepairedFile], list[FileProblem]]:
        target = _Target(record, record.tags[T_MANIFEST])
        repaired: list[RepairedFile] = []
        failed: list[FileProblem] = []

        def done(path: str, served_by: str, layer: str) -> None:
            repaired.append(RepairedFile(name=record.name, version=record.version, path=path,
                                         served_by=served_by, layer=layer))

        # 1. the manifest: a good one from any layer (or rebuilt from good artifact files)
        good: dict[str, bytes] = {}
        for layer, store in stores.items():
            raw, manifest, _ = self._read_manifest(store, target)
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
        file_problems = [p for p in problems if p.path != MANIFEST_PATH]
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

    def _cache_folder(self, record: VersionRecord) -> Path | None:
        with contextlib.suppress(Exception):
            return self.loader.cache_folder(ModelVersion.from_record(record))
        return None

    def _sources(self, layer: str, rel: str, oid: str, cache: Path | None, target: _Target,
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

    def _fetch_artifact(self, target: _Target, rel: str, dest: Path) -> None:
        root = self.artifacts.local_artifact_root(target.location)
        if root is not None:
            shutil.copyfile(root / rel, dest)
        else:
            self.artifacts.fetch_artifact(target.location, rel, dest)

    def _copy_first_good(self, sources: list[tuple[str, Callable[[Path], None]]], oid: str,
                         problem: FileProblem, target: _Target,
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

    def _manifest_from_artifacts(self, target: _Target) -> Manifest | None:
        """The manifest rebuilt from the artifact store, if it hashes to the tagged value."""
        listing = self.artifacts.artifact_files(target.location)
        files: dict[str, tuple[str, int]] = {}
        for rel in sorted(listing):
            found = self._hash_artifact(target.location, rel)
            if found is None:
                return None
            files[rel] = found
        manifest = Manifest(files)
        if manifest.sha256 != target.expected and MLFLOW_RECORD in files:
            # MLflow's registry downloads may have added their record to a local store.
            manifest = Manifest({k: v for k, v in files.items() if k != MLFLOW_RECORD})
        return manifest if manifest.sha256 == target.expected else None


def _store_fetch(store: ObjectStore, key: str) -> Callable[[Path], None]:
    def fetch(dest: Path) -> None:
        store.get_file(key, dest)
    return fetch
