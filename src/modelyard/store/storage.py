"""Object storage: a local folder, an S3 bucket, a GCS bucket or an Azure Blob container, behind
one small interface.

``ObjectStore`` is the interface, ``LocalStore`` the folder and ``open_store`` opens either
from a URL; the S3 bucket is ``s3.S3Store``. Filesystem errors are translated into
``StorageError`` here, and ``redact`` keeps credentials out of every message that shows a URL.

>>> store = open_store("/tmp/vault")
>>> store.put_bytes("objects/ab/cd", b"hello")
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

from modelyard.errors import StorageError
from modelyard.store.files import (
    Progress,
    atomic_copy,
    atomic_write,
    copy_hashing,
    file_chunks,
    sha256_stream,
)

_SECRET_IN_URL = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_USER_IN_URL = re.compile(r"://[^:/@\s]+@")


def redact(text: str) -> str:
    """Remove credentials embedded in URLs: ``postgresql://user:secret@host`` keeps the user,
    a lone userinfo (``http://AKIA...@host``, often a key or token) is hidden whole."""
    return _USER_IN_URL.sub("://***@", _SECRET_IN_URL.sub(r"\1***@", text))


class ObjectStore:
    """A flat key space of byte objects. Keys use '/' as separator."""

    url: str

    def put_bytes(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write only if no object exists at key; True when this call created it."""
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no object at key."""
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        """Every key that starts with prefix (a plain string prefix), sorted."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove the object at key; nothing happens when there is none."""
        raise NotImplementedError

    def put_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        data = path.read_bytes()
        self.put_bytes(key, data)
        if progress is not None:
            progress(len(data))

    def get_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        data = self.get_bytes(key)
        atomic_write(path, data)
        if progress is not None:
            progress(len(data))

    def check(self) -> None:
        """Raise StorageError when the store cannot be reached."""
        self.list("")

    # -- streamed reads (backups, verify_all and repair hash objects) ------------------------
    def chunks(self, key: str) -> Iterator[bytes | memoryview]:
        """The object's bytes in chunks, never held whole in memory (this default goes through
        a temporary file; the folder and S3 stores read or stream the object itself). Raises
        ``StorageError`` ("not found") when there is no object at key."""
        with tempfile.TemporaryDirectory(prefix="modelyard-hash-") as tmp:
            path = Path(tmp) / "object"
            self.get_file(key, path)
            yield from file_chunks(path)

    def sha256(self, key: str) -> str:
        """The SHA-256 of the object at key, streamed."""
        return sha256_stream(self.chunks(key))[0]

    def local_path(self, key: str) -> Path | None:
        """The file holding the object when the store is a local folder, else None."""
        return None

    def can_copy_from(self, other: ObjectStore) -> bool:
        """Whether ``copy_from(other, ...)`` copies inside the service (no bytes through us)."""
        return False

    def copy_from(self, other: ObjectStore, source_key: str, key: str,
                  progress: Progress | None = None) -> None:
        raise NotImplementedError

    def exists_folder(self) -> bool:
        """Whether the store itself exists (the folder, or the bucket)."""
        return True

    def newest(self, prefix: str) -> tuple[str, float] | None:
        """(key, modification time as a UNIX timestamp) of the newest object under prefix:
        the newest of ``modified``'s one listing."""
        found = self.modified(prefix)
        return max(found.items(), key=lambda item: item[1]) if found else None

    def modified(self, prefix: str) -> dict[str, float]:
        """Every key under prefix with its modification time (UNIX timestamp): one listing
        (the debris check asks how old an object no manifest names is)."""
        raise NotImplementedError


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise StorageError(detail=f"key escapes the store: {key!r}")
        return path

    @contextlib.contextmanager
    def _translate(self, key: str) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError as exc:
            raise StorageError(detail=f"{key}: not found in {self.url}") from exc
        except OSError as exc:
            raise StorageError(detail=f"{key}: {exc.strerror or exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with self._translate(key):
            atomic_write(path, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        with self._translate(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.link(tmp, path)  # atomic, fails if the name exists
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)

    def put_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        target = self._path(key)
        with self._translate(key):
            atomic_copy(path, target, progress)

    def ingest(self, source: Path, key_of: Callable[[str], str]) -> tuple[str, int, Path]:
        """Copy a file in under the key its content names, hashing it while copying (one
        read): ``key_of(sha256)`` is the key. A temporary file is written first and moved into
        place, so the object always matches its key whatever happens to ``source``; an object
        already there is kept. Returns (sha256, size, the object's path)."""
        incoming = self.root / ".incoming"
        with self._translate(str(source)):
            incoming.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=incoming, prefix=".tmp-")
            os.close(fd)
            try:
                oid, size = copy_hashing(source, Path(tmp))
                target = self._path(key_of(oid))
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return oid, size, target

    def get_bytes(self, key: str) -> bytes:
        with self._translate(key):
            return self._path(key).read_bytes()

    def get_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        source = self._path(key)
        with self._translate(key):
            atomic_copy(source, path, progress)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        path = self._path(key)
        with self._translate(key):
            try:
                return path.stat().st_size if path.is_file() else None
            except FileNotFoundError:
                return None

    def list(self, prefix: str) -> list[str]:
        # Walk only the folder the prefix names; its last segment filters that folder's entries.
        folder, _, start = prefix.rpartition("/")
        base = self._path(folder) if folder else self.root
        keys: list[str] = []
        with self._translate(prefix):
            if not base.is_dir():
                return []
            lead = f"{folder}/" if folder else ""
            _walk(base, lead, start, keys)
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._translate(key):
            path.unlink(missing_ok=True)

    def check(self) -> None:
        with self._translate(""):
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StorageError(detail=f"{self.root} is not writable")

    def chunks(self, key: str) -> Iterator[bytes | memoryview]:
        path = self._path(key)
        with self._translate(key):
            yield from file_chunks(path)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def exists_folder(self) -> bool:
        return self.root.is_dir()

    def modified(self, prefix: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for key in self.list(prefix):
            with contextlib.suppress(OSError):  # removed while we looked
                found[key] = self._path(key).stat().st_mtime
        return found


def _walk(folder: Path, lead: str, start: str, keys: list[str]) -> None:
    """Collect the files under folder whose first path segment starts with ``start``."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return  # removed while we walked
    for entry in entries:
        if not entry.name.startswith(start):
            continue
        if entry.is_dir(follow_symlinks=False):
            _walk(Path(entry.path), f"{lead}{entry.name}/", "", keys)
        elif entry.is_file() and not entry.name.startswith(".tmp-"):
            keys.append(f"{lead}{entry.name}")


def split_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    return parsed.netloc, parsed.path.lstrip("/")


def open_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    timeout: float = 10.0,
    max_retries: int = 2,
    profile: str | None = None,
) -> ObjectStore:
    """Open a store from a URL: a path or file:// URL, s3://bucket/prefix (boto3), or a GCS or
    Azure Blob location (``cloud.open_cloud_store``: gs://, az://, abfs://, wasbs://)."""
    if url.startswith("s3://"):
        bucket, prefix = split_s3_url(url)
        if not bucket:
            raise StorageError(detail=f"no bucket in {url!r}")
        from modelyard.store.s3 import S3Store  # s3 builds on this module's ObjectStore

        return S3Store(bucket, prefix, endpoint_url, timeout=timeout, max_retries=max_retries,
                       profile=profile)
    if url.startswith("file://"):
        return LocalStore(Path(urlparse(url).path))
    scheme = url.partition("://")[0].lower()
    if scheme in ("gs", "az", "abfs", "abfss", "wasbs"):
        from modelyard.store.cloud import open_cloud_store  # gcsfs / adlfs, on first use

        return open_cloud_store(url, timeout=timeout)
    if "://" in url:
        raise StorageError(detail=f"unsupported storage URL scheme in {redact(url)!r} (use a "
                           "path, s3://, gs://, az://, abfs:// or wasbs://)")
    return LocalStore(Path(url).expanduser().absolute())
