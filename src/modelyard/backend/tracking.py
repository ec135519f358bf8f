"""The one module that talks to MLflow (tracking server or embedded SQLite store).

It normalises what MLflow returns (versions are int here, whatever the store) and translates
MLflow, SQLAlchemy, HTTP and S3 errors into modelyard's own at this edge, naming the part that
failed (the tracking server, its artifact store, the S3 endpoint, the local database).

No process-wide state: the ``MlflowClient`` is bound to the yard's URIs (never
``mlflow.set_tracking_uri``), downloads resolve ``models:/`` and ``runs:/`` URIs through that
client, and nothing here writes ``os.environ``. Every call has capped retries and timeouts
(``Tracking(settings, timeout=..., max_retries=...)``), so a dead server fails in seconds.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from modelyard.core.names import STATUS_PENDING, T_STATUS, mlflow_stage
from modelyard.core.records import (
    SEARCH_PAGE_MAX,
    ModelRecord,
    VersionRecord,
    search_filter,
    version_from_mlflow,
)
from modelyard.core.settings import Settings
from modelyard.errors import (
    BackendError,
    InvalidInput,
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
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

    from modelyard.backend.tracking_transport import Limits

__all__ = ["ModelRecord", "Tracking", "VersionRecord", "redact"]

T = TypeVar("T")
_log = logging.getLogger(__name__)

_BUSY_RETRIES = 8  # SQLite "database is locked": 0.05 s doubling to 1 s, about 5 s in all
_FIRST_USE_LOCK_TIMEOUT = 300.0
_BOTOCORE_UNREACHABLE = ("Could not connect to the endpoint URL", "Connect timeout on endpoint URL",
                         "Read timeout on endpoint URL")
_API_URL = re.compile(r"API request to (\S+?)(?:/api/|/ajax-api/|\s)")
_RETRIED_STATUS = re.compile(r"too many (\d{3}) error responses")
_ANSWERED_STATUS = re.compile(r"failed with error code (\d{3})|\b(\d{3}) (?:Server|Client) Error")


def _version_record(mv: Any) -> VersionRecord:
    return version_from_mlflow(mv)


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


class Tracking:
    """Thin, typed access to MLflow's tracking and registry APIs.

    ``timeout`` is how long one attempt waits for a connection or an answer (seconds) and
    ``max_retries`` how many times a failed request is retried; the connect timeout is shared by
    all attempts, so an unreachable server fails in about ``timeout`` seconds.
    """

    def __init__(self, settings: Settings, *, timeout: float = 10.0, max_retries: int = 2
                 ) -> None:
        self.settings = settings
        self.tracking_uri = settings.resolved_tracking_uri
        self.registry_uri = settings.registry_uri or self.tracking_uri
        self.timeout = timeout
        self.max_retries = max_retries
        self._client: MlflowClient | None = None
        self._experiment_ids: dict[str, str] = {}
        self._model_locations: dict[str, str] = {}
        self._s3: Any = None

    # -- plumbing -------------------------------------------------------------------------
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
            self._client = self._call(self._connect, op="open the tracking store")
        return self._client

    def _connect(self) -> MlflowClient:
        from modelyard.backend.tracking_transport import BoundedClient

        if self.settings.is_embedded:
            self.settings.home_path.mkdir(parents=True, exist_ok=True)
        with self._first_use_lock():
            client = BoundedClient(self.tracking_uri, self.registry_uri, self.limits)
            if self.registry_uri.startswith("sqlite:"):
                # Open the registry tables now, under the lock: the first opening migrates.
                client._get_registry_client()
        return client

    @contextlib.contextmanager
    def _first_use_lock(self) -> Iterator[None]:
        """Serialise the first opening of a SQLite database between processes.

        MLflow creates and migrates the schema when it first opens a database; two processes
        doing that at once corrupt it. A ``filelock`` next to the database file makes them
        take turns (it costs a few milliseconds once per process).
        """
        databases = {self._sqlite_path(u) for u in (self.tracking_uri, self.registry_uri)}
        databases.discard(None)
        if not databases:
            yield
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
            yield

    @staticmethod
    def _sqlite_path(uri: str) -> Path | None:
        if not uri.startswith("sqlite:"):
            return None
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        if not database or database == ":memory:":
            return None
        return Path(database).absolute()

    def _call(self, fn: Callable[[], T], *, name: str | None = None, op: str = "") -> T:
        """Run one MLflow operation: retry SQLite's "database is locked", translate errors."""
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
                raise self._translated(exc, name, op) from exc

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
            self._call(lambda: self.client.search_experiments(max_results=1))
            return True, "database opens"
        except YardError as exc:
            return False, exc.message

    # -- experiments and runs -------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        if name in self._experiment_ids:
            return self._experiment_ids[name]

        def find_or_create() -> str:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None:
                return str(experiment.experiment_id)
            try:
                return str(self.client.create_experiment(
                    name, artifact_location=self.settings.resolved_artifact_location))
            except Exception:
                experiment = self.client.get_experiment_by_name(name)  # created meanwhile
                if experiment is None:
                    raise
                return str(experiment.experiment_id)

        exp_id = self._call(find_or_create, op=f"open experiment '{name}'")
        self._experiment_ids[name] = exp_id
        return exp_id

    def create_run(self, experiment: str, run_name: str | None, tags: dict[str, str]) -> str:
        exp_id = self.experiment_id(experiment)
        run = self._call(lambda: self.client.create_run(exp_id, run_name=run_name, tags=tags),
                         op="create a run")
        return str(run.info.run_id)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self._call(lambda: self.client.set_terminated(run_id, status=status), op="end a run")

    def delete_run(self, run_id: str) -> None:
        self._call(lambda: self.client.delete_run(run_id), op="delete a run")

    def log_batch(
        self,
        run_id: str,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        *,
        fresh_run: bool = False,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        existing = self.get_run(run_id)["params"] if params and not fresh_run else {}
        self._call(lambda: self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[
                Param(k, str(v))
                for k, v in (params or {}).items()
                if existing.get(k) is None  # MLflow params are write-once per run
            ],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        ), op="log to a run")

    def get_run(self, run_id: str) -> dict[str, Any]:
        run = self._call(lambda: self.client.get_run(run_id), op="read a run")
        return {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
            "artifact_uri": run.info.artifact_uri,
            "metrics": dict(run.data.metrics),
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
        }

    # -- logged models (MLflow 3) ---------------------------------------------------------
    def create_logged_model(
        self, experiment: str, run_id: str, flavor: str, params: dict[str, str]
    ) -> tuple[str, str]:
        """Create a LoggedModel; returns (model_id, artifact_location)."""
        exp_id = self.experiment_id(experiment)
        model = self._call(lambda: self.client.create_logged_model(
            exp_id, name="model", source_run_id=run_id, params=params, model_type=flavor
        ), op="create a logged model")
        model_id, location = str(model.model_id), str(model.artifact_location)
        self._model_locations[model_id] = location
        return model_id, location

    def upload_logged_model(self, model_id: str, run_id: str, local_dir: Path) -> None:
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        location = self._model_locations.get(model_id) or self._call(
            lambda: str(self.client.get_logged_model(model_id).artifact_location),
            op="read a logged model")
        self._call(lambda: self._repository(location).log_artifacts(str(local_dir)),
                   op="upload the model's files")
        self._call(lambda: self.client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)]),
                   op="link the model to its run")
        self._call(lambda: self.client.finalize_logged_model(model_id, LoggedModelStatus.READY),
                   op="finalize a logged model")

    def fail_logged_model(self, model_id: str) -> None:
        from mlflow.entities import LoggedModelStatus

        with contextlib.suppress(Exception):
            self.client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)

    def logged_model_of(self, uri: str) -> tuple[str | None, str | None]:
        """For a ``models:/m-...`` or ``runs:/RUN/path`` URI: (model_id, run_id)."""
        if uri.startswith("models:/m-"):
            model = self._call(lambda: self.client.get_logged_model(uri.removeprefix("models:/")),
                               op="read a logged model")
            return str(model.model_id), model.source_run_id
        if uri.startswith("runs:/"):
            run_id = uri.removeprefix("runs:/").split("/", 1)[0]
            self._call(lambda: self.client.get_run(run_id), op="read a run")
            return None, run_id
        raise UserError(f"not an MLflow model URI: {uri!r} (expected models:/m-... or runs:/...)")

    # -- registry -------------------------------------------------------------------------
    def ensure_registered_model(self, name: str, description: str | None = None) -> bool:
        """Create the registered model unless it exists; True when this call created it."""
        def ensure() -> bool:
            try:
                self.client.get_registered_model(name)
                return False
            except Exception as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
            try:
                self.client.create_registered_model(name, description=description)
                return True
            except Exception as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
            return False

        return bool(self._call(ensure, name=name, op="create the registered model"))

    def delete_model_if_empty(self, name: str) -> bool:
        """Delete a registered model that has no versions (debris of a failed attempt)."""
        escaped = name.replace("'", "\\'")

        def delete() -> bool:
            if list(self.client.search_model_versions(f"name = '{escaped}'", max_results=1)):
                return False
            self.client.delete_registered_model(name)
            return True

        return bool(self._call(delete, name=name, op="delete the empty model"))

    @staticmethod
    def _model_record(model: Any) -> ModelRecord:
        return ModelRecord(
            name=model.name,
            description=model.description or "",
            created_ms=int(model.creation_timestamp or 0),
            updated_ms=int(model.last_updated_timestamp or 0),
            tags=dict(model.tags or {}),
            aliases={k: int(v) for k, v in (model.aliases or {}).items()},
        )

    def get_model(self, name: str) -> ModelRecord:
        model = self._call(lambda: self.client.get_registered_model(name), name=name,
                           op="read the model")
        return self._model_record(model)

    def list_models(self) -> list[ModelRecord]:
        def every() -> list[ModelRecord]:
            records: list[ModelRecord] = []
            token: str | None = None
            while True:
                page = self.client.search_registered_models(max_results=1000, page_token=token)
                records.extend(self._model_record(model) for model in page)
                token = page.token
                if not token:
                    return records

        return self._call(every, op="list models")

    def create_version(
        self,
        name: str,
        source: str,
        run_id: str | None,
        tags: dict[str, str],
        description: str | None,
        model_id: str | None,
    ) -> VersionRecord:
        mv = self._call(lambda: self.client.create_model_version(
            name, source, run_id=run_id, tags=tags, description=description,
            await_creation_for=0, model_id=model_id,
        ), name=name, op="create a version")
        return _version_record(mv)

    def versions(self, name: str, *, with_aliases: bool = True) -> list[VersionRecord]:
        """Every version of a model, oldest first, with tags (and aliases unless not needed)."""
        escaped = name.replace("'", "\\'")

        def every() -> list[VersionRecord]:
            records: list[VersionRecord] = []
            token: str | None = None
            while True:
                page = self.client.search_model_versions(
                    f"name = '{escaped}'", max_results=SEARCH_PAGE_MAX, page_token=token,
                    order_by=["version_number ASC"],  # pages stay put while tags change
                )
                records.extend(_version_record(mv) for mv in page)
                token = page.token
                if not token:
                    break
            if not records:
                self.client.get_registered_model(name)  # raises ModelNotFound if absent
            return records

        records = self._call(every, name=name, op="list versions")
        if not with_aliases:
            return sorted(records, key=lambda r: r.version)
        aliases = self._aliases(name, records)
        for record in records:
            record.aliases = sorted(a for a, v in aliases.items() if v == record.version)
        return sorted(records, key=lambda r: r.version)

    def _aliases(self, name: str, records: list[VersionRecord]) -> dict[str, int]:
        # search_model_versions omits aliases on some stores; the registered model has them.
        found = {alias: r.version for r in records for alias in r.aliases}
        if found or not records:
            return found
        return self.get_model(name).aliases

    # -- bounded searches (the write paths' look-ups; O(1) in the number of versions) -------
    def search_versions(self, name: str, *, tag: tuple[str, str] | None = None,
                        below: int | None = None, limit: int = 100) -> list[VersionRecord]:
        """At most ``limit`` versions, newest first, pending ones too: those numbered below
        ``below`` and tagged ``key == value`` when given (one indexed search, aliases left
        out; an absent model: [])."""
        text = search_filter(name, tag=tag, below=below)
        size = max(1, min(int(limit), SEARCH_PAGE_MAX))
        page = self._call(lambda: self.client.search_model_versions(
            text, max_results=size, order_by=["version_number DESC"]), name=name,
            op="search versions")
        records = [_version_record(mv) for mv in page]
        for record in records:
            record.aliases = []
        return records

    def _newest_visible(self, name: str, tag: tuple[str, str] | None) -> VersionRecord | None:
        below: int | None = None
        size = 4
        while True:
            page = self.search_versions(name, tag=tag, below=below, limit=size)
            found = next((r for r in page if r.tags.get(T_STATUS) != STATUS_PENDING), None)
            if found is not None:
                return self.get_version(name, found.version)  # with its aliases
            if len(page) < size:
                self.get_model(name)  # ModelNotFound if the model itself is absent
                return None
            below, size = page[-1].version, min(size * 4, SEARCH_PAGE_MAX)

    def version_by_tag(self, name: str, key: str, value: str) -> VersionRecord | None:
        """The newest visible (not pending) version with tag ``key == value``, with aliases."""
        return self._newest_visible(name, (key, value))

    def latest_visible(self, name: str) -> VersionRecord | None:
        """The newest version whose ``modelyard.status`` is not ``pending``, with aliases."""
        return self._newest_visible(name, None)

    def count_visible(self, name: str) -> int:
        """How many versions are not pending. MLflow's client has no count: it pages through
        the versions (the lean reader counts with a few probes when it answers instead)."""
        return sum(1 for v in self.versions(name, with_aliases=False)
                   if v.tags.get(T_STATUS) != STATUS_PENDING)

    def get_version(self, name: str, version: int) -> VersionRecord:
        mv = self._call(lambda: self.client.get_model_version(name, str(version)), name=name,
                        op=f"read version {version}")
        return _version_record(mv)

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        def tag(key: str, value: str) -> Callable[[], None]:
            return lambda: self.client.set_model_version_tag(name, str(version), key, str(value))

        for key, value in tags.items():
            self._call(tag(key, value), name=name, op=f"tag version {version}")

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        self._call(lambda: self.client.delete_model_version_tag(name, str(version), key),
                   name=name, op=f"untag version {version}")

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._call(lambda: self.client.set_registered_model_alias(name, alias, str(version)),
                   name=name, op=f"set alias '{alias}'")

    def delete_alias(self, name: str, alias: str) -> None:
        self._call(lambda: self.client.delete_registered_model_alias(name, alias), name=name,
                   op=f"delete alias '{alias}'")

    def alias_holder(self, name: str, alias: str) -> int | None:
        def holder() -> int | None:
            try:
                return int(self.client.get_model_version_by_alias(name, alias).version)
            except Exception as exc:
                if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND",
                                                       "INVALID_PARAMETER_VALUE"):
                    return None
                raise

        return self._call(holder, name=name, op=f"read alias '{alias}'")

    def set_stage_field(self, name: str, version: int, stage: str) -> None:
        """Mirror modelyard's stage into MLflow's (deprecated) stage field.

        ``models:/NAME/Production`` URIs and the MLflow UI's "Stage" column read that field.
        Other versions keep theirs (modelyard moves them itself).
        """
        value = mlflow_stage(stage)

        def transition() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # the stage API is deprecated
                self.client.transition_model_version_stage(
                    name, str(version), value, archive_existing_versions=False)

        self._call(transition, name=name, op=f"set the stage field of version {version}")

    def delete_version(self, name: str, version: int) -> None:
        self._call(lambda: self.client.delete_model_version(name, str(version)), name=name,
                   op=f"delete version {version}")

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._call(lambda: self.client.set_registered_model_tag(name, key, value), name=name,
                   op="tag the model")

    # -- artifacts ------------------------------------------------------------------------
    def _repository(self, location: str) -> ArtifactRepository:
        """The artifact repository for a concrete location, bounded and bound to this yard."""
        from modelyard.backend.tracking_transport import artifact_repository

        return artifact_repository(location, self.tracking_uri, self.registry_uri, self.limits,
                                   self._s3_client)

    def _s3_client(self) -> Any:
        """One fail-fast S3 client per Tracking, for artifacts on s3:// (made on first use)."""
        if self._s3 is None:
            from mlflow.environment_variables import MLFLOW_S3_IGNORE_TLS

            from modelyard.store.s3 import s3_client

            self._s3 = s3_client(self.settings.s3_endpoint_url, timeout=self.timeout,
                                 max_retries=self.max_retries,
                                 verify=False if MLFLOW_S3_IGNORE_TLS.get() else None)
        return self._s3

    def _resolve(self, uri: str) -> tuple[str, str, str]:
        """(concrete location, path inside it, subfolder of the destination) for a URI.

        ``models:/`` and ``runs:/`` URIs are resolved through this yard's client: MLflow's own
        resolution of them reads the process-wide tracking URI.
        """
        if uri.startswith("models:"):
            from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
            from mlflow.store.artifact.utils.models import get_model_name_and_version

            base, path = ModelsArtifactRepository.split_models_uri(uri)
            found = get_model_name_and_version(self.client, base)
            if len(found) == 1:
                location = self.client.get_logged_model(found[0]).artifact_location
            else:
                location = self.client.get_model_version_download_uri(found[0], found[1])
            return str(location), path, ""
        if uri.startswith("runs:"):
            from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

            run_id, path = RunsArtifactRepository.parse_runs_uri(uri)
            run = self.client.get_run(run_id)
            head, _, rest = (path or "").partition("/")
            model = self._logged_model_named(run.info.experiment_id, run_id, head) if head else None
            if model is not None:  # MLflow 3 keeps a run's models as logged models
                return str(model.artifact_location), rest, head
            return str(run.info.artifact_uri), path or "", ""
        from mlflow.tracking.artifact_utils import _get_root_uri_and_artifact_path

        root, path = _get_root_uri_and_artifact_path(uri)
        return str(root), str(path or ""), ""

    def _logged_model_named(self, experiment_id: str, run_id: str, name: str) -> Any:
        escaped = name.replace("'", "\\'")
        token: str | None = None
        while True:
            page = self.client.search_logged_models(
                experiment_ids=[experiment_id], filter_string=f"name = '{escaped}'",
                page_token=token)
            for model in page:
                if model.source_run_id == run_id:
                    return model
            token = page.token
            if not token:
                return None

    def download(self, uri: str, dest: Path) -> Path:
        """Download a model's artifacts (models:/..., runs:/..., or a store URI) to dest."""

        def fetch() -> Path:
            location, path, subfolder = self._resolve(uri)
            target = dest / subfolder if subfolder else dest
            target.mkdir(parents=True, exist_ok=True)
            self._download_tree(self._repository(location), path, target)
            return target / path if path else target

        return self._call(fetch, op=f"download {redact(uri)}")

    @staticmethod
    def _download_tree(repository: ArtifactRepository, path: str, target: Path) -> None:
        """Download ``path`` (a file or a folder, "" for all) of a repository into ``target``.

        The same parallel, per-file transfer as MLflow's ``download_artifacts``, without its
        tqdm bars: the library never prints, and MLflow only turns them off through a
        process-wide environment variable. A listed path that would land outside ``target``
        is refused.
        """
        from concurrent.futures import ThreadPoolExecutor

        root = target.resolve()
        if path and not repository._is_directory(path):
            files = [path]
        else:
            files = []
            for info in Tracking._walk(repository, path or None):
                local = (root / info.path).resolve()
                if not local.is_relative_to(root):
                    raise InvalidInput(f"artifact path {info.path!r} leaves the destination")
                if info.is_dir:
                    local.mkdir(parents=True, exist_ok=True)
                else:
                    files.append(info.path)

        def one(rel: str) -> None:
            local = root / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            repository._download_file(rel, str(local))

        with ThreadPoolExecutor(max_workers=min(8, max(1, len(files)))) as pool:
            for _ in pool.map(one, files):
                pass

    def delete_artifacts(self, location: str) -> None:
        """Delete every file under an artifact location (a version's logged-model folder).

        MLflow's own garbage collection leaves a deleted version's files behind; retention
        (``cleanup --delete``) calls this. ``file://`` folders are removed directly, other
        schemes (``mlflow-artifacts:``, ``s3://``) through MLflow's artifact repository.
        """
        from urllib.parse import unquote, urlparse

        parsed = urlparse(location)
        if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a path (or C:\...)
            import shutil

            path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(location)
            with self.translate(op="delete a version's files"):
                if path.exists():
                    shutil.rmtree(path)
            return
        self._call(lambda: self._repository(location).delete_artifacts(),
                   op="delete a version's files")

    def put_artifacts(self, location: str, local_dir: Path) -> None:
        """Upload every file under ``local_dir`` into an artifact location, over what is there
        (recovery puts a version's verified files back; drills damage them on purpose)."""
        self._call(lambda: self._repository(location).log_artifacts(str(local_dir)),
                   op="write a version's files")

    def artifact_location(self, record: VersionRecord) -> str:
        """Where the version's files really live (s3://..., file://...)."""
        if record.model_id:
            model_id = record.model_id
            with contextlib.suppress(YardError):
                return self._call(
                    lambda: str(self.client.get_logged_model(model_id).artifact_location))
        with contextlib.suppress(YardError):
            return self._call(lambda: str(self.client.get_model_version_download_uri(
                record.name, str(record.version))))
        return record.source

    # -- artifact files, one by one (verify_all / repair) ---------------------------------
    @staticmethod
    def local_artifact_root(location: str) -> Path | None:
        """The folder of a ``file://`` (or plain path) artifact location, else None."""
        from urllib.parse import unquote, urlparse

        parsed = urlparse(location)
        if parsed.scheme == "file":
            return Path(unquote(parsed.path))
        if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or C:\...)
            return Path(location)
        return None

    def artifact_files(self, location: str) -> dict[str, int | None]:
        """Every file under an artifact location, recursively: relative path -> size (None
        when the store does not say). A location that does not exist has no files."""
        root = self.local_artifact_root(location)
        if root is not None:
            with self.translate(op="list a version's files"):
                if not root.is_dir():
                    return {}
                return {p.relative_to(root).as_posix(): p.stat().st_size
                        for p in root.rglob("*") if p.is_file()}

        def walk() -> dict[str, int | None]:
            return {info.path: info.file_size
                    for info in self._walk(self._repository(location), None) if not info.is_dir}

        return self._call(walk, op="list a version's files")

    @staticmethod
    def _walk(repository: ArtifactRepository, folder: str | None) -> Iterator[Any]:
        """Every entry (folders too) under ``folder`` of a repository, depth first."""
        folders = [folder]
        while folders:
            for info in repository.list_artifacts(folders.pop()):
                yield info
                if info.is_dir:
                    folders.append(info.path)

    def fetch_artifact(self, location: str, rel_path: str, local: Path) -> None:
        """Download one file of an artifact location to ``local``."""
        local.parent.mkdir(parents=True, exist_ok=True)
        self._call(lambda: self._repository(location)._download_file(rel_path, str(local)),
                   op=f"download {rel_path}")

    def put_artifact(self, location: str, rel_path: str, local_file: Path) -> None:
        """Write one file into an artifact location at ``rel_path`` (replacing what is there),
        through MLflow's artifact repository for that location (``repair``)."""
        import posixpath
        import shutil
        import tempfile

        folder, _, base = rel_path.rpartition("/")
        if not base or ".." in rel_path.split("/") or rel_path.startswith("/"):
            raise InvalidInput(f"unsafe artifact path {rel_path!r}")
        with tempfile.TemporaryDirectory(prefix="modelyard-put-") as tmp:
            # The repository names the file after the local file: give it the right name.
            named = Path(tmp) / base
            if local_file.name == base:
                named = local_file
            else:
                shutil.copyfile(local_file, named)
            self._call(lambda: self._repository(location).log_artifact(
                str(named), posixpath.normpath(folder) if folder else None),
                op=f"upload {rel_path}")
