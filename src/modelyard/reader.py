"""The lean read path: registry look-ups at command-line speed, without importing MLflow.

Two readers answer the same questions with the same typed records as ``tracking.py``:

- ``RestReader`` speaks MLflow's documented REST API (``/api/2.0/mlflow/...``) to a tracking
  server, honouring MLflow's own client settings (``MLFLOW_TRACKING_USERNAME`` / ``PASSWORD``,
  ``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``,
  ``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``, ``MLFLOW_WORKSPACE``,
  proxies), with capped retries and one time budget per call.
- ``SqliteReader`` reads the embedded default's SQLite file read-only, for the MLflow schema
  revisions the contract suite (``tests/test_reader_contract.py``) has proved.

``open_reader(settings)`` picks one, or returns ``None`` when neither applies (Databricks, a
direct database URI, an unknown schema revision, ...): callers then use MLflow's client.

>>> reader = open_reader(settings)                       # doctest: +SKIP
>>> reader.alias_holder("churn", "production") if reader else None  # doctest: +SKIP
3

Never imports mlflow, pandas, sklearn or boto3 (a test checks ``sys.modules``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, unquote, urlencode, urlsplit

from modelyard.errors import BackendError, ModelNotFound, NotFound, PermissionDenied, UserError
from modelyard.records import (
    SEARCH_PAGE_MAX,
    ModelRecord,
    VersionRecord,
    model_from_rest,
    model_id_from,
    run_from_rest,
    search_filter,
    version_from_rest,
)

if TYPE_CHECKING:  # pragma: no cover
    import http.client
    import ssl

    from modelyard.config import Settings

__all__ = [
    "KNOWN_SCHEMA_REVISIONS",
    "Reader",
    "RestReader",
    "SqliteReader",
    "open_reader",
]

log = logging.getLogger("modelyard.reader")

STATUS_TAG = "modelyard.status"
PENDING = "pending"
# MLflow's SQL store keeps a deleted version's row with this stage and hides it everywhere.
DELETED_STAGE = "Deleted_Internal"
# MLflow prompts are registered models with this tag; MLflow's searches leave them out.
PROMPT_TAG = "mlflow.prompt.is_prompt"
WORKSPACE = "default"  # the embedded store is single-tenant: MLflow's default workspace

# Alembic revisions of MLflow's schema that tests/test_reader_contract.py has proved this
# module reads correctly. Any other revision: open_reader returns None (MLflow's client).
KNOWN_SCHEMA_REVISIONS: frozenset[str] = frozenset({
    "dc11669786a5",  # MLflow 3.17 (add_job_executor_persistence_model)
})

_API = "/api/2.0/mlflow/"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_VERSION_PAGE = 10_000
_MODEL_PAGE = 1_000

T = TypeVar("T")


@runtime_checkable
class Reader(Protocol):
    """Read-only registry look-ups; every answer equals what ``tracking.Tracking`` gives.

    Errors: a missing model raises ``ModelNotFound`` (``get_version``: ``NotFound``); an
    unreachable backend ``BackendError``; a refused request ``UserError``.
    """

    def list_models(self) -> list[ModelRecord]:
        """Every registered model (prompts excluded), by name, with tags and aliases."""
        ...

    def get_model(self, name: str) -> ModelRecord: ...

    def get_version(self, name: str, version: int) -> VersionRecord:
        """One version with tags and aliases; deleted or absent: ``NotFound``."""
        ...

    def alias_holder(self, name: str, alias: str) -> int | None:
        """The version an alias points at; ``None`` if the alias or the model is absent."""
        ...

    def version_by_tag(self, name: str, key: str, value: str) -> VersionRecord | None:
        """The newest visible (not pending) version with tag ``key == value``, with aliases."""
        ...

    def latest_visible(self, name: str) -> VersionRecord | None:
        """The newest version whose ``modelyard.status`` is not ``pending``, with aliases."""
        ...

    def versions(self, name: str) -> list[VersionRecord]:
        """Every version (pending ones too), oldest first, with tags and aliases."""
        ...

    def count_visible(self, name: str) -> int:
        """How many versions are not pending (deleted ones never count)."""
        ...

    def search_versions(self, name: str, *, tag: tuple[str, str] | None = None,
                        below: int | None = None, limit: int = 100) -> list[VersionRecord]:
        """At most ``limit`` versions, newest first, pending ones too (deleted never): those
        numbered below ``below`` and tagged ``key == value`` when given. One bounded, indexed
        search whatever the number of versions; aliases left out; an absent model: []."""
        ...

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run as ``Tracking.get_run`` gives it: ids, times, metrics, params, tags."""
        ...

    def artifact_location(self, record: VersionRecord) -> str:
        """Where the version's files live (its logged model's artifact location)."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Choosing a reader
# --------------------------------------------------------------------------------------------


def open_reader(settings: Settings, *, environ: Mapping[str, str] | None = None
                ) -> Reader | None:
    """The lean reader for these settings, or ``None`` when MLflow's client must answer.

    ``http(s)://`` -> ``RestReader``; the embedded ``sqlite:///...`` file -> ``SqliteReader``
    when it exists and its schema revision is known; anything else -> ``None`` (the reason is
    logged at debug level).
    """
    env = os.environ if environ is None else environ
    uri = settings.resolved_tracking_uri
    registry = settings.registry_uri or uri
    if registry != uri:
        return _fallback("the registry URI differs from the tracking URI")
    scheme = uri.partition(":")[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        if env.get("MLFLOW_TRACKING_AUTH") or _truthy(env.get("MLFLOW_TRACKING_AWS_SIGV4")):
            return _fallback("MLFLOW_TRACKING_AUTH / MLFLOW_TRACKING_AWS_SIGV4 need MLflow's "
                             "auth plugins")
        return RestReader(uri, environ=env)
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is None:
            return _fallback("not a plain sqlite file URI")
        return SqliteReader.open(path)
    return _fallback(f"no lean reader for {scheme or 'this'} tracking URIs")


def _fallback(reason: str) -> Any:
    """Log why MLflow's client answers instead (debug level); returns None for the caller."""
    log.debug("lean reader not used (MLflow's client answers): %s", reason)
    return None


def sqlite_path(uri: str) -> Path | None:
    """``sqlite:////abs/mlflow.db`` -> ``/abs/mlflow.db``; in-memory or ``?...`` URIs -> None."""
    if not uri.startswith("sqlite:///") or "?" in uri:
        return None
    rest = uri[len("sqlite:///"):]
    if not rest or rest == ":memory:" or rest.startswith("file:"):
        return None
    return Path(unquote(rest))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _redact(text: str) -> str:
    # tracking.py owns the rule; imported only when a message is built (it loads pydantic).
    from modelyard.storage import redact

    return redact(text)


# --------------------------------------------------------------------------------------------
# REST
# --------------------------------------------------------------------------------------------


class _Missing(Exception):
    """A 404 / RESOURCE_DOES_NOT_EXIST answer; callers turn it into the right NotFound."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Refused(Exception):
    """An INVALID_PARAMETER_VALUE answer (HTTP 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _filter_quote(value: str) -> str:
    """A string literal for MLflow's search filter (as tracking.py quotes names)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _name_filter(name: str) -> str:
    return f"name = {_filter_quote(name)}"


def _tag_filter(key: str, value: str) -> str:
    return f"tags.`{key}` = {_filter_quote(value)}"


def _offset_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def _token_offset(token: str | None) -> int | None:
    """The offset inside an MLflow SQL-store page token, or None for any other format.

    MLflow calls the format unstable; it is used only to count versions without listing
    them, and only when a token the server issued decodes to exactly ``{"offset": n}``.
    """
    if not token:
        return None
    try:
        decoded = json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError):
        return None
    if isinstance(decoded, dict) and set(decoded) == {"offset"} and isinstance(
            decoded["offset"], int):
        return int(decoded["offset"])
    return None


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]


class RestReader:
    """Reads a tracking server through MLflow's REST API (``/api/2.0/mlflow/...``).

    ``timeout`` bounds each call, retries included: an unreachable server raises
    ``BackendError`` naming the (redacted) URI within ``timeout`` seconds. Connection failures
    and HTTP 429 / 5xx answers are retried at most ``retries`` times. Settings are read from
    ``environ`` (never written). One keep-alive connection, used under a lock.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        parts = urlsplit(tracking_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"not an http(s) tracking URI: {_redact(tracking_uri)}")
        self.tracking_uri = tracking_uri
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._base = parts.path.rstrip("/")
        self._headers = self._make_headers(parts.username, parts.password, environ)
        self._tls = self._make_tls(environ) if parts.scheme == "https" else None
        self._proxy = _proxy_for(parts.scheme, self._host, environ)
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self.requests = 0  # round trips made (the benchmark counts them)

    @property
    def _label(self) -> str:
        """The URI for messages, credentials redacted (built only when a message needs it)."""
        return _redact(self.tracking_uri)

    # -- settings -------------------------------------------------------------------------
    @staticmethod
    def _make_headers(url_user: str | None, url_password: str | None,
                      environ: Mapping[str, str]) -> dict[str, str]:
        headers = {"User-Agent": "modelyard", "Accept": "application/json"}
        file_user, file_password = _credentials_file(environ)
        username = environ.get("MLFLOW_TRACKING_USERNAME") or file_user
        password = environ.get("MLFLOW_TRACKING_PASSWORD") or file_password
        token = environ.get("MLFLOW_TRACKING_TOKEN")
        if url_user is not None:  # as requests does: credentials in the URL win
            username, password = unquote(url_user), unquote(url_password or "")
            basic: str | None = f"{username}:{password}"
        else:
            basic = f"{username}:{password}" if username and password else None
        if basic is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        workspace = (environ.get("MLFLOW_WORKSPACE") or "").strip()
        if workspace:
            headers["X-MLFLOW-WORKSPACE"] = workspace
        return headers

    def _make_tls(self, environ: Mapping[str, str]) -> ssl.SSLContext:
        import ssl

        server_cert = environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
        client_cert = environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
        try:
            if server_cert:  # as MLflow: a server certificate path wins over INSECURE_TLS
                context = ssl.create_default_context(cafile=server_cert)
            elif _truthy(environ.get("MLFLOW_TRACKING_INSECURE_TLS")):
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context()
            if client_cert:
                context.load_cert_chain(client_cert)
        except (OSError, ssl.SSLError) as exc:
            raise UserError(f"TLS settings for {self._label} unusable: "
                            f"{type(exc).__name__}: {_first_line(str(exc), 200)}") from None
        return context

    # -- transport ------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> RestReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        import http.client

        if self._conn is not None:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
            return self._conn
        conn: http.client.HTTPConnection
        if self._proxy is None:
            if self._scheme == "https":
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                                   context=self._tls)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        else:
            proxy_host, proxy_port, proxy_auth = self._proxy
            headers = {"Proxy-Authorization": proxy_auth} if proxy_auth else {}
            if self._scheme == "https":
                conn = http.client.HTTPSConnection(proxy_host, proxy_port, timeout=timeout,
                                                   context=self._tls)
                conn.set_tunnel(self._host, self._port, headers=headers)
            else:
                conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
        self._conn = conn
        return conn

    def _target(self, path: str) -> str:
        if self._proxy is not None and self._scheme == "http":
            return f"http://{self._host}:{self._port}{path}"  # absolute form via a proxy
        return path

    def _exchange(self, path: str, timeout: float, method: str = "GET",
                  body: bytes | None = None) -> tuple[int, bytes]:
        conn = self._connect(timeout)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._proxy is not None and self._scheme == "http" and self._proxy[2]:
            headers["Proxy-Authorization"] = self._proxy[2]
        conn.request(method, self._target(path), body=body, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.will_close:
            self._drop()
        return response.status, body

    def _get(self, endpoint: str, params: Sequence[tuple[str, str | int]]) -> dict[str, Any]:
        """GET one endpoint; JSON answer. Raises _Missing / _Refused / YardErrors."""
        status, body = self._fetch(f"{_API}{endpoint}", params)
        return self._decode(status, body, endpoint)

    def probe(self, api_path: str, params: Sequence[tuple[str, str | int]]
              ) -> tuple[int, Any]:
        """GET any API path (``/api/3.0/mlflow/users/current``): (HTTP status, JSON or None).

        For endpoints a server may not have (the basic-auth app's): the caller reads the
        status; only an unreachable server raises."""
        status, body = self._fetch(api_path, params)
        try:
            return status, json.loads(body) if body.strip() else {}
        except ValueError:
            return status, None

    @property
    def sends_credentials(self) -> str | None:
        """"basic" or "token" when requests carry credentials, else None."""
        value = self._headers.get("Authorization", "")
        return "basic" if value.startswith("Basic ") else "token" if value else None

    @property
    def basic_username(self) -> str | None:
        """The user name the basic-auth credentials carry (never the password)."""
        value = self._headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return None
        try:
            return base64.b64decode(value[6:]).decode().partition(":")[0] or None
        except (ValueError, UnicodeDecodeError):
            return None

    def _fetch(self, api_path: str, params: Sequence[tuple[str, str | int]], *,
               method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
        """One request with the capped retries and the deadline (reads, and the lean
        writer's idempotent metadata writes: ``method`` and a JSON ``body``)."""
        import http.client

        query = f"?{urlencode(params, quote_via=quote)}" if params else ""
        path = f"{self._base}{api_path}{query}"
        deadline = time.monotonic() + self.timeout
        failures = 0
        with self._lock:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BackendError(detail=f"tracking server {self._label} did not answer "
                                       f"within {self.timeout:g} s")
                reused = self._conn is not None
                try:
                    self.requests += 1
                    status, answer = self._exchange(path, remaining, method, body)
                except (OSError, http.client.HTTPException) as exc:
                    self._drop()
                    self._refuse_untrusted(exc)
                    if reused and isinstance(exc, (http.client.RemoteDisconnected,
                                                   ConnectionResetError, BrokenPipeError)):
                        continue  # the server closed an idle keep-alive connection
                    failures += 1
                    if failures > self.retries or deadline - time.monotonic() <= 0:
                        reason = _first_line(str(exc), 120) or type(exc).__name__
                        raise BackendError(
                            detail=f"tracking server {self._label} unreachable "
                            f"({type(exc).__name__}: {reason})"
                        ) from None
                    self._pause(failures, deadline)
                    continue
                if status in _RETRY_STATUSES and failures < self.retries:
                    failures += 1
                    self._pause(failures, deadline)
                    continue
                return status, answer

    def _refuse_untrusted(self, exc: BaseException) -> None:
        """A certificate the client does not trust is not retried: say what to set."""
        if self._scheme != "https":
            return
        import ssl

        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = _first_line(exc.verify_message or str(exc), 120)
            raise BackendError(
                detail=f"tracking server {self._label}: TLS certificate not trusted ({reason}); "
                "set MLFLOW_TRACKING_SERVER_CERT_PATH or MLFLOW_TRACKING_INSECURE_TLS"
            ) from None

    @staticmethod
    def _pause(failures: int, deadline: float) -> None:
        time.sleep(max(0.0, min(0.25 * 2 ** (failures - 1), deadline - time.monotonic())))

    def _decode(self, status: int, body: bytes, endpoint: str) -> dict[str, Any]:
        payload: Any = None
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            payload = None
        if status == 200 and isinstance(payload, dict):
            return payload
        code = str(payload.get("error_code", "")) if isinstance(payload, dict) else ""
        message = _redact(_first_line(str(payload.get("message", "")))) if code else ""
        if status == 401:
            raise PermissionDenied(
                f"tracking server {self._label} refused the credentials (HTTP 401): set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
            )
        if status == 403:
            who = self.basic_username
            raise PermissionDenied(f"permission denied by tracking server {self._label} "
                                   f"(HTTP 403){' for ' + who if who else ''} on {endpoint}"
                                   + (f": {message}" if message else ""))
        if code == "RESOURCE_DOES_NOT_EXIST" or (status == 404 and code):
            raise _Missing(message)
        if code == "INVALID_PARAMETER_VALUE":
            raise _Refused(message)
        if status == 200 or status == 404:
            raise BackendError(detail=f"{self._label} is not an MLflow tracking server "
                               f"(HTTP {status} on {endpoint})")
        if 400 <= status < 500:
            raise UserError(f"tracking server {self._label} refused {endpoint} "
                            f"(HTTP {status}{', ' + code if code else ''}): {message}")
        raise BackendError(detail=f"tracking server {self._label} failed (HTTP {status}"
                           f"{', ' + code if code else ''}){': ' + message if message else ''}")

    # -- registry calls -------------------------------------------------------------------
    def _search_versions(self, filter_text: str, *, order_by: str, max_results: int,
                         page_token: str | None = None
                         ) -> tuple[list[dict[str, Any]], str | None]:
        params: list[tuple[str, str | int]] = [
            ("filter", filter_text), ("max_results", max_results), ("order_by", order_by)]
        if page_token:
            params.append(("page_token", page_token))
        try:
            answer = self._get("model-versions/search", params)
        except _Refused as exc:
            raise UserError(exc.message) from None
        except _Missing as exc:
            raise NotFound(exc.message) from None
        return list(answer.get("model_versions") or []), answer.get("next_page_token") or None

    def _each_version(self, filter_text: str, order_by: str, page: int
                      ) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            rows, token = self._search_versions(filter_text, order_by=order_by,
                                                max_results=page, page_token=token)
            yield from rows
            if not token or not rows:
                return

    def list_models(self) -> list[ModelRecord]:
        records: list[ModelRecord] = []
        token: str | None = None
        while True:
            params: list[tuple[str, str | int]] = [("max_results", _MODEL_PAGE)]
            if token:
                params.append(("page_token", token))
            try:
                answer = self._get("registered-models/search", params)
            except (_Missing, _Refused) as exc:
                raise BackendError(detail=f"{self._label}: {exc.message}") from None
            records.extend(model_from_rest(m) for m in answer.get("registered_models") or [])
            token = answer.get("next_page_token") or None
            if not token:
                return records

    def get_model(self, name: str) -> ModelRecord:
        try:
            answer = self._get("registered-models/get", [("name", name)])
        except _Missing:
            raise ModelNotFound(name=name) from None
        except _Refused as exc:
            raise UserError(exc.message) from None
        return model_from_rest(answer["registered_model"])

    def get_version(self, name: str, version: int) -> VersionRecord:
        try:
            answer = self._get("model-versions/get", [("name", name), ("version", int(version))])
        except _Missing as exc:
            raise NotFound(exc.message or f"Model Version (name={name}, version={version}) "
                           "not found") from None
        except _Refused as exc:
            raise UserError(exc.message) from None
        return version_from_rest(answer["model_version"])

    def alias_holder(self, name: str, alias: str) -> int | None:
        try:
            answer = self._get("registered-models/alias", [("name", name), ("alias", alias)])
        except (_Missing, _Refused):
            return None  # no such alias (MLflow: INVALID_PARAMETER_VALUE) or no such model
        return int(answer["model_version"]["version"])

    def _with_aliases(self, row: dict[str, Any]) -> VersionRecord:
        record = version_from_rest(row)
        if row.get("aliases") is None:  # MLflow's search leaves aliases out; get has them
            try:
                return self.get_version(record.name, record.version)
            except NotFound:
                return record  # deleted in between: what search said
        return record

    def _newest_visible(self, filter_text: str, name: str) -> VersionRecord | None:
        page = 1
        token: str | None = None
        while True:
            rows, token = self._search_versions(filter_text, order_by="version_number DESC",
                                                max_results=page, page_token=token)
            for row in rows:
                if _tag_of(row, STATUS_TAG) != PENDING:
                    return self._with_aliases(row)
            if not token or not rows:
                self.get_model(name)  # ModelNotFound if the model itself is absent
                return None
            page = min(page * 4, 1000)  # pending versions are few: widen only if needed

    def version_by_tag(self, name: str, key: str, value: str) -> VersionRecord | None:
        return self._newest_visible(f"{_name_filter(name)} AND {_tag_filter(key, value)}",
                                    name)

    def latest_visible(self, name: str) -> VersionRecord | None:
        return self._newest_visible(_name_filter(name), name)

    def versions(self, name: str) -> list[VersionRecord]:
        records = [version_from_rest(row) for row in
                   self._each_version(_name_filter(name), "version_number ASC", _VERSION_PAGE)]
        model = self.get_model(name)  # aliases (search leaves them out); ModelNotFound
        for record in records:
            record.aliases = sorted(a for a, v in model.aliases.items() if v == record.version)
        return records

    def count_visible(self, name: str) -> int:
        total = self._count(_name_filter(name), name)
        if not total:
            return 0
        pending = f"{_name_filter(name)} AND {_tag_filter(STATUS_TAG, PENDING)}"
        return total - self._count(pending, None)

    def search_versions(self, name: str, *, tag: tuple[str, str] | None = None,
                        below: int | None = None, limit: int = 100) -> list[VersionRecord]:
        rows, _ = self._search_versions(
            search_filter(name, tag=tag, below=below), order_by="version_number DESC",
            max_results=max(1, min(int(limit), SEARCH_PAGE_MAX)))
        records = [version_from_rest(row) for row in rows]
        for record in records:
            record.aliases = []
        return records

    def _count(self, filter_text: str, name: str | None) -> int:
        """How many versions match, without listing them when the server's page tokens are
        MLflow's offsets: page-size-1 probes at chosen offsets, guided by the version number
        found there (numbers only grow, deleted ones leave gaps). Typically 2-6 round trips,
        O(log n) at worst; other servers: by listing. ``name``: check the model exists."""

        def probe(offset: int, order: str = "DESC") -> tuple[int | None, str | None]:
            rows, token = self._search_versions(
                filter_text, order_by=f"version_number {order}", max_results=1,
                page_token=_offset_token(offset) if offset else None)
            return (int(rows[0]["version"]) if rows else None), token

        newest, token = probe(0)
        if newest is None:
            if name is not None:
                self.get_model(name)  # ModelNotFound if absent
            return 0
        if not token:
            return 1
        if _token_offset(token) != 1:
            return sum(1 for _ in self._each_version(filter_text, "version_number ASC",
                                                     _VERSION_PAGE))
        oldest, _ = probe(0, "ASC")
        if oldest is None:  # every version deleted in between
            return 0
        # Invariant: a row exists at offset `low` (version `v_low`); none at offset `high`.
        low, v_low, high = 0, newest, newest - oldest + 1
        halve = False
        while high - low > 1:
            if halve:
                offset = (low + high) // 2
            else:  # where the oldest row would be if gaps below `low` are as dense as above
                density = (low + 1) / (newest - v_low + 1)
                offset = min(max(low + round((v_low - oldest) * density), low + 1), high - 1)
            width = high - low
            found, _ = probe(offset)
            if found is None:
                high = offset
            elif found == oldest:
                return offset + 1
            else:
                low, v_low = offset, found
                high = min(high, offset + 1 + found - oldest)
            halve = not halve and (high - low) * 2 > width  # a poor guess: bisect once
        return low + 1

    def artifact_location(self, record: VersionRecord) -> str:
        if record.model_id:
            try:
                answer = self._get(f"logged-models/{quote(record.model_id, safe='')}", [])
                uri = answer.get("model", {}).get("info", {}).get("artifact_uri")
                if uri:
                    return str(uri)
            except (_Missing, _Refused):
                pass
        return record.source

    def get_run(self, run_id: str) -> dict[str, Any]:
        try:
            answer = self._get("runs/get", [("run_id", run_id)])
        except _Missing as exc:
            raise NotFound(exc.message or f"Run with id={run_id} not found") from None
        except _Refused as exc:
            raise UserError(exc.message) from None
        return run_from_rest(answer["run"])


def _tag_of(row: Mapping[str, Any], key: str) -> str | None:
    for tag in row.get("tags") or []:
        if tag.get("key") == key:
            return str(tag.get("value", ""))
    return None


def _credentials_file(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """MLflow's ``~/.mlflow/credentials`` (section ``[mlflow]``), as its client reads it."""
    home = environ.get("HOME") or str(Path.home())
    path = Path(home) / ".mlflow" / "credentials"
    if not path.is_file():
        return None, None
    import configparser

    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None, None
    if "mlflow" not in parser:
        return None, None
    section = parser["mlflow"]
    return section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password")


def _proxy_for(scheme: str, host: str, environ: Mapping[str, str]
               ) -> tuple[str, int, str | None] | None:
    """(host, port, Proxy-Authorization) from ``http(s)_proxy`` / ``no_proxy``, as requests."""
    proxy = environ.get(f"{scheme}_proxy") or environ.get(f"{scheme.upper()}_PROXY")
    if not proxy:
        return None
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        entry = entry.split(":")[0].lstrip(".")
        if entry == "*" or (entry and (host.lower() == entry
                                       or host.lower().endswith("." + entry))):
            return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parts.hostname:
        return None
    auth = None
    if parts.username is not None:
        user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(user.encode()).decode()
    return parts.hostname, parts.port or 8080, auth


# --------------------------------------------------------------------------------------------
# SQLite (the embedded default)
# --------------------------------------------------------------------------------------------

_VERSION_COLUMNS = ("mv.name, mv.version, mv.run_id, mv.source, mv.status, mv.creation_time, "
                    "mv.last_updated_time, mv.description, mv.user_id")
_NOT_DELETED = "mv.current_stage != 'Deleted_Internal'"  # NULL stages excluded, as MLflow
_NOT_PENDING = (
    "NOT EXISTS (SELECT 1 FROM model_version_tags p WHERE p.workspace = mv.workspace "
    "AND p.name = mv.name AND p.version = mv.version AND p.key = 'modelyard.status' "
    "AND p.value = 'pending')"
)


class SqliteReader:
    """Reads the embedded default's MLflow database read-only (``mode=ro``).

    Mirrors MLflow's SQL store: deleted versions (stage ``Deleted_Internal``) are invisible,
    prompts are left out of searches, only the default workspace is read. Build it with
    ``SqliteReader.open(path)`` to get the schema-revision guard.
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.path = Path(db_path)
        uri = f"{self.path.absolute().as_uri()}?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True, timeout=10.0, check_same_thread=False,
                                       isolation_level=None)  # explicit BEGIN in _read
        except sqlite3.Error as exc:
            raise BackendError(detail=f"cannot open {self.path} read-only: {exc}") from None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, db_path: str | os.PathLike[str]) -> SqliteReader | None:
        """A reader for a database whose schema revision is proved, else None (logged)."""
        path = Path(db_path)
        if not path.is_file():
            return _fallback(f"{path} does not exist yet")
        try:
            reader = cls(path)
        except BackendError as exc:
            return _fallback(exc.message)
        try:
            revision = reader.schema_revision()
        except BackendError as exc:
            reader.close()
            return _fallback(exc.message)
        if revision not in KNOWN_SCHEMA_REVISIONS:
            reader.close()
            proved = ", ".join(sorted(KNOWN_SCHEMA_REVISIONS))
            return _fallback(f"{path}: MLflow schema revision {revision!r} is not one the "
                             f"lean reader has proved ({proved})")
        return reader

    def schema_revision(self) -> str | None:
        """The alembic revision MLflow recorded (None if the table is empty)."""
        rows = self._all("SELECT version_num FROM alembic_version")
        return str(rows[0][0]) if len(rows) == 1 else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise BackendError(detail=f"reading {self.path}: {type(exc).__name__}: "
                                   f"{_first_line(str(exc), 200)}") from None

    def _read(self, work: Callable[[], T]) -> T:
        """Several queries seen as one snapshot (a read transaction)."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                try:
                    return work()
                finally:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BackendError(detail=f"reading {self.path}: {type(exc).__name__}: "
                                   f"{_first_line(str(exc), 200)}") from None

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()  # inside _read: lock held

    def _model_exists(self, name: str) -> bool:
        return bool(self._q("SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?",
                            (WORKSPACE, name)))

    def _is_prompt(self, name: str) -> bool:
        # MLflow's version searches leave out every version of a name with a prompt tag.
        return bool(self._q(
            "SELECT 1 FROM model_version_tags WHERE workspace = ? AND key = ? AND name = ? "
            "AND value = 'true' LIMIT 1", (WORKSPACE, PROMPT_TAG, name)))

    def _version_tags(self, name: str, versions: Sequence[int] | None
                      ) -> dict[int, dict[str, str]]:
        sql = "SELECT version, key, value FROM model_version_tags WHERE workspace = ? AND name = ?"
        params: list[Any] = [WORKSPACE, name]
        if versions is not None:
            if not versions:
                return {}
            sql += f" AND version IN ({', '.join('?' * len(versions))})"
            params.extend(versions)
        tags: dict[int, dict[str, str]] = {}
        for version, key, value in self._q(sql, params):
            tags.setdefault(int(version), {})[key] = value
        return tags

    def _aliases(self, name: str) -> dict[str, int]:
        return {alias: int(version) for alias, version in self._q(
            "SELECT alias, version FROM registered_model_aliases WHERE workspace = ? AND name = ?",
            (WORKSPACE, name))}

    def _records(self, name: str, rows: list[tuple[Any, ...]]) -> list[VersionRecord]:
        numbers = [int(row[1]) for row in rows]
        tags = self._version_tags(name, numbers if len(numbers) <= 500 else None)
        aliases = self._aliases(name)
        return [_version_row(row, tags.get(int(row[1]), {}),
                             sorted(a for a, v in aliases.items() if v == int(row[1])))
                for row in rows]

    def _model(self, name: str) -> ModelRecord:
        rows = self._q("SELECT name, description, creation_time, last_updated_time "
                       "FROM registered_models WHERE workspace = ? AND name = ?",
                       (WORKSPACE, name))
        if not rows:
            raise ModelNotFound(name=name)
        tags = dict(self._q("SELECT key, value FROM registered_model_tags "
                            "WHERE workspace = ? AND name = ?", (WORKSPACE, name)))
        return _model_row(rows[0], tags, self._aliases(name))

    # -- registry calls -------------------------------------------------------------------
    def list_models(self) -> list[ModelRecord]:
        def work() -> list[ModelRecord]:
            rows = self._q(
                "SELECT name, description, creation_time, last_updated_time "
                "FROM registered_models rm WHERE workspace = ? AND NOT EXISTS ("
                "SELECT 1 FROM registered_model_tags t WHERE t.workspace = rm.workspace "
                "AND t.name = rm.name AND t.key = ? AND t.value = 'true') ORDER BY name",
                (WORKSPACE, PROMPT_TAG))
            tags: dict[str, dict[str, str]] = {}
            for name, key, value in self._q(
                    "SELECT name, key, value FROM registered_model_tags WHERE workspace = ?",
                    (WORKSPACE,)):
                tags.setdefault(name, {})[key] = value
            aliases: dict[str, dict[str, int]] = {}
            for name, alias, version in self._q(
                    "SELECT name, alias, version FROM registered_model_aliases "
                    "WHERE workspace = ?", (WORKSPACE,)):
                aliases.setdefault(name, {})[alias] = int(version)
            return [_model_row(row, tags.get(row[0], {}), aliases.get(row[0], {}))
                    for row in rows]

        return self._read(work)

    def get_model(self, name: str) -> ModelRecord:
        return self._read(lambda: self._model(name))

    def get_version(self, name: str, version: int) -> VersionRecord:
        def work() -> VersionRecord:
            rows = self._q(f"SELECT {_VERSION_COLUMNS} FROM model_versions mv WHERE "
                           f"mv.workspace = ? AND mv.name = ? AND mv.version = ? AND "
                           f"{_NOT_DELETED}", (WORKSPACE, name, int(version)))
            if not rows:
                raise NotFound(f"Model Version (name={name}, version={version}) not found")
            return self._records(name, rows)[0]

        return self._read(work)

    def alias_holder(self, name: str, alias: str) -> int | None:
        def work() -> int | None:
            if alias.lower() == "latest":  # MLflow answers its reserved alias itself
                rows = self._q(f"SELECT MAX(mv.version) FROM model_versions mv WHERE "
                               f"mv.workspace = ? AND mv.name = ? AND {_NOT_DELETED}",
                               (WORKSPACE, name))
                return int(rows[0][0]) if rows and rows[0][0] is not None else None
            rows = self._q(
                f"SELECT a.version FROM registered_model_aliases a JOIN model_versions mv ON "
                f"mv.workspace = a.workspace AND mv.name = a.name AND mv.version = a.version "
                f"WHERE a.workspace = ? AND a.name = ? AND a.alias = ? AND {_NOT_DELETED}",
                (WORKSPACE, name, alias))
            return int(rows[0][0]) if rows else None

        return self._read(work)

    def _newest_visible(self, name: str, extra_sql: str, params: Sequence[Any]
                        ) -> VersionRecord | None:
        def work() -> VersionRecord | None:
            if self._is_prompt(name):
                rows: list[tuple[Any, ...]] = []
            else:
                rows = self._q(
                    f"SELECT {_VERSION_COLUMNS} FROM model_versions mv {extra_sql} WHERE "
                    f"mv.workspace = ? AND mv.name = ? AND {_NOT_DELETED} AND {_NOT_PENDING} "
                    "ORDER BY mv.version DESC LIMIT 1", (*params, WORKSPACE, name))
            if not rows:
                if not self._model_exists(name):
                    raise ModelNotFound(name=name)
                return None
            return self._records(name, rows)[0]

        return self._read(work)

    def version_by_tag(self, name: str, key: str, value: str) -> VersionRecord | None:
        join = ("JOIN model_version_tags t ON t.workspace = mv.workspace AND t.name = mv.name "
                "AND t.version = mv.version AND t.key = ? AND t.value = ?")
        return self._newest_visible(name, join, (key, value))

    def latest_visible(self, name: str) -> VersionRecord | None:
        return self._newest_visible(name, "", ())

    def versions(self, name: str) -> list[VersionRecord]:
        def work() -> list[VersionRecord]:
            if not self._model_exists(name):
                raise ModelNotFound(name=name)
            if self._is_prompt(name):
                return []
            rows = self._q(f"SELECT {_VERSION_COLUMNS} FROM model_versions mv WHERE "
                           f"mv.workspace = ? AND mv.name = ? AND {_NOT_DELETED} "
                           "ORDER BY mv.version", (WORKSPACE, name))
            return self._records(name, rows)

        return self._read(work)

    def count_visible(self, name: str) -> int:
        def work() -> int:
            if not self._model_exists(name):
                raise ModelNotFound(name=name)
            if self._is_prompt(name):
                return 0
            rows = self._q(f"SELECT COUNT(*) FROM model_versions mv WHERE mv.workspace = ? "
                           f"AND mv.name = ? AND {_NOT_DELETED} AND {_NOT_PENDING}",
                           (WORKSPACE, name))
            return int(rows[0][0])

        return self._read(work)

    def search_versions(self, name: str, *, tag: tuple[str, str] | None = None,
                        below: int | None = None, limit: int = 100) -> list[VersionRecord]:
        def work() -> list[VersionRecord]:
            if self._is_prompt(name):
                return []
            join, params = "", []
            if tag is not None:
                join = ("JOIN model_version_tags t ON t.workspace = mv.workspace AND "
                        "t.name = mv.name AND t.version = mv.version AND t.key = ? AND "
                        "t.value = ?")
                params = [tag[0], tag[1]]
            extra = "" if below is None else "AND mv.version < ? "
            rows = self._q(
                f"SELECT {_VERSION_COLUMNS} FROM model_versions mv {join} WHERE "
                f"mv.workspace = ? AND mv.name = ? AND {_NOT_DELETED} {extra}"
                "ORDER BY mv.version DESC LIMIT ?",
                (*params, WORKSPACE, name, *([] if below is None else [int(below)]),
                 max(1, min(int(limit), SEARCH_PAGE_MAX))))
            numbers = [int(row[1]) for row in rows]
            tags = self._version_tags(name, numbers)
            return [_version_row(row, tags.get(int(row[1]), {}), []) for row in rows]

        return self._read(work)

    def artifact_location(self, record: VersionRecord) -> str:
        model_id = record.model_id
        if not model_id:
            return record.source

        def work() -> str:
            rows = self._q("SELECT artifact_location FROM logged_models WHERE model_id = ?",
                           (model_id,))
            return str(rows[0][0]) if rows and rows[0][0] else record.source

        return self._read(work)

    def get_run(self, run_id: str) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            rows = self._q("SELECT run_uuid, experiment_id, status, start_time, end_time, "
                           "artifact_uri FROM runs WHERE run_uuid = ?", (run_id,))
            if not rows:
                raise NotFound(f"Run with id={run_id} not found")
            run_uuid, experiment_id, status, start, end, artifact_uri = rows[0]
            metrics = {key: float("nan") if is_nan else float(value)
                       for key, value, is_nan in self._q(
                           "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?",
                           (run_id,))}
            params = dict(self._q("SELECT key, value FROM params WHERE run_uuid = ?",
                                  (run_id,)))
            tags = dict(self._q("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))
            return {
                "run_id": run_uuid,
                "experiment_id": str(experiment_id),
                "status": status,
                "start_time": start,
                "end_time": end,
                "artifact_uri": artifact_uri,
                "metrics": metrics,
                "params": params,
                "tags": tags,
            }

        return self._read(work)


def _version_row(row: tuple[Any, ...], tags: dict[str, str], aliases: list[str]
                 ) -> VersionRecord:
    name, version, run_id, source, status, created, updated, description, user_id = row
    source = source or ""
    return VersionRecord(
        name=name,
        version=int(version),
        run_id=run_id or None,
        source=source,
        status=str(status or ""),
        created_ms=int(created or 0),
        updated_ms=int(updated or 0),
        description=description or "",
        tags=tags,
        aliases=aliases,
        model_id=model_id_from(source),
        user_id=user_id or None,
    )


def _model_row(row: tuple[Any, ...], tags: dict[str, str], aliases: dict[str, int]
               ) -> ModelRecord:
    name, description, created, updated = row
    return ModelRecord(
        name=name,
        description=description or "",
        created_ms=int(created or 0),
        updated_ms=int(updated or 0),
        tags=tags,
        aliases=aliases,
    )
