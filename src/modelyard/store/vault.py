"""The vault: content-addressed objects, per-version manifests, and every other key
modelyard keeps in an object store (this module owns the layout).

::

    objects/ab/cdef...            file contents by SHA-256 (each stored once)
    manifests/NAME/VERSION.json   path -> sha256 + size for every artifact file of a version
    audit/NAME/0000000001.json    the hash-chained audit trail
    requests/NAME/ID.json         promotion requests (ID.decision.json once decided)
    records/NAME/VERSION.json     (backup store) everything to recreate a version
    quarantine/NAME/VERSION/STAMP/PATH  a file repair took out of a version's artifact folder
    signatures/MANIFEST_SHA256.json  the OpenSSF signature bundle of a manifest (signatures.py)
    compiled/NAME/MANIFEST_SHA256.json  a version's compiled (ONNX) copy: its object, parity
    samples/NAME/VERSION.json     rows recorded at registration to check a compiled copy on
    serving/NAME/canary/RAMP.json when a canary ramp began, read by every serving replica
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Container, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import IntegrityError, StorageError, UnexpectedFiles
from modelyard.store.files import sha256_file
from modelyard.store.storage import ObjectStore

# MLflow's registry downloads write this record (model name and version) into a model's
# folder, and on a local artifact store that folder is the store itself. Loads never read it.
MLFLOW_RECORD = "registered_model_meta"
RECORD_MAX_BYTES = 4096  # a genuine record is two short lines


def is_mlflow_record(path: Path, name: str) -> bool:
    """True if ``path`` is exactly the record MLflow writes for a version of model ``name``
    (the keys ``model_name`` and ``model_version``, nothing else): the one file a version's
    folder may hold beyond its manifest. Any other content under that name is a stranger."""
    try:
        if path.stat().st_size > RECORD_MAX_BYTES:
            return False
        return is_mlflow_record_bytes(path.read_bytes(), name)
    except OSError:
        return False


def is_mlflow_record_bytes(data: bytes | None, name: str) -> bool:
    """``is_mlflow_record`` on a file's content (``None``: it could not be read)."""
    import yaml

    if data is None or len(data) > RECORD_MAX_BYTES:
        return False
    try:
        record = yaml.safe_load(data)
    except (ValueError, yaml.YAMLError):
        return False
    return (isinstance(record, dict) and set(record) == {"model_name", "model_version"}
            and record["model_name"] == name and str(record["model_version"]).isdigit())


def mlflow_bookkeeping(present: Iterable[str], listed: Container[str], name: str,
                       read: Callable[[str], bytes | None]) -> set[str]:
    """The one rule for a version's folder beside its manifest: which of the files
    ``present`` (relative paths) are MLflow's own bookkeeping rather than the version's.

    That is MLflow's record (``MLFLOW_RECORD``, at the top of the folder) when the version's
    manifest does not list that path (``listed``: a listed file is the version's own and is
    checked like any other) and its content is exactly MLflow's record for model ``name``
    (``read(rel)`` gives the content, ``None`` if unreadable). verify and load
    (``verify_directory``), ``verify --all`` and repair, import (and so drills), adopt and
    ``register_uri`` all ask this; nothing else is exempt. Backup, restore and snapshots
    work from the manifest's objects alone, so the record never reaches them."""
    if MLFLOW_RECORD not in present or MLFLOW_RECORD in listed:
        return set()
    return {MLFLOW_RECORD} if is_mlflow_record_bytes(read(MLFLOW_RECORD), name) else set()


def _reader(root: Path) -> Callable[[str], bytes | None]:
    def read(rel: str) -> bytes | None:
        path = root / rel
        try:
            if path.stat().st_size > RECORD_MAX_BYTES:
                return None
            return path.read_bytes()
        except OSError:
            return None
    return read


def files_under(root: Path) -> set[str]:
    """Every file under a folder, as relative POSIX paths."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def drop_mlflow_bookkeeping(root: Path, name: str, listed: Container[str] = ()) -> list[str]:
    """Delete MLflow's bookkeeping (``mlflow_bookkeeping``) from a local copy of a version's
    folder before its files become another version's (import): MLflow's record names the
    version it was written for, never the one being made. Returns what was removed."""
    dropped = sorted(mlflow_bookkeeping(files_under(root), listed, name, _reader(root)))
    for rel in dropped:
        (root / rel).unlink()
    return dropped


def quarantine_key(name: str, version: int, stamp: str, rel: str) -> str:
    """Where ``repair`` keeps a file it took out of a version's artifact folder because the
    manifest does not list it: set aside in the vault, never deleted (``stamp``: UTC time)."""
    return f"quarantine/{name}/{version}/{stamp}/{rel}"


OBJECTS = "objects/"
MANIFESTS = "manifests/"


def object_key(oid: str) -> str:
    return f"objects/{oid[:2]}/{oid[2:]}"


def oid_of_key(key: str) -> str | None:
    """The SHA-256 an ``objects/`` key holds (None for any other key)."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "objects" or len(parts[1]) != 2:
        return None
    return parts[1] + parts[2]


def manifest_key(name: str, version: int) -> str:
    return f"manifests/{name}/{version}.json"


def signature_key(manifest_sha: str) -> str:
    """A version's signature (an OpenSSF model-signing bundle over its manifest's digests),
    keyed by the manifest hash the version's tag records: versions with the same files share
    it, and it travels with the manifest (backup, export, restore, import)."""
    return f"signatures/{manifest_sha}.json"


# -- registrations in flight (registry/journal.py) ----------------------------------------
JOURNAL = "journal/"


def journal_key(name: str, token: str) -> str:
    """What one registration in flight has created so far (run, logged model, version, who
    and where): written when it starts, deleted when it ends either way. One that stays
    names what a process that died left behind (``cleanup --debris``)."""
    return f"journal/{name}/{token}.json"


def cleanup_report_key(stamp: str) -> str:
    """The record of a ``cleanup --debris`` run that removed vault objects no manifest names
    (they belong to no model, so no model's audit trail can hold it)."""
    return f"cleanups/{stamp}.json"


def audit_prefix(name: str) -> str:
    return f"audit/{name}/"


def event_key(name: str, seq: int) -> str:
    return f"audit/{name}/{seq:010d}.json"


REQUESTS = "requests/"


def requests_prefix(name: str) -> str:
    return f"requests/{name}/"


def request_key(name: str, request_id: str) -> str:
    return f"requests/{name}/{request_id}.json"


def decision_key(name: str, request_id: str) -> str:
    return f"requests/{name}/{request_id}.decision.json"


@dataclass(frozen=True)
class Manifest:
    """Every artifact file of a version: relative path -> (sha256, size)."""

    files: dict[str, tuple[str, int]]

    @classmethod
    def of_directory(cls, root: Path) -> Manifest:
        files: dict[str, tuple[str, int]] = {}
        for path in sorted(root.rglob("*")):
            # Every file a load could read, caches included; no name is exempt.
            if path.is_file():
                files[path.relative_to(root).as_posix()] = (sha256_file(path), path.stat().st_size)
        return cls(files)

    @classmethod
    def of_copy(cls, digests: dict[str, tuple[str, int]]) -> Manifest:
        """The manifest of a folder from the digests taken while copying it in
        (``files.copy_tree_safely(..., digests=...)``): what ``of_directory`` would read."""
        return cls({rel: digests[rel] for rel in sorted(digests)})

    @property
    def sha256(self) -> str:
        """Hash of the canonical manifest: what the version's tag records."""
        return hashlib.sha256(self.canonical()).hexdigest()

    @property
    def total_size(self) -> int:
        return sum(size for _, size in self.files.values())

    def canonical(self) -> bytes:
        body = {path: {"sha256": oid, "size": size} for path, (oid, size) in self.files.items()}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls({p: (str(v["sha256"]), int(v["size"])) for p, v in data["files"].items()})

    def unexpected(self, present: Iterable[str], name: str,
                   read: Callable[[str], bytes | None]) -> list[str]:
        """The files ``present`` in a version's folder that this manifest does not list,
        MLflow's bookkeeping aside (``mlflow_bookkeeping``): strangers, sorted."""
        present = set(present)
        extra = present - set(self.files)
        return sorted(extra - mlflow_bookkeeping(present, self.files, name, read))

    def verify_directory(self, root: Path, *, label: str, semver: str) -> None:
        """Raise IntegrityError naming the first file that differs; nothing is loaded."""
        present = files_under(root)
        for rel, (oid, size) in sorted(self.files.items()):
            path = root / rel
            if not path.is_file():
                raise IntegrityError(name=label, semver=semver, detail=f"{rel} is missing")
            if path.stat().st_size != size or sha256_file(path) != oid:
                raise IntegrityError(
                    name=label, semver=semver,
                    detail=f"{rel} does not match its recorded SHA-256 (expected {oid[:12]}...)",
                )
        extra = self.unexpected(present, label, _reader(root))
        if extra:
            raise UnexpectedFiles(
                name=label, semver=semver, files=extra,
                detail=f"unexpected file(s) {', '.join(extra[:3])}",
            )


class Vault:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    manifest_key = staticmethod(manifest_key)

    def store_objects(self, root: Path, manifest: Manifest) -> None:
        """Copy every file's content into objects/ once (deduplicated by hash)."""
        unique = {oid: rel for rel, (oid, _) in manifest.files.items()}

        def put(item: tuple[str, str]) -> None:
            oid, rel = item
            key = object_key(oid)
            if not self.store.exists(key):
                self.store.put_file(key, root / rel)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(put, unique.items()))

    def stage(self, src: Path, dest: Path, *, follow_links: bool = False) -> Manifest:
        """Take the vault's copy of every file of ``src`` while hashing it (one read), and lay
        the files out at ``dest`` for the upload to MLflow's artifact store; the manifest.

        With a folder vault, ``dest`` names the vault's objects (hard links where the two share
        a filesystem, else copies): a staging layout only, which the upload copies from (so
        the artifact store gets its own, independent copy, of bytes that match the manifest
        whatever happens to ``src`` meanwhile) and which is deleted after. Elsewhere ``dest``
        is a copy of ``src`` hashed while written, and ``store_objects`` uploads it."""
        from modelyard.store.files import copy_tree_safely, tree_plan
        from modelyard.store.storage import LocalStore

        store = self.store
        if not isinstance(store, LocalStore):
            digests: dict[str, tuple[str, int]] = {}
            copy_tree_safely(src, dest, follow_links=follow_links, digests=digests)
            return Manifest.of_copy(digests)
        plan = tree_plan(src, follow_links=follow_links)
        dest.mkdir(parents=True)

        def one(item: tuple[Path, Path]) -> tuple[str, tuple[str, int]]:
            source, rel = item
            oid, size, kept = store.ingest(source, object_key)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(kept, target)
            except OSError:  # another filesystem: a copy (in the kernel)
                shutil.copyfile(kept, target)
            return rel.as_posix(), (oid, size)

        with ThreadPoolExecutor(max_workers=max(1, min(4, len(plan)))) as pool:
            return Manifest.of_copy(dict(pool.map(one, plan)))

    def write_manifest(
        self, name: str, version: int, manifest: Manifest, extra: dict[str, Any]
    ) -> None:
        body = {
            "name": name,
            "version": version,
            "manifest_sha256": manifest.sha256,
            "files": json.loads(manifest.canonical()),
            **extra,
        }
        self.store.put_bytes(self.manifest_key(name, version), json.dumps(body, indent=1).encode())

    def read_manifest(self, name: str, version: int, expected_sha: str, semver: str) -> Manifest:
        """Read a manifest and check it against the hash tagged on the version."""
        try:
            raw = self.store.get_bytes(self.manifest_key(name, version))
        except StorageError as exc:
            if "not found" in exc.message:
                raise IntegrityError(
                    name=name, semver=semver, detail="its manifest is missing from the vault"
                ) from exc
            raise
        try:
            manifest = Manifest.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(name=name, semver=semver, detail="manifest unreadable") from exc
        if manifest.sha256 != expected_sha:
            raise IntegrityError(
                name=name, semver=semver,
                detail="the vault's manifest does not match the hash tagged on the version",
            )
        return manifest

    def delete_manifest(self, name: str, version: int) -> None:
        self.store.delete(self.manifest_key(name, version))


# -- snapshots: whole-system states, immutable (snapshots.py) ---------------------------------
SNAPSHOTS = "snapshots/"


def snapshot_key(tag: str) -> str:
    return f"snapshots/{tag}.json"


# -- backups (the backup store has the vault's layout, plus version records) ----------------
RECORDS = "records/"


def records_prefix(name: str) -> str:
    return f"records/{name}/"


def record_key(name: str, version: int) -> str:
    """The version record a backup writes last: what recreates the version in a registry."""
    return f"records/{name}/{version}.json"


def probe_key(token: str) -> str:
    """A throwaway key ``doctor`` writes and deletes to prove a store is writable."""
    return f"probes/{token}"


# -- governance (G): the audit trail's vault anchor and the access log -------------------
def identity_key() -> str:
    """The vault's identity (``{"id"}``), written once: what a registry's models record."""
    return "identity.json"


def audit_head_key(name: str) -> str:
    """The newest audit event's (seq, hash), the trail's second anchor beside the MLflow tag."""
    return f"audit/{name}/HEAD.json"


def access_prefix(name: str) -> str:
    return f"access/{name}/"


def access_key(name: str, stamp_id: str) -> str:
    """One access event: ``stamp_id`` sorts by time (UTC stamp + random suffix)."""
    return f"access/{name}/{stamp_id}.json"


# -- drills, recovery and health (incidents/) ---------------------------------------------------
def profile_key(name: str, version: int) -> str:
    """The training-data profile written at registration (quantile bins, frequencies)."""
    return f"profiles/{name}/{version}.json"


DRILLS = "drills/"


def drill_key(run_id: str) -> str:
    """One drill's report (``run_id`` sorts by time: it starts with a UTC stamp)."""
    return f"drills/{run_id}.json"


def reproduce_key(name: str, version: int) -> str:
    """The last ``reproduce`` result of a version."""
    return f"reproduce/{name}/{version}.json"


# -- serving: compiled copies and their parity samples (serving/compiled.py) -----------------
COMPILED = "compiled/"


def compiled_key(name: str, manifest_sha256: str) -> str:
    """The record of a version's compiled copy, keyed by its manifest hash (the same files
    always compile to the same copy): the ONNX file's object id and size, the converter's
    versions and the parity figures; or why the conversion was refused."""
    return f"compiled/{name}/{manifest_sha256}.json"


def sample_key(name: str, version: int) -> str:
    """Up to a few hundred input rows recorded at registration, to check parity on."""
    return f"samples/{name}/{version}.json"


def canary_key(name: str, ramp: str) -> str:
    """When a canary ramp began (``serving.routing.ramp_id`` names it): the first serving
    replica's clock, created once, read by every replica so their ramps agree."""
    return f"serving/{name}/canary/{ramp}.json"


HEALTH_STATE = "health/state.json"  # the last state `health --notify` reported
