"""Object storage: a local folder or an S3 bucket, behind one small interface.

This is the only module that talks to boto3. Errors from botocore and the filesystem are
translated into ``StorageError`` here, with credentials never part of the message. Every
S3 client it makes has capped retries and timeouts, so a dead endpoint fails in seconds and the
error names the endpoint.

>>> store = open_store("/tmp/vault")
>>> store.put_bytes("objects/ab/cd", b"hello")
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from modelyard.errors import StorageError
from modelyard.store.files import (
    HASH_CHUNK,
    Progress,
    atomic_copy,
    atomic_write,
    copy_hashing,
    file_chunks,
    sha256_stream,
)

if TYPE_CHECKING:  # pragma: no cover
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

_SECRET_IN_URL = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_USER_IN_URL = re.compile(r"://[^:/@\s]+@")
_MULTIPART_THRESHOLD = 8 * 1024 * 1024
_CLIENT_LOCK = threading.Lock()
_POOL = 32  # connections per S3 client: files in parallel, each in parallel parts


def redact(text: str) -> str:
    """Remove credentials embedded in URLs: ``postgresql://user:secret@host`` keeps the user,
    a lone userinfo (``http://AKIA...@host``, often a key or token) is hidden whole."""
    return _USER_IN_URL.sub("://***@", _SECRET_IN_URL.sub(r"\1***@", text))


# -- S3 clients -------------------------------------------------------------------------------
def s3_client(
    endpoint_url: str | None = None,
    *,
    timeout: float = 10.0,
    max_retries: int = 2,
    verify: bool | None = None,
    profile: str | None = None,
    pool: int = 10,
) -> S3Client:
    """A boto3 S3 client that fails fast: capped retries, connect and read timeouts.

    The connect timeout is the budget shared by every attempt, so an endpoint that drops
    packets fails in about ``timeout`` seconds, and one that refuses connections at once.
    """
    import boto3
    from botocore.config import Config

    attempts = max_retries + 1
    config = Config(
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=max(1.0, timeout / attempts),
        read_timeout=max(timeout, 1.0),
        max_pool_connections=pool,
    )
    if profile:
        session = boto3.session.Session(profile_name=profile)
        return session.client("s3", endpoint_url=endpoint_url, config=config, verify=verify)
    return boto3.client("s3", endpoint_url=endpoint_url, config=config, verify=verify)


def _transfer_config() -> TransferConfig:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=_MULTIPART_THRESHOLD,
        multipart_chunksize=_MULTIPART_THRESHOLD,
        max_concurrency=4,
    )


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
        """(key, modification time as a UNIX timestamp) of the newest object under prefix."""
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

    def newest(self, prefix: str) -> tuple[str, float] | None:
        best: tuple[str, float] | None = None
        for key in self.list(prefix):
            with contextlib.suppress(OSError):
                mtime = self._path(key).stat().st_mtime
                if best is None or mtime > best[1]:
                    best = (key, mtime)
        return best


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


class S3Store(ObjectStore):
    """A bucket (and a key prefix in it) on AWS S3 or an S3-compatible endpoint."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        endpoint_url: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        profile: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.profile = profile
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client: S3Client | None = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            with _CLIENT_LOCK:  # threads share one client (each costs ~0.1 s to build)
                return self._make_client()
        return self._client

    def _make_client(self) -> S3Client:
        if self._client is None:
            # Enough connections for parallel files, each sent in parallel parts.
            self._client = s3_client(
                self.endpoint_url, timeout=self.timeout, max_retries=self.max_retries,
                profile=self.profile, pool=_POOL,
            )
        return self._client

    def prepare(self) -> None:
        """Build the client in a background thread: importing boto3 and loading S3's service
        model cost ~0.3 s of CPU, which then overlaps the registry requests a verb sends
        before its first object-store call (the first call waits for the client, once). A
        failure here is left for that call to meet again and report."""
        if self._client is not None:
            return

        def build() -> None:
            with contextlib.suppress(Exception):
                _ = self.client

        threading.Thread(target=build, name="modelyard-s3-client", daemon=True).start()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @property
    def endpoint(self) -> str:
        """The endpoint, as it may appear in a message (no credentials)."""
        return redact(self.endpoint_url) if self.endpoint_url else "AWS S3"

    @contextlib.contextmanager
    def _translate(self, key: str) -> Iterator[None]:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except NoCredentialsError as exc:
            raise StorageError(detail=f"no AWS credentials found for {self.url}") from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise StorageError(detail=f"{key}: not found in {self.url}") from exc
            if code == "NoSuchBucket":
                raise StorageError(
                    detail=f"bucket '{self.bucket}' does not exist at {self.endpoint}"
                ) from exc
            raise StorageError(
                detail=f"{key}: S3 refused ({code}) at {self.url} ({self.endpoint})"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(
                detail=f"S3 endpoint {self.endpoint} unreachable ({type(exc).__name__})"
            ) from exc
        except Boto3Error as exc:  # S3UploadFailedError wraps the cause in its text
            text = redact(str(exc)).splitlines()[0][:200]
            raise StorageError(detail=f"{key}: S3 transfer to {self.endpoint} failed: {text}"
                               ) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._translate(key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        with self._translate(key):
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                    return False
                raise
        return True

    def put_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        with self._translate(key):
            self.client.upload_file(
                str(path), self.bucket, self._key(key),
                Callback=progress, Config=_transfer_config(),
            )

    def get_bytes(self, key: str) -> bytes:
        with self._translate(key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            body: bytes = response["Body"].read()
            return body

    def get_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        # Download beside the target and rename: an interrupted download leaves nothing.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        os.close(fd)
        try:
            with self._translate(key):
                self.client.download_file(
                    self.bucket, self._key(key), tmp,
                    Callback=progress, Config=_transfer_config(),
                )
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        with self._translate(key):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return int(head["ContentLength"])

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._translate(prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    keys.append(item["Key"][strip:])
        return sorted(keys)

    def delete(self, key: str) -> None:
        with self._translate(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def check(self) -> None:
        with self._translate(""):
            self.client.head_bucket(Bucket=self.bucket)

    def chunks(self, key: str) -> Iterator[bytes | memoryview]:
        with self._translate(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            yield from body.iter_chunks(HASH_CHUNK)

    def can_copy_from(self, other: ObjectStore) -> bool:
        return (isinstance(other, S3Store) and other.endpoint_url == self.endpoint_url
                and other.profile == self.profile)

    def copy_from(self, other: ObjectStore, source_key: str, key: str,
                  progress: Progress | None = None) -> None:
        """Copy inside S3 (multipart copy for large objects): no bytes pass through here."""
        assert isinstance(other, S3Store)
        with self._translate(key):
            self.client.copy(
                {"Bucket": other.bucket, "Key": other._key(source_key)}, self.bucket,
                self._key(key), Callback=progress, Config=_transfer_config(),
            )

    def exists_folder(self) -> bool:
        from botocore.exceptions import ClientError

        with self._translate(""):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket",
                                                                 "NotFound"):
                    return False
                raise
        return True

    def newest(self, prefix: str) -> tuple[str, float] | None:
        best: tuple[str, float] | None = None
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._translate(prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    stamp = item["LastModified"].timestamp()
                    if best is None or stamp > best[1]:
                        best = (item["Key"][strip:], stamp)
        return best


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
    """Open a store from a URL: a path or file:// URL, or s3://bucket/prefix."""
    if url.startswith("s3://"):
        bucket, prefix = split_s3_url(url)
        if not bucket:
            raise StorageError(detail=f"no bucket in {url!r}")
        return S3Store(bucket, prefix, endpoint_url, timeout=timeout, max_retries=max_retries,
                       profile=profile)
    if url.startswith("file://"):
        return LocalStore(Path(urlparse(url).path))
    if "://" in url:
        raise StorageError(detail=f"unsupported storage URL scheme in {url!r} (use a path or s3://)")
    return LocalStore(Path(url).expanduser().absolute())
