"""verify_all: every version checked against its manifest in every layer that holds it; per
version and per file, what is missing or differs, and which files of the artifact store the
manifest does not list (``repair.py`` puts back from a layer that has a good copy, and sets
the unlisted files aside in the vault).

Layers:

- ``artifacts``: MLflow's artifact store, the primary copy MLflow clients read;
- ``vault``: ``objects/`` (content-addressed) and ``manifests/NAME/VERSION.json``;
- ``backup``: the backup store, same layout, when one is configured (a version is checked there
  once its manifest is there; a version never backed up is not a problem).

A tag is never trusted for a path: paths come from the manifest, and the manifest is checked
against the hash tagged on the version. Hashing reads 8 MiB chunks (``store.files``), during
which hashlib releases the GIL, so the files are hashed in parallel threads (an object shared
by many versions is hashed once per layer).

>>> report = yard.protection.verify_all()
>>> [(p.path, p.layer, p.problem) for v in report.versions for p in v.problems]
[('model.pkl', 'artifacts', 'missing')]
>>> yard.protection.repair(all=True).files[0].served_by
'vault'
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.context import Context
from modelyard.core.entities import Result
from modelyard.core.names import T_MANIFEST, T_SEMVER, check_name
from modelyard.core.records import VersionRecord
from modelyard.core.refs import is_visible, lookup
from modelyard.errors import StorageError, YardError
from modelyard.registry.loading import Loader
from modelyard.store.files import file_chunks, sha256_stream
from modelyard.store.storage import ObjectStore
from modelyard.store.vault import RECORD_MAX_BYTES, Manifest, manifest_key, object_key
from modelyard.trail.binding import Binding

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.protection.repair import RepairReport

log = logging.getLogger("modelyard.integrity")

Progress = Callable[[int, int], None]
"""Called with (bytes checked so far, bytes to check in all)."""

LAYERS = ("artifacts", "vault", "backup")
PROBLEMS = ("missing", "differs", "unexpected", "manifest-missing", "manifest-differs")
MANIFEST_PATH = "(manifest)"


# -- results ------------------------------------------------------------------------------------
@dataclass
class FileProblem(Result):
    """One file (or manifest) of a version that is missing or differs in one layer."""

    path: str
    layer: str  # "artifacts" | "vault" | "backup"
    problem: str  # one of PROBLEMS ("unexpected": in the artifact store, not in the manifest)
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
    apart: list[str] = field(default_factory=list)  # models written with another vault
    bytes_hashed: int = 0
    seconds: float = 0.0
    unaudited: list[dict[str, Any]] = field(default_factory=list)  # unaudited stage holders
    debris: list[dict[str, Any]] = field(default_factory=list)  # left by processes that died

    @property
    def problems(self) -> list[FileProblem]:
        return [p for v in self.versions for p in v.problems]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "versions": [v.to_dict() for v in self.versions],
                "skipped": self.skipped, "apart": self.apart, "bytes_hashed": self.bytes_hashed,
                "seconds": round(self.seconds, 3), "unaudited": self.unaudited,
                "debris": self.debris}


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
class Target:
    """One version as verify_all and repair find it: its manifest, where its files are, the
    layers checked and the problems met."""

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
    def records(self, name: str | None, ref: str | int | None = None, *,
                apart: list[str] | None = None) -> list[VersionRecord]:
        """The visible versions in scope: one version, one model's, or every model's written
        with this vault (``apart`` collects a line for each model written with another)."""
        reads = self.ctx.reads
        if name is not None and ref is not None:
            return [lookup(reads, name, ref)]
        if name:
            names = [check_name(name)]
        else:
            mine, others = Binding(self.ctx).split(reads.list_models())
            names = [m.name for m in mine]
            if apart is not None:
                apart += others
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(names)))) as pool:
            found = list(pool.map(reads.versions, names))
        return [v for versions in found for v in versions if is_visible(v)]

    def stores(self) -> dict[str, ObjectStore]:
        """The object-store layers by name: the vault, and the backup store when there is one."""
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
        apart: list[str] = []
        records = self.records(name, ref, apart=apart)
        skipped = [f"{r.name} #{r.version}" for r in records if not r.tags.get(T_MANIFEST)]
        targets = [Target(r, r.tags[T_MANIFEST]) for r in records if r.tags.get(T_MANIFEST)]
        stores = self.stores()
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
        return IntegrityReport(ok=all(v.ok for v in versions) and not apart, versions=versions,
                               skipped=skipped, apart=apart, bytes_hashed=hashed,
                               seconds=time.perf_counter() - started)

    def read_manifest(self, store: ObjectStore, target: Target
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

    def _inspect(self, target: Target, stores: dict[str, ObjectStore]) -> None:
        """Manifests of every layer, and the listing of the artifact store."""
        for layer, store in stores.items():
            raw, manifest, problem = self.read_manifest(store, target)
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
        if target.manifest is not None:
            # A file the manifest does not list would be read by a load (a sitecustomize.py
            # beside the model); MLflow's own record is not one (``mlflow_bookkeeping``).
            for rel in target.manifest.unexpected(
                    target.listing, target.name,
                    lambda rel: self.read_small_artifact(target.location, rel,
                                                         target.listing.get(rel))):
                size = target.listing.get(rel)
                target.problem(rel, "artifacts", "unexpected", "not in the manifest" + (
                    f" ({size} bytes)" if size is not None else ""))

    def _check_files(self, pool: ThreadPoolExecutor, targets: list[Target],
                     stores: dict[str, ObjectStore], progress: Progress | None) -> int:
        """Hash every artifact file and every object the manifests name (each object once per
        layer); record what is missing or differs. Returns the bytes hashed."""
        jobs: list[tuple[int, Callable[[], None]]] = []
        # objects: (layer, oid) -> the (target, path) entries that use it
        users: dict[tuple[str, str], list[tuple[Target, str]]] = {}
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

    def _artifact_job(self, target: Target, rel: str, oid: str) -> Callable[[], None]:
        def work() -> None:
            found = self.hash_artifact(target.location, rel)
            if found is None:
                target.problem(rel, "artifacts", "missing")
            elif found[0] != oid:
                target.problem(rel, "artifacts", "differs", f"sha256 {found[0][:12]}..., "
                               f"expected {oid[:12]}...")
        return work

    def _object_job(self, store: ObjectStore, layer: str, oid: str,
                    entries: list[tuple[Target, str]]) -> Callable[[], None]:
        def work() -> None:
            found = hash_object(store, object_key(oid))
            problem = None if found is not None and found[0] == oid else (
                "missing" if found is None else "differs")
            if problem:
                for target, rel in entries:
                    target.problem(rel, layer, problem, f"object {oid[:12]}...")
        return work

    def read_small_artifact(self, location: str, rel: str, size: int | None
                            ) -> bytes | None:
        """The content of a small file of an artifact location (MLflow's record is a few
        bytes), or None when it is big or cannot be read."""
        if size is not None and size > RECORD_MAX_BYTES:
            return None
        root = self.artifacts.local_artifact_root(location)
        try:
            if root is not None:
                path = root / rel
                return None if path.stat().st_size > RECORD_MAX_BYTES else path.read_bytes()
            with tempfile.TemporaryDirectory(prefix="modelyard-verify-") as tmp:
                local = Path(tmp) / "file"
                self.artifacts.fetch_artifact(location, rel, local)
                return None if local.stat().st_size > RECORD_MAX_BYTES else local.read_bytes()
        except (OSError, YardError) as exc:
            log.info("%s could not be read from %s: %s", rel, location, exc)
            return None

    def hash_artifact(self, location: str, rel: str) -> tuple[str, int] | None:
        """(sha256, size) of one file of an artifact location, or None when it cannot be read."""
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

    # -- repair (repair.py) -------------------------------------------------------------------
    def repair(self, name: str | None = None, ref: str | int | None = None, *,
               all: bool = False, progress: Progress | None = None) -> RepairReport:
        """``Repairer.repair``: every missing or corrupt file put back from the first layer
        holding a copy whose hash is right, then verified again."""
        # repair.py builds on this module's verify_all: imported here, not at the top.
        from modelyard.protection.repair import Repairer

        return Repairer(self).repair(name, ref, all=all, progress=progress)
