"""The connection to one yard's MLflow: the bound client, capped retries, errors translated.

Everything that talks to MLflow (``tracking.Tracking`` for runs and the registry,
``artifacts.Artifacts`` for a version's files) runs its operations through one
``Connection``, which translates MLflow, SQLAlchemy, HTTP and S3 errors into modelyard's own
at this edge, naming the part that failed (the tracking server, its artifact store, the S3
endpoint, the local database).

No process-wide state: the ``MlflowClient`` is bound to the yard's URIs (never
``mlflow.set_tracking_uri``) and nothing here writes ``os.environ``. Every call has capped
retries and timeouts (``timeout=..., max_retries=...``), so a dead server fails in seconds.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from modelyard.backend import schema_cache
from modelyard.core.settings import Settings
from modelyard.errors import (
    BackendError,
    ModelNotFound,
    NotFound,
    PermissionDenied,
    StorageError,
    UserError,
    YardError,
)
from modelyard.store.storage import redact

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from modelyard.backend.tracking_transport import Limits

T = TypeVar("T")
_log = logging.getLogger(__name__)

_BUSY_RETRIES = 8  # SQLite "database is locked": 0.05 s doubling to 1 s, about 5 s in all
_FIRST_USE_LOCK_TIMEOUT = 300.0
_BOTOCORE_UNREACHABLE = ("Could not connect to the endpoint URL", "Connect timeout on endpoint URL",
                         "Read timeout on endpoint URL")
_API_URL = re.compile(r"API request to (\S+?)(?:/api/|/ajax-api/|\s)")
_RETRIED_STATUS = re.compile(r"too many (\d{3}) error responses")
_ANSWERED_STATUS = re.compile(r"failed with error code (\d{3})|\b(\d{3}) (?:Server|Client) Error")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked" (another process holds the write lock): worth a retry."""
    for item in _chain(exc):
        text = str(item)
        if "database is locked" in text or "database table is locked" in text:
            return True
    return False


def _reason(text: str, timeout: float) -> tuple[str, bool]:
    """A short, human cause from requests/urllib3's long error text, and whether it was retried.
    """
    lowered = text.lower()
    retried = _RETRIED_STATUS.search(text)
    if retried:
        return f"HTTP {retried.group(1)}", True
    answered = _ANSWERED_STATUS.search(text)
    if answered:
        return f"HTTP {answered.group(1) or answered.group(2)}", False
    if "connection refused" in lowered or "econnrefused" in lowered:
        return "connection refused", True
    if "timed out" in lowered or "timeout" in lowered:
        return f"no answer within {timeout:g} s", True
    if any(s in lowered for s in ("name or service not known", "nameresolution",
                                   "nodename nor servname", "getaddrinfo failed",
                                   "temporary failure in name resolution")):
        return "host name not found", True
    if any(s in lowered for s in ("connection aborted", "remotedisconnected",
                                   "connection reset", "connection broken")):
        return "connection dropped", True
    if "certificate" in lowered or "ssl" in lowered:
        return "TLS error", False
    return text[:150], False


# MLflow announces creating and migrating a database ("Creating initial MLflow database
# tables...", alembic's steps) at INFO on its own stderr handler: a library's user did not ask
# for that. While a database is first opened these loggers are held at WARNING, unless
# someone set their level (``modelyard -v`` does).
SCHEMA_LOGGERS = ("mlflow.store.db.utils", "alembic")


@contextlib.contextmanager
def quiet_schema_logs() -> Iterator[None]:
    quieted = [logger for logger in map(logging.getLogger, SCHEMA_LOGGERS)
               if logger.level == logging.NOTSET]
    for logger in quieted:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger in quieted:
            logger.setLevel(logging.NOTSET)


class Connection:
    """One yard's bound MLflow client, and the retries and error translation of every call.

    ``timeout`` is how long one attempt waits for a connection or an answer (seconds) and
    ``max_retries`` how many times a failed request is retried; the connect timeout is shared by
    all attempts, so an unreachable server fails in about ``timeout`` seconds.
    """

    def __init__(self, settings: Settings, *, timeout: float | None = None,
                 max_retries: int | None = None) -> None:
        self.settings = settings
        self.tracking_uri = settings.resolved_tracking_uri
        self.registry_uri = settings.registry_uri or self.tracking_uri
        # The settings' http_timeout / http_retries unless a caller bounds it otherwise.
        self.timeout = settings.http_timeout if timeout is None else timeout
        self.max_retries = settings.http_retries if max_retries is None else max_retries
        self._client: MlflowClient | None = None
        self._silent: tuple[float, str] | None = None  # (until, why): see ``call``

    @property
    def display_uri(self) -> str:
        """The tracking URI as it may be shown: passwords redacted."""
        return redact(self.tracking_uri)

    @property
    def limits(self) -> Limits:
        from modelyard.backend.tracking_transport import Limits

        return Limits(timeout=self.timeout, max_retries=self.max_retries)

    @property
    def client(self) -> MlflowClient:
        """An ``MlflowClient`` bound to this yard's URIs (made on first use)."""
        if self._client is None:
            self._client = self.call(self._connect, op="open the tracking store")
        return self._client

    def _connect(self) -> MlflowClient:
        from modelyard.backend.tracking_transport import BoundedClient

        if self.settings.is_embedded:
            self.settings.home_path.mkdir(parents=True, exist_ok=True)
        with self._first_use_lock() as databases, quiet_schema_logs():
            cache = self.settings.resolved_cache_dir
            created = [db for db in databases if schema_cache.seed(db, cache) or not db.exists()]
            client = BoundedClient(self.tracking_uri, self.registry_uri, self.limits)
            if self.registry_uri.startswith("sqlite:"):
                # Open the registry tables now, under the lock: the first opening migrates.
                client._get_registry_client()
            for database in created:
                schema_cache.remember(database, cache)
        return client

    @contextlib.contextmanager
    def _first_use_lock(self) -> Iterator[list[Path]]:
        """Serialise the first opening of a SQLite database between processes.

        MLflow creates and migrates the schema when it first opens a database; two processes
        doing that at once corrupt it. A ``filelock`` next to the database file makes them
        take turns (it costs a few milliseconds once per process).
        """
        databases = {self._sqlite_path(u) for u in (self.tracking_uri, self.registry_uri)}
        databases.discard(None)
        if not databases:
            yield []
            return
        from filelock import FileLock, Timeout

        with contextlib.ExitStack() as stack:
            for database in sorted(p for p in databases if p is not None):
                database.parent.mkdir(parents=True, exist_ok=True)
                lock = FileLock(str(database) + ".lock", timeout=_FIRST_USE_LOCK_TIMEOUT)
                try:
                    stack.enter_context(lock)
                except Timeout as exc:
                    raise BackendError(detail=f"{database} is being created by another process "
                                       f"(waited {_FIRST_USE_LOCK_TIMEOUT:g} s for its lock)"
                                       ) from exc
            yield sorted(p for p in databases if p is not None)

    @staticmethod
    def _sqlite_path(uri: str) -> Path | None:
        if not uri.startswith("sqlite:"):
            return None
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        if not database or database == ":memory:":
            return None
        return Path(database).absolute()

    def call(self, fn: Callable[[], T], *, name: str | None = None, op: str = "") -> T:
        """Run one MLflow operation: retry SQLite's "database is locked", translate errors.

        A server that took a request and went silent is not asked again for ``timeout``
        seconds: the verb's next calls (a registration's clean-up, say) fail at once with
        the same line, so the whole verb ends within about one ``timeout``."""
        if self._silent is not None and time.monotonic() < self._silent[0]:
            raise BackendError(detail=self._silent[1])
        attempt = 0
        while True:
            try:
                return fn()
            except YardError:
                raise
            except Exception as exc:
                if _is_busy(exc) and attempt < _BUSY_RETRIES:
                    _log.debug("database busy (%s), retry %d", op or "call", attempt + 1)
                    time.sleep(min(1.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
                    attempt += 1
                    continue
                error = self._translated(exc, name, op)
                if "no answer within" in error.message:
                    self._silent = (time.monotonic() + self.timeout,
                                    error.fields.get("detail", error.message))
                raise error from exc

    @contextlib.contextmanager
    def translate(self, *, name: str | None = None, op: str = "") -> Iterator[None]:
        """Turn MLflow / SQLAlchemy / HTTP / S3 failures into YardErrors (no retry)."""
        try:
            yield
        except YardError:
            raise
        except Exception as exc:
            raise self._translated(exc, name, op) from exc

    def _translated(self, exc: Exception, name: str | None, op: str = "") -> YardError:
        kind = type(exc).__name__
        raw = redact(str(exc)).strip()
        text = raw.splitlines()[0] if raw else kind
        doing = f" ({op})" if op else ""
        denied = self._permission_denied(exc, name, op)
        if denied is not None:
            return denied
        storage = self._storage_failure(exc, raw, doing)
        if storage is not None:
            return storage
        if kind == "MlflowException" or kind.endswith("RestException"):
            code = getattr(exc, "error_code", "")
            if code == "RESOURCE_DOES_NOT_EXIST":
                if name is not None and "Registered Model" in raw:
                    return ModelNotFound(name=name)
                return NotFound(text)
            if code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST"):
                return UserError(text)
            if "API request to" in raw or "Max retries exceeded" in raw:
                return BackendError(detail=self._unreachable(raw) + doing)
            return BackendError(detail=text[:300] + doing)
        if kind == "HTTPError" and type(exc).__module__.startswith("requests"):
            status = getattr(getattr(exc, "response", None), "status_code", None)
            return BackendError(detail=f"artifact store of the tracking server "
                                f"{redact(self.tracking_uri)} failed: HTTP {status}{doing}")
        if _is_busy(exc):
            return BackendError(detail=f"database {redact(self.tracking_uri)} stayed locked by "
                                f"other writers{doing}")
        return BackendError(detail=f"{kind}: {text[:300]}{doing}")

    def _unreachable(self, raw: str) -> str:
        """'tracking server URI unreachable: reason', naming the part the request went to."""
        match = _API_URL.search(raw)
        url = match.group(1) if match else self.tracking_uri
        part, uri = "tracking server", self.tracking_uri
        if self.registry_uri != self.tracking_uri and url.startswith(redact(self.registry_uri)):
            part, uri = "registry server", self.registry_uri
        if "mlflow-artifacts" in raw:
            part = "artifact store of the tracking server"
        reason, retried = _reason(raw, self.timeout)
        if "read timed out" in raw.lower():  # one attempt: a silent server is not asked again
            return f"{part} {redact(uri)} took the request and gave no answer within " \
                   f"{self.timeout:g} s"
        if not reason.startswith("HTTP"):
            return f"{part} {redact(uri)} unreachable: {reason} ({self.max_retries + 1} attempts)"
        attempts = f" ({self.max_retries + 1} attempts)" if retried else ""
        return f"{part} {redact(uri)} failed: {reason}{attempts}"

    def _permission_denied(self, exc: Exception, name: str | None, op: str
                           ) -> PermissionDenied | None:
        code = getattr(exc, "error_code", "")
        status = getattr(getattr(exc, "response", None), "status_code", None)
        s3_code = ""
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            s3_code = str(response.get("Error", {}).get("Code", ""))
        what = op or "this operation"
        model = f" on model '{name}'" if name else ""
        if code == "PERMISSION_DENIED" or status == 403:
            return PermissionDenied(f"permission denied: {redact(self.tracking_uri)} does not "
                                    f"allow you to {what}{model}")
        if code == "UNAUTHENTICATED" or status == 401:
            return PermissionDenied(f"not authenticated to {redact(self.tracking_uri)} (needed "
                                    f"to {what}{model}): set MLFLOW_TRACKING_USERNAME and "
                                    "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN")
        if s3_code in ("AccessDenied", "403"):
            return PermissionDenied(f"permission denied by {self._s3_endpoint()} (needed to "
                                    f"{what}{model})")
        return None

    def _s3_endpoint(self) -> str:
        endpoint = self.settings.s3_endpoint_url
        return f"S3 endpoint {redact(endpoint)}" if endpoint else "AWS S3"

    def _storage_failure(self, exc: Exception, raw: str, doing: str) -> StorageError | None:
        """botocore/boto3 errors (artifacts on s3://) name the S3 endpoint, not the server."""
        for item in _chain(exc):
            module = type(item).__module__
            if not module.startswith(("botocore", "boto3", "s3transfer")):
                continue
            kind = type(item).__name__
            if kind == "NoCredentialsError":
                return StorageError(detail=f"no AWS credentials found for {self._s3_endpoint()}"
                                    f"{doing}")
            if kind == "ClientError":
                code = getattr(item, "response", {}).get("Error", {}).get("Code", "?")
                return StorageError(detail=f"{self._s3_endpoint()} refused ({code}){doing}")
            return StorageError(detail=f"{self._s3_endpoint()} unreachable ({kind}){doing}")
        # MLflow's parallel downloads report their failures as text only.
        if any(s in raw for s in _BOTOCORE_UNREACHABLE):
            return StorageError(detail=f"{self._s3_endpoint()} unreachable{doing}")
        return None

    def health(self, timeout: float = 5.0) -> tuple[bool, str]:
        """For a server: GET /health. For the embedded store: open the database."""
        if self.tracking_uri.startswith(("http://", "https://")):
            import base64
            import urllib.error
            import urllib.request
            from urllib.parse import unquote, urlsplit, urlunsplit

            parts = urlsplit(self.tracking_uri.rstrip("/"))
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            url = urlunsplit((parts.scheme, netloc, parts.path + "/health", "", ""))
            request = urllib.request.Request(url)
            if parts.username is not None:  # credentials in the URI: basic auth, not the URL
                pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
                request.add_header("Authorization",
                                   "Basic " + base64.b64encode(pair.encode()).decode())
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    body = response.read(100).decode(errors="replace").strip()
                    return response.status == 200, f"HTTP {response.status} {body}"
            except urllib.error.HTTPError as exc:
                return False, f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                return False, f"unreachable: {reason}"
        try:
            self.call(lambda: self.client.search_experiments(max_results=1))
            return True, "database opens"
        except YardError as exc:
            return False, exc.message
