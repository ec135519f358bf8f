"""Object storage: a local folder or an S3 bucket, behind one small interface.

This is the only module that talks to boto3. Errors from botocore and the filesystem are
translated into ``StorageError`` here, with credentials never part of the message.

>>> store = open_store("/tmp/vault")
>>> store.put_bytes("objects/ab/cd", b"hello")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from modelyard.errors import StorageError

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_s3 import S3Client


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

    def list(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def put_file(self, key: str, path: Path) -> None:
        self.put_bytes(key, path.read_bytes())

    def get_file(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.get_bytes(key))

    def check(self) -> None:
        """Raise StorageError when the store cannot be reached."""
        self.list("")


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
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half an object.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        with self._translate(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            try:
                os.link(tmp, path)  # atomic, fails if the name exists
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        with self._translate(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            os.close(fd)
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)

    def get_bytes(self, key: str) -> bytes:
        with self._translate(key):
            return self._path(key).read_bytes()

    def get_file(self, key: str, path: Path) -> None:
        with self._translate(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._path(key), path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.root
        if not base.exists():
            return []
        keys = []
        with self._translate(prefix):
            for path in base.rglob("*"):
                if path.is_file() and not path.name.startswith(".tmp-"):
                    key = path.relative_to(base).as_posix()
                    if key.startswith(prefix):
                        keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError), self._translate(key):
            self._path(key).unlink()

    def check(self) -> None:
        with self._translate(""):
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StorageError(detail=f"{self.root} is not writable")


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client: S3Client | None = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            )
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _translate(self, key: str) -> Iterator[None]:
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
                raise StorageError(detail=f"bucket '{self.bucket}' does not exist") from exc
            raise StorageError(detail=f"{key}: S3 refused ({code}) at {self.url}") from exc
        except BotoCoreError as exc:
            endpoint = self.endpoint_url or "AWS S3"
            raise StorageError(
                detail=f"S3 endpoint {endpoint} unreachable ({type(exc).__name__})"
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

    def put_file(self, key: str, path: Path) -> None:
        with self._translate(key):
            self.client.upload_file(str(path), self.bucket, self._key(key))

    def get_bytes(self, key: str) -> bytes:
        with self._translate(key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            body: bytes = response["Body"].read()
            return body

    def get_file(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._translate(key):
            self.client.download_file(self.bucket, self._key(key), str(path))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        with self._translate(key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise

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


def split_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    return parsed.netloc, parsed.path.lstrip("/")


def open_store(url: str, *, endpoint_url: str | None = None) -> ObjectStore:
    """Open a store from a URL: a path or file:// URL, or s3://bucket/prefix."""
    if url.startswith("s3://"):
        bucket, prefix = split_s3_url(url)
        if not bucket:
            raise StorageError(detail=f"no bucket in {url!r}")
        return S3Store(bucket, prefix, endpoint_url)
    if url.startswith("file://"):
        return LocalStore(Path(urlparse(url).path))
    if "://" in url:
        raise StorageError(detail=f"unsupported storage URL scheme in {url!r} (use a path or s3://)")
    return LocalStore(Path(url).expanduser().absolute())


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file whole or not at all: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def copy_tree_safely(src: Path, dest: Path | None, *, follow_links: bool = False) -> None:
    """Copy a folder's files into ``dest`` (which must not exist), never a link.

    A symlink whose target lies outside ``src`` is refused with ``InvalidInput``, unless
    ``follow_links``, which copies the target's content instead. With ``dest=None`` only the
    check runs (so a caller can refuse before creating anything).
    """
    from modelyard.errors import InvalidInput

    root = src.resolve()
    if not root.is_dir():
        raise InvalidInput(f"{src} is not a folder")
    plan: list[tuple[Path, Path]] = []
    for folder, dirs, files in os.walk(src, followlinks=False):
        here = Path(folder)
        for entry in [*dirs, *files]:
            path = here / entry
            rel = path.relative_to(src)
            if path.is_symlink():
                target = path.resolve()
                if not (target == root or root in target.parents) and not follow_links:
                    raise InvalidInput(
                        f"{rel} is a symlink pointing outside {src}; refused (copy the file "
                        "in, or pass --follow-links to copy its target's content)")
                if not target.exists():
                    raise InvalidInput(f"{rel} is a broken symlink")
                if target.is_dir():
                    for inner in sorted(p for p in target.rglob("*") if p.is_file()):
                        plan.append((inner, rel / inner.relative_to(target)))
                    continue
                plan.append((target, rel))
            elif path.is_file():
                plan.append((path, rel))
    if dest is None:
        return
    dest.mkdir(parents=True)
    for source, rel in plan:
        target_path = dest / rel
        target_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target_path)
