"""Verified loading: every file is checked against the version's manifest before anything is
deserialised, and copies land in a folder only whole.

Fallback chain for ``load``: registry (local cache first) -> the last verified copy in the
local cache when the registry is unreachable -> ``train()`` when given. Each step is logged.
The local cache is keyed by registry identity, name, version and manifest hash, so two
registries (two projects, or the embedded default and a server) never share an entry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from modelyard.context import Context, Reads
from modelyard.core.entities import LoadedModel, ModelVersion, VerifyResult
from modelyard.core.lineage import Lineage
from modelyard.core.names import T_FLAVOR, T_SEMVER, T_SIGNER, check_name
from modelyard.core.records import VersionRecord
from modelyard.core.refs import lookup
from modelyard.errors import (
    BackendError,
    IntegrityError,
    InvalidInput,
    NotFound,
    StorageError,
    YardError,
)
from modelyard.store.files import atomic_write
from modelyard.store.signatures import SignatureState
from modelyard.store.vault import Manifest
from modelyard.trail.access import AccessLog

log = logging.getLogger("modelyard.loading")


class Loader:
    """load, download (``load --to``) and verify."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.access = AccessLog(ctx)

    # -- reading the registry -------------------------------------------------------------
    def version(self, record: VersionRecord, *, full: bool) -> ModelVersion:
        """A version with (``full``) its run's metrics and params and its artifact location."""
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        location = None
        if full:
            from modelyard.backend.lean.base import at_once

            reads = self.ctx.reads
            # Two independent look-ups: on a server they go out at once.
            run, location = at_once(reads, [partial(_run_or_none, reads, record.run_id),
                                            lambda: reads.artifact_location(record)])
            if run is not None:
                metrics, params = run["metrics"], run["params"]
        return ModelVersion.from_record(record, metrics=metrics, params=params,
                                        artifact_location=location)

    def get(self, name: str, ref: str | int | None, *, full: bool = True) -> ModelVersion:
        if full:
            found = self._found_whole(name, ref)
            if found is not None:
                return found
        return self.version(lookup(self.ctx.reads, name, ref), full=full)

    def _found_whole(self, name: str, ref: str | int | None) -> ModelVersion | None:
        """A semver or ``latest`` on a tracking server in two rounds, not three: the indexed
        search names the version, then the version itself (its aliases: a search row has
        none), its run and its logged model are read at once. None: ``lookup`` answers (any
        other ref or reader, a miss, a version gone in between)."""
        from modelyard.backend.lean.base import at_once
        from modelyard.backend.lean.reader import RestReader
        from modelyard.core.refs import VersionRef, is_visible

        reads = self.ctx.reads
        if not isinstance(reads, RestReader):
            return None
        try:
            parsed = VersionRef.parse(ref if ref is not None else "latest")
        except YardError:
            return None  # lookup words the refusal
        check_name(name)
        if parsed.kind == "semver":
            row = reads.version_by_tag(name, T_SEMVER, parsed.value, aliases=False)
        elif parsed.kind == "latest":
            row = reads.latest_visible(name, aliases=False)
        else:
            return None
        if row is None or not is_visible(row):
            return None
        run_id = row.run_id

        def whole() -> VersionRecord | None:
            try:
                return reads.get_version(name, row.version)
            except NotFound:
                return None

        record, run, location = at_once(reads, [whole, partial(_run_or_none, reads, run_id),
                                                lambda: reads.artifact_location(row)])
        if record is None or record.run_id != run_id or record.model_id != row.model_id \
                or not is_visible(record):
            return None  # changed in between: read it again the usual way
        metrics, params = (run["metrics"], run["params"]) if run is not None else ({}, {})
        return ModelVersion.from_record(record, metrics=metrics, params=params,
                                        artifact_location=location)

    # -- load -----------------------------------------------------------------------------
    def load(
        self,
        name: str,
        ref: str | int | None = "production",
        *,
        verify: bool = True,
        train: Callable[[], Any] | None = None,
        purpose: str = "load",
    ) -> LoadedModel:
        """Load a version after checking every file against its manifest; one access event
        (``purpose``) is appended to the model's access log."""
        try:
            record = lookup(self.ctx.reads, name, ref)
        except (BackendError, StorageError) as exc:
            log.warning("registry unreachable for %s@%s: %s", name, ref, exc.message)
            cached = self._load_remembered(name, ref, verify)
            if cached is not None:
                log.info("loaded %s from the local cache", cached.version.label)
                self.access.record(cached.version, purpose)
                return cached
            if train is None:
                raise
            log.warning("no cached copy of %s@%s; training a fallback model", name, ref)
            return _trained_fallback(name, train)
        mv = self.version(record, full=True)
        path, source, verified = self.materialize(mv, verify)
        loaded = LoadedModel(_deserialize(path, mv), mv, str(path), source, verified)
        self._remember(name, ref, mv)
        log.info("loaded %s from %s (verified=%s)", mv.label, source, verified)
        self.access.record(mv, purpose)
        return loaded

    def download(self, name: str, ref: str | int | None, dest: Path, *, verify: bool = True
                 ) -> tuple[ModelVersion, Path]:
        """Place a version's verified files at ``dest``, whole: they are copied into a fresh
        folder beside it and swapped in, so ``dest`` never holds a mix of two versions and
        nothing is written through a link. ``dest`` must be new, empty, or a folder an earlier
        load wrote and nobody added to since (its mark lists every file it wrote); a file, a
        link, the registry's own folders and the project root are refused before anything is
        read, so a load never deletes what it did not write."""
        protected = self.protected_folders()
        _check_destination(dest, protected)
        self.ctx.prepare_vault()  # the access event goes to the vault: its client builds meanwhile
        mv = self.get(name, ref)
        path, _, _ = self.materialize(mv, verify)
        place_folder(path, dest, protected=protected,
                     mark={"name": mv.name, "version": mv.version, "semver": mv.semver})
        self.access.record(mv, "download")
        return mv, dest

    def protected_folders(self) -> dict[Path, str]:
        """The local folders a load must never replace or write into, by what they are."""
        settings = self.ctx.settings
        found: dict[Path, str] = {settings.home_path: "the registry's home",
                                  self.ctx.cache_dir: "modelyard's cache"}
        for url, what in ((settings.resolved_vault, "the vault"),
                          (settings.backup, "the backup store"),
                          (settings.resolved_artifact_location, "the artifact store")):
            local = _local_folder(url)
            if local is not None:
                found[local] = what
        if settings.project_root:
            found[Path(settings.project_root)] = "the project root"
        return {path.resolve(): what for path, what in found.items()}

    # -- verify ---------------------------------------------------------------------------
    def manifest_of(self, mv: ModelVersion, *, kept: bool = True) -> Manifest:
        """The version's manifest, checked against the hash tagged on it: a copy kept on
        this machine when one hashes to the tag (``kept``), else the vault's."""
        if not mv.manifest_sha256:
            raise IntegrityError(
                name=mv.name, semver=mv.semver or f"#{mv.version}",
                detail="no manifest recorded (bring it under modelyard with `adopt`, "
                "or load with verify=False)",
            )
        copy = self._kept_manifest(mv.manifest_sha256) if kept else None
        if copy is not None:
            return copy
        try:
            manifest = self.ctx.vault.read_manifest(mv.name, mv.version, mv.manifest_sha256,
                                                    mv.semver or "?")
        except IntegrityError:
            from modelyard.trail.binding import Binding

            Binding(self.ctx).check_model(mv.name)  # another vault: say that instead
            raise
        with contextlib.suppress(OSError):  # a failure only costs a vault read next time
            atomic_write(self._manifest_file(manifest.sha256), manifest.canonical())
        return manifest

    # A manifest is named by its own hash, which the version's tag in the registry records:
    # the vault's copy is trusted because it hashes to that tag, and so is a copy kept on
    # this machine (under the cache folder, by hash) that hashes to it. A load or download
    # of a version seen before then needs no object-store client for its manifest (the
    # files are still checked against it, and read from the vault's blobs only if the
    # cached copy is damaged). ``verify`` (``Loader.verify``) still reads the vault's.
    def _manifest_file(self, sha: str) -> Path:
        return self.ctx.cache_dir / "manifests" / f"{sha}.json"

    def _kept_manifest(self, sha: str) -> Manifest | None:
        if len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
            return None  # never a path built from a malformed tag
        try:
            manifest = Manifest.from_json({"files": json.loads(
                self._manifest_file(sha).read_bytes())})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return manifest if manifest.sha256 == sha else None

    def check_signature(self, mv: ModelVersion, manifest: Manifest) -> SignatureState:
        """The version's signature, checked against the trusted keys before any of its files
        is read: a bad one (or none, in a stage ``require_signature`` lists) is refused like
        a tampered file."""
        return self.ctx.signatures.check(manifest, mv.tags.get(T_SIGNER), name=mv.name,
                                         semver=mv.semver or "?", stage=mv.stage)

    def verify(self, name: str, ref: str | int | None = "latest") -> VerifyResult:
        """Check a version's stored files against its manifest, and its signature against
        the trusted keys, without loading them."""
        mv = self.get(name, ref, full=False)
        manifest = self.manifest_of(mv, kept=False)  # the vault's copy is checked too
        signature = self.check_signature(mv, manifest)
        with tempfile.TemporaryDirectory(prefix="modelyard-verify-") as tmp:
            local = self.tracking.artifacts.download(mv.source, Path(tmp))
            manifest.verify_directory(local, label=name, semver=mv.semver or "?")
        return VerifyResult(name=name, version=mv.version, semver=mv.semver, ok=True,
                            files=len(manifest.files), bytes=manifest.total_size,
                            signature=signature.state, signer=signature.signer)

    # -- the local cache ------------------------------------------------------------------
    def cache_folder(self, mv: ModelVersion, *, verified: bool = True) -> Path:
        # Unverified copies never share a folder named by a tag someone could have set.
        key = mv.manifest_sha256 if verified and mv.manifest_sha256 else "unverified"
        return (self.ctx.cache_dir / "models" / self.ctx.registry_id / mv.name
                / str(mv.version) / key)

    def materialize(self, mv: ModelVersion, verify: bool) -> tuple[Path, str, bool]:
        """A verified local copy of the version's files: (path, where from, verified)."""
        manifest = self.manifest_of(mv) if verify else None
        if manifest is not None:
            self.check_signature(mv, manifest)
        cache = self.cache_folder(mv, verified=manifest is not None)
        if cache.is_dir():
            try:
                if manifest is not None:
                    manifest.verify_directory(cache, label=mv.name, semver=mv.semver or "?")
                return cache, "cache", manifest is not None
            except IntegrityError:
                log.warning("cached copy of %s is damaged; downloading again", mv.label)
                shutil.rmtree(cache, ignore_errors=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".dl-", dir=cache.parent))
        try:
            local = self.tracking.artifacts.download(mv.source, staging)
            if manifest is not None:
                manifest.verify_directory(local, label=mv.name, semver=mv.semver or "?")
            with contextlib.suppress(OSError):
                local.rename(cache)
            if not cache.is_dir():
                raise StorageError(detail=f"could not place the download in {cache}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cache, "registry", manifest is not None

    def _ref_file(self, name: str, ref: str | int | None) -> Path:
        safe = re.sub(r"[^\w.\-]", "_", str(ref or "latest"))[:100]
        return self.ctx.cache_dir / "refs" / self.ctx.registry_id / name / f"{safe}.json"

    def _remember(self, name: str, ref: str | int | None, mv: ModelVersion) -> None:
        with contextlib.suppress(OSError):
            atomic_write(self._ref_file(name, ref),
                         json.dumps(mv.to_dict(), default=str).encode())

    def _load_remembered(self, name: str, ref: str | int | None, verify: bool
                         ) -> LoadedModel | None:
        path = self._ref_file(name, ref)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            data["lineage"] = Lineage(**{**data["lineage"], "data": []})
            mv = ModelVersion(**data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("the cached record %s is unreadable (%s); ignoring it", path, exc)
            return None
        cache = self.cache_folder(mv)
        if not mv.manifest_sha256 or not cache.is_dir():
            return None
        if verify:
            # The vault may be unreachable too; the cached copy was verified when written.
            try:
                manifest = self.ctx.vault.read_manifest(mv.name, mv.version, mv.manifest_sha256,
                                                        mv.semver or "?")
                manifest.verify_directory(cache, label=mv.name, semver=mv.semver or "?")
                self.check_signature(mv, manifest)
            except StorageError:
                log.warning("vault unreachable: using the cached copy of %s as last verified",
                            mv.label)
        return LoadedModel(_deserialize(cache, mv), mv, str(cache), "cache", verify)


def _deserialize(path: Path, mv: ModelVersion) -> Any:
    from modelyard.backend import mlmodel

    return mlmodel.deserialize(path, mv.tags.get(T_FLAVOR, ""))


def _trained_fallback(name: str, train: Callable[[], Any]) -> LoadedModel:
    model = train()
    mv = ModelVersion(
        name=name, version=0, semver=None, stage="none", run_id=None, source="train",
        artifact_location="", bump=None, bump_reason=None, manifest_sha256=None,
        aliases=[], tags={}, description="trained by the fallback callback",
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), managed=False,
    )
    return LoadedModel(model, mv, "", "train", False)


# The mark a load leaves in the folder it wrote: the files it placed there. A later load
# replaces that folder only while it holds nothing else.
LOAD_MARK = ".modelyard-load.json"


def _local_folder(url: str | None) -> Path | None:
    """The folder a store setting names on this machine (None for s3:// and the like)."""
    if not url:
        return None
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(url).path))
    return None if "://" in url else Path(url).expanduser()


def _files_under(folder: Path) -> set[str]:
    """Every non-folder entry under ``folder`` (links included, never followed), relative."""
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*")
            if path.is_symlink() or not path.is_dir()}


def _marked_files(folder: Path) -> set[str] | None:
    """The files an earlier load's mark lists (None: no readable mark)."""
    mark = folder / LOAD_MARK
    if mark.is_symlink() or not mark.is_file():
        return None
    try:
        files = json.loads(mark.read_bytes()[:10_000_000])["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


def _check_destination(dest: Path, protected: dict[Path, str] | None = None) -> None:
    """Refuse, in one line, a destination whose replacement would lose something."""
    if dest.is_symlink():
        raise InvalidInput(f"{dest} is a link; give a real folder to load into")
    if dest.exists() and not dest.is_dir():
        raise InvalidInput(f"{dest} is a file; give a folder to load into")
    where = dest.resolve()
    for folder, what in (protected or {}).items():
        if where == folder or where in folder.parents:
            raise InvalidInput(f"{dest} holds {what} ({folder}); give a new or empty folder "
                               "to load into")
        if folder.name and folder in where.parents and what != "the project root":
            raise InvalidInput(f"{dest} is inside {what} ({folder}); give a folder outside it")
    if not dest.is_dir():
        return
    present = _files_under(dest)
    if not present:
        return
    marked = _marked_files(dest)
    if marked is None:
        raise InvalidInput(f"{dest} holds files modelyard did not write (e.g. "
                           f"{sorted(present)[0]}); give a new or empty folder to load into")
    extra = sorted(present - marked - {LOAD_MARK})
    if extra:
        raise InvalidInput(f"{dest} holds {extra[0]}, which no earlier load wrote; move it "
                           "away or give a new or empty folder")


def place_folder(source: Path, dest: Path, *, protected: dict[Path, str] | None = None,
                 mark: dict[str, Any] | None = None) -> None:
    """Copy ``source``'s files into a fresh folder beside ``dest`` and swap it in.

    The fresh folder carries a mark listing its files (``LOAD_MARK``); ``dest`` is replaced
    only when ``_check_destination`` allows it, checked again just before the swap.
    """
    _check_destination(dest, protected)
    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=parent))
    old: Path | None = None
    try:
        written: list[str] = []
        for path in sorted(source.rglob("*")):
            if path.is_symlink():
                continue  # the cache holds verified files only; never carry a link over
            target = fresh / path.relative_to(source)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif path.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                written.append(path.relative_to(source).as_posix())
        (fresh / LOAD_MARK).write_text(json.dumps(
            {"written_by": "modelyard load", **(mark or {}), "files": written}, indent=1))
        _check_destination(dest, protected)  # nothing was added meanwhile
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=parent))
            old.rmdir()
            dest.rename(old)
        fresh.rename(dest)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        if old is not None and not dest.exists():
            old.rename(dest)  # put the previous contents back
            old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _run_or_none(reads: Reads, run_id: str | None) -> dict[str, Any] | None:
    """A version's run as ``get_run`` gives it; None without one or when it cannot be read
    (a deleted run leaves the version's metrics and params empty, not an error)."""
    if not run_id:
        return None
    try:
        result: dict[str, Any] = reads.get_run(run_id)
    except YardError:
        return None
    return result
