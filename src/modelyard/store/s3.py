"""Object storage on S3: a bucket (and a key prefix in it) on AWS or an S3-compatible endpoint.

This is the only module that talks to boto3. botocore's errors are translated into
``StorageError`` here, with credentials never part of the message; ``whole_store=True`` in
its fields marks a failure of the store itself (unreachable, no bucket, no credentials, a 5xx
answer), which a caller going through many keys stops at, rather than one key's. Every S3
client it makes has capped retries and timeouts, so a dead endpoint fails in seconds and the
error names the endpoint. ``storage.open_store`` opens an ``S3Store`` for an ``s3://`` URL.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import StorageError
from modelyard.store.files import HASH_CHUNK, Progress
from modelyard.store.storage import ObjectStore, redact

if TYPE_CHECKING:  # pragma: no cover
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

_MULTIPART_THRESHOLD = 8 * 1024 * 1024
_CLIENT_LOCK = threading.Lock()
_POOL = 32  # connections per S3 client: files in parallel, each in parallel parts


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
        client = session.client("s3", endpoint_url=endpoint_url, config=config, verify=verify)
    else:
        client = boto3.client("s3", endpoint_url=endpoint_url, config=config, verify=verify)
    client.meta.events.register_first("needs-retry.s3", _no_retry_after_silence)
    return client


def _no_retry_after_silence(caught_exception: BaseException | None = None,
                            **_: Any) -> None:
    """botocore retries a read timeout like any transient error: an endpoint that took the
    request and went silent would cost every attempt's full timeout. Raised at once instead
    (the other retries stay botocore's)."""
    from botocore.exceptions import ReadTimeoutError

    if isinstance(caught_exception, ReadTimeoutError):
        raise caught_exception


def _transfer_config() -> TransferConfig:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=_MULTIPART_THRESHOLD,
        multipart_chunksize=_MULTIPART_THRESHOLD,
        max_concurrency=4,
    )


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
        self._silent_until = 0.0  # after a read timeout: the next calls fail at once a while
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

        if time.monotonic() < self._silent_until:
            raise StorageError(detail=f"S3 endpoint {self.endpoint} gave no answer within "
                               f"{self.timeout:g} s", whole_store=True)
        try:
            yield
        except NoCredentialsError as exc:
            raise StorageError(detail=f"no AWS credentials found for {self.url}",
                               whole_store=True) from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise StorageError(detail=f"{key}: not found in {self.url}") from exc
            if code == "NoSuchBucket":
                raise StorageError(
                    detail=f"bucket '{self.bucket}' does not exist at {self.endpoint}",
                    whole_store=True) from exc
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            raise StorageError(
                detail=f"{key}: S3 refused ({code}) at {self.url} ({self.endpoint})",
                whole_store=int(status or 0) >= 500,
            ) from exc
        except BotoCoreError as exc:
            if type(exc).__name__ == "ReadTimeoutError":  # the verb's next calls fail at once
                self._silent_until = time.monotonic() + self.timeout
                raise StorageError(detail=f"S3 endpoint {self.endpoint} took the request and "
                                   f"gave no answer within {self.timeout:g} s",
                                   whole_store=True) from exc
            raise StorageError(
                detail=f"S3 endpoint {self.endpoint} unreachable ({type(exc).__name__})",
                whole_store=True) from exc
        except Boto3Error as exc:  # S3UploadFailedError wraps the cause in its text
            text = redact(str(exc)).splitlines()[0][:200]
            cause = exc.__cause__ or exc.__context__
            down = isinstance(cause, BotoCoreError) or "Could not connect" in text
            raise StorageError(detail=f"{key}: S3 transfer to {self.endpoint} failed: {text}",
                               whole_store=down) from exc

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

    def check_endpoint(self) -> None:
        """Raise the store's one-line error unless the endpoint answers (any bucket)."""
        with self._translate(""):
            self.client.list_buckets()

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

    def modified(self, prefix: str) -> dict[str, float]:
        found: dict[str, float] = {}
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._translate(prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    found[item["Key"][strip:]] = item["LastModified"].timestamp()
        return found
