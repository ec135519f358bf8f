"""The lean reader for tracking servers: MLflow's documented REST API (``/api/2.0/mlflow/...``).

Honours MLflow's own client settings (``MLFLOW_TRACKING_USERNAME`` / ``PASSWORD``,
``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
``MLFLOW_TRACKING_CLIENT_CERT_PATH``, ``MLFLOW_WORKSPACE``, proxies), with capped retries and
one time budget per call. Build it through ``reader.open_reader``. Never imports mlflow.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from modelyard.errors import BackendError, ModelNotFound, NotFound, PermissionDenied, UserError
from modelyard.reader_base import PENDING, STATUS_TAG, _first_line, _redact, _truthy, at_once
from modelyard.records import (
    SEARCH_PAGE_MAX,
    ModelRecord,
    VersionRecord,
    model_from_rest,
    run_from_rest,
    search_filter,
    version_from_rest,
)

if TYPE_CHECKING:  # pragma: no cover
    import http.client
    import ssl

__all__ = ["RestReader"]

_API = "/api/2.0/mlflow/"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_VERSION_PAGE = 10_000
_MODEL_PAGE = 1_000
_COUNT_WINDOW = 16  # rows: a count ends with one page this small rather than more probes
_HINT_REACH = 8  # a remembered count is confirmed in one round while within this many rows
TOP_PAGE = 4  # the newest versions ``list`` reads (pending ones are few)
_HINTS_KEPT = 1_000  # remembered counts (search filters) per tracking server


class _Shared:
    """The answer to a GET in flight, for a caller that asked the same GET meanwhile."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: dict[str, Any] = {}
        self._error: BaseException | None = None

    def answer(self, value: dict[str, Any]) -> None:
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def wait(self) -> dict[str, Any]:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


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



class RestReader:
    """Reads a tracking server through MLflow's REST API (``/api/2.0/mlflow/...``).

    ``timeout`` bounds each call, retries included: an unreachable server raises
    ``BackendError`` naming the (redacted) URI within ``timeout`` seconds. Connection failures
    and HTTP 429 / 5xx answers are retried at most ``retries`` times. Settings are read from
    ``environ`` (never written). Keep-alive connections are pooled: one per request in
    flight, so threads may send independent requests at once (``concurrently``), and a
    command's reads and writes reuse the same few connections.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        environ: Mapping[str, str] = os.environ,
        count_hints: Path | None = None,
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
        self.concurrent = True  # reader_base.at_once may send its calls at the same time
        self._idle: list[http.client.HTTPConnection] = []  # keep-alive, not in use
        self._lock = threading.Lock()  # guards _idle and requests
        self.requests = 0  # requests sent (the benchmark counts them)
        # Counts remembered on this machine (a JSON file under the cache folder, keyed by
        # search filter): a hint that one round confirms or refutes (``_count_near``).
        self._hints_path = count_hints
        self._hints: dict[str, int] | None = None
        self._offsets = False  # this server's page tokens proved to be MLflow's offsets
        self._in_flight: dict[tuple[str, tuple[tuple[str, str | int], ...]], _Shared] = {}

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
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> RestReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _take(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """An idle keep-alive connection (True: reused), else a new one."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        return self._open(timeout), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.append(conn)

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        import http.client

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
        return conn

    def _target(self, path: str) -> str:
        if self._proxy is not None and self._scheme == "http":
            return f"http://{self._host}:{self._port}{path}"  # absolute form via a proxy
        return path

    def _exchange(self, conn: http.client.HTTPConnection, path: str, method: str = "GET",
                  body: bytes | None = None) -> tuple[int, bytes, bool]:
        """(status, body, whether the connection may be kept alive)."""
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._proxy is not None and self._scheme == "http" and self._proxy[2]:
            headers["Proxy-Authorization"] = self._proxy[2]
        conn.request(method, self._target(path), body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        return response.status, answer, not response.will_close

    def _get(self, endpoint: str, params: Sequence[tuple[str, str | int]]) -> dict[str, Any]:
        """GET one endpoint; JSON answer. Raises _Missing / _Refused / YardErrors.

        The same version search asked again while it is in flight (two look-ups sent at
        once that need the same page: ``list``'s newest versions and the count's newest row)
        waits for that request's answer instead of sending its own; nothing is kept once it
        is answered. Only version searches, the calls a read verb sends at once (``at_once``
        waits for every call of a round, so no search in flight outlives the round that
        sent it, and a later round's writes are never read through an earlier answer)."""
        if endpoint != "model-versions/search":
            status, body = self._fetch(f"{_API}{endpoint}", params)
            return self._decode(status, body, endpoint)
        key = (endpoint, tuple(params))
        with self._lock:
            shared = self._in_flight.get(key)
            if shared is None:
                self._in_flight[key] = mine = _Shared()
        if shared is not None:
            return shared.wait()
        try:
            status, body = self._fetch(f"{_API}{endpoint}", params)
            answer = self._decode(status, body, endpoint)
        except BaseException as exc:
            mine.fail(exc)
            raise
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
        mine.answer(answer)
        return answer

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
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendError(detail=f"tracking server {self._label} did not answer "
                                   f"within {self.timeout:g} s")
            conn, reused = self._take(remaining)
            try:
                with self._lock:
                    self.requests += 1
                status, answer, keep = self._exchange(conn, path, method, body)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
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
            except BaseException:
                conn.close()
                raise
            if keep:
                self._give_back(conn)
            else:
                conn.close()
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
        """The registered model. Through a name-filtered search where the name can be quoted:
        MLflow's server answers ``registered-models/get`` in O(versions) (it loads every
        version for ``latest_versions``), the search with the same tags and aliases in O(1)."""
        if "'" not in name and "\\" not in name:
            try:
                found = self._get("registered-models/search",
                                  [("filter", f"name = '{name}'"), ("max_results", 10)])
            except _Missing:
                found = None  # registered-models/get answers below
            except _Refused as exc:
                raise UserError(exc.message) from None
            for model in (found or {}).get("registered_models") or []:
                if model.get("name") == name:
                    return model_from_rest(model)
            # Not found by the search: absent, or hidden from this user on an auth server;
            # registered-models/get says which.
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

    def alias_version(self, name: str, alias: str) -> VersionRecord | None:
        """The version an alias points at, whole (tags and aliases): MLflow's alias look-up
        answers with the full version, so ``refs.lookup`` needs no second call. ``None`` if
        the alias or the model is absent (as ``alias_holder``)."""
        try:
            answer = self._get("registered-models/alias", [("name", name), ("alias", alias)])
        except (_Missing, _Refused):
            return None
        return version_from_rest(answer["model_version"])

    def _with_aliases(self, row: dict[str, Any]) -> VersionRecord:
        record = version_from_rest(row)
        if row.get("aliases") is None:  # MLflow's search leaves aliases out; get has them
            try:
                return self.get_version(record.name, record.version)
            except NotFound:
                return record  # deleted in between: what search said
        return record

    def _newest_visible(self, filter_text: str, name: str, aliases: bool = True
                        ) -> VersionRecord | None:
        page = 1
        token: str | None = None
        while True:
            rows, token = self._search_versions(filter_text, order_by="version_number DESC",
                                                max_results=page, page_token=token)
            for row in rows:
                if _tag_of(row, STATUS_TAG) != PENDING:
                    return self._with_aliases(row) if aliases else version_from_rest(row)
            if not token or not rows:
                self.get_model(name)  # ModelNotFound if the model itself is absent
                return None
            page = min(page * 4, 1000)  # pending versions are few: widen only if needed

    def version_by_tag(self, name: str, key: str, value: str, *, aliases: bool = True
                       ) -> VersionRecord | None:
        """``aliases=False``: the search row as it is, aliases not filled in (its caller
        reads the version whole at once with its other look-ups: ``Loader.get``)."""
        return self._newest_visible(f"{_name_filter(name)} AND {_tag_filter(key, value)}",
                                    name, aliases)

    def latest_visible(self, name: str, *, aliases: bool = True) -> VersionRecord | None:
        return self._newest_visible(_name_filter(name), name, aliases)

    def versions(self, name: str) -> list[VersionRecord]:
        records = [version_from_rest(row) for row in
                   self._each_version(_name_filter(name), "version_number ASC", _VERSION_PAGE)]
        model = self.get_model(name)  # aliases (search leaves them out); ModelNotFound
        for record in records:
            record.aliases = sorted(a for a, v in model.aliases.items() if v == record.version)
        return records

    def count_visible(self, name: str) -> int:
        # Both counts at once: all versions (dense: few are deleted) and the pending ones
        # (sparse: registrations in flight). Each is first asked near the count remembered
        # on this machine (one round, exact when it confirms); else counted by probes.
        pending = f"{_name_filter(name)} AND {_tag_filter(STATUS_TAG, PENDING)}"
        total, waiting = at_once(self, [lambda: self._counted(_name_filter(name), name),
                                        lambda: self._counted(pending, None, dense=False)])
        return max(0, total - waiting) if total else 0

    def _counted(self, filter_text: str, name: str | None, *, dense: bool = True) -> int:
        hint = self._hint(filter_text)
        found = None if hint is None else self._count_near(filter_text, hint, name)
        if found is None:
            found = self._count(filter_text, name, dense=dense)
        if found != hint and (found <= _HINT_REACH + 1 or self._offsets):
            self._remember_count(filter_text, found)  # a hint past offset 0 needs offsets
        return found

    def _count_near(self, filter_text: str, hint: int, name: str | None) -> int | None:
        """The exact count when it lies within ``_HINT_REACH`` rows of ``hint``, in one
        round; ``None`` when it does not (or the answer cannot be trusted): count anew.

        One page of ``2 * _HINT_REACH + 1`` rows, newest first, ends ``_HINT_REACH`` rows
        past the hint: a page that is not empty and has no next page token (MLflow's server
        asks one row more than it answers to decide that) ends at the last row, so the count
        is its offset plus its rows. Hints are remembered only from a server whose page
        tokens proved to be MLflow's offsets; a page past offset 0 is checked against the
        newest row (fetched at once): a server that ignored the offset would answer the
        newest rows again."""

        def page(offset: int, size: int) -> tuple[list[int], str | None]:
            rows, token = self._search_versions(
                filter_text, order_by="version_number DESC", max_results=size,
                page_token=_offset_token(offset) if offset else None)
            return [int(row["version"]) for row in rows], token

        offset = max(0, hint - 1 - _HINT_REACH)
        size = 2 * _HINT_REACH + 1
        try:
            if offset == 0:
                rows, token = page(0, hint + 1 + _HINT_REACH)
                top = rows[:1]
            else:  # the newest rows as ``list`` asks them: one request serves both
                (top, _), (rows, token) = at_once(self, [lambda: page(0, TOP_PAGE),
                                                         lambda: page(offset, size)])
        except (UserError, NotFound):
            return None  # a token this server refuses, or the model went: count anew
        if token is not None or (not rows and (offset or name is not None)):
            return None  # beyond the page, or before it (or an absent model: say so)
        if offset and not (top and rows[0] <= top[0] - offset):
            return None  # not the rows at that offset
        if offset:
            self._offsets = True
        return offset + len(rows)

    def _hint(self, filter_text: str) -> int | None:
        if self._hints_path is None:
            return None
        with self._lock:
            if self._hints is None:
                self._hints = {}
                try:
                    loaded = json.loads(self._hints_path.read_bytes())
                    if isinstance(loaded, dict):
                        self._hints = {k: v for k, v in loaded.items()
                                       if isinstance(k, str) and isinstance(v, int)
                                       and not isinstance(v, bool) and v >= 0}
                except (OSError, ValueError):
                    pass  # nothing remembered yet (or unreadable): count by probes
            return self._hints.get(filter_text)

    def _remember_count(self, filter_text: str, count: int) -> None:
        """Keep a count as the next hint; a failure only costs probes next time."""
        if self._hints_path is None:
            return
        from modelyard.files import atomic_write

        with self._lock:
            hints = dict(self._hints or {})
            hints[filter_text] = count
            if len(hints) > _HINTS_KEPT:  # the oldest entries go first
                hints = dict(list(hints.items())[-_HINTS_KEPT:])
            self._hints = hints
            with contextlib.suppress(OSError):
                atomic_write(self._hints_path, json.dumps(hints).encode())

    def search_versions(self, name: str, *, tag: tuple[str, str] | None = None,
                        below: int | None = None, limit: int = 100) -> list[VersionRecord]:
        rows, _ = self._search_versions(
            search_filter(name, tag=tag, below=below), order_by="version_number DESC",
            max_results=max(1, min(int(limit), SEARCH_PAGE_MAX)))
        records = [version_from_rest(row) for row in rows]
        for record in records:
            record.aliases = []
        return records

    def _count(self, filter_text: str, name: str | None, *, dense: bool = True) -> int:
        """How many versions match, without listing them when the server's page tokens are
        MLflow's offsets: probes at chosen offsets, guided by the version number found there
        (numbers only grow, deleted ones leave gaps). The newest and oldest go out at once;
        then a first probe at the numbers' span end when ``dense`` (no gaps: done) or near
        the top when sparse; then small pages (``_COUNT_WINDOW`` rows) around the oldest
        row's estimated offset (interpolated from the density above), with a bisection
        after a poor guess. 3 calls without gaps, typically 4-7 at 10,000 versions with
        1% deleted or 1% pending, O(log n) at worst; other servers: by listing. ``name``:
        check the model exists."""

        def probe(offset: int, order: str = "DESC", size: int = 1
                  ) -> tuple[list[int], str | None]:
            rows, token = self._search_versions(
                filter_text, order_by=f"version_number {order}", max_results=size,
                page_token=_offset_token(offset) if offset else None)
            return [int(row["version"]) for row in rows], token

        (top, token), (bottom, _) = at_once(self, [lambda: probe(0),
                                                   lambda: probe(0, "ASC")])
        if not top:
            if name is not None:
                self.get_model(name)  # ModelNotFound if absent
            return 0
        if not token:
            return 1
        if _token_offset(token) != 1:
            return sum(1 for _ in self._each_version(filter_text, "version_number ASC",
                                                     _VERSION_PAGE))
        self._offsets = True
        if not bottom:  # every version deleted in between
            return 0
        newest, oldest = top[0], bottom[0]
        # Invariant: a row exists at offset `low` (version `v_low`); none at offset `high`.
        low, v_low, high = 0, newest, newest - oldest + 1
        first, halve = dense, False  # first: the span guess is next
        while high - low > 1:
            if high - low - 1 <= _COUNT_WINDOW:  # the rest in one small page
                rows, _ = probe(low + 1, size=high - low - 1)
                return low + 1 + len(rows)
            width = high - low
            if halve:
                offset = (low + high) // 2
            elif low == 0:  # no density known yet
                if first:
                    offset = high - 1  # no gaps at all: the oldest is at the span's end
                elif dense:
                    offset = high // 2
                else:
                    offset = max(1, math.isqrt(high))
            else:  # where the oldest row would be if gaps below `low` are as dense as above
                offset = low + round((v_low - oldest) * low / (newest - v_low))
            size = 1
            if not halve and low:
                # An estimate from the density above: a small page around it often ends the
                # count, and otherwise narrows it as a probe would.
                offset, size = offset - _COUNT_WINDOW // 2, _COUNT_WINDOW
            offset = min(max(offset, low + 1), high - 1)
            size = min(size, high - offset)
            found, token = probe(offset, size=size)
            if not found:
                high = offset
            elif not token or found[-1] == oldest:
                return offset + len(found)
            else:
                low, v_low = offset + len(found) - 1, found[-1]
                high = min(high, low + 1 + v_low - oldest)
            # a poor guess: bisect once (the span guess only rules out "no gaps")
            halve = not halve and not first and (high - low) * 2 > width
            first = False
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
