"""How modelyard talks HTTP to a tracking server, without importing MLflow.

``RestTransport`` is the plumbing the lean reader (``rest.RestReader``) and the lean
writer (``writer.RestWriter``) share, so the reads and writes of one command go through
one pool of keep-alive connections, one set of credentials and one request counter. It
knows MLflow's client settings and its error answers, not the registry: which endpoints to
call and what their answers mean is the reader's and the writer's business.

Honours MLflow's own client settings (``MLFLOW_TRACKING_USERNAME`` / ``PASSWORD``,
``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
``MLFLOW_TRACKING_CLIENT_CERT_PATH``, ``MLFLOW_WORKSPACE``, proxies, ``~/.mlflow/credentials``),
with capped retries and one time budget per call.

>>> transport = RestTransport("http://mlflow:5000")  # doctest: +SKIP
>>> transport.get("registered-models/get", [("name", "churn")])  # doctest: +SKIP
{'registered_model': {...}}
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from modelyard.backend.lean.base import _first_line, _redact, _truthy
from modelyard.errors import BackendError, PermissionDenied, UserError

if TYPE_CHECKING:  # pragma: no cover
    import http.client
    import ssl

__all__ = ["Missing", "Refused", "RestTransport"]

_API = "/api/2.0/mlflow/"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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


class Missing(Exception):
    """A 404 / RESOURCE_DOES_NOT_EXIST answer; callers turn it into the right NotFound
    (only they know whether a model, a version, an alias or a run was asked for)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Refused(Exception):
    """An INVALID_PARAMETER_VALUE answer (HTTP 400): MLflow's word for some absences too
    (an unknown alias), so callers decide what it means."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RestTransport:
    """Requests to one tracking server: MLflow's settings, a keep-alive pool, capped retries.

    ``timeout`` bounds each call, retries included: an unreachable server raises
    ``BackendError`` naming the (redacted) URI within ``timeout`` seconds. Connection failures
    and HTTP 429 / 5xx answers are retried at most ``retries`` times. Settings are read from
    ``environ`` (never written). Keep-alive connections are pooled: one per request in
    flight, so threads may send independent requests at once (``base.at_once``),
    and a command's reads and writes reuse the same few connections. ``requests`` counts
    the requests sent (the benchmark reads it).
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
        self._silent_until = 0.0  # a server that went silent is not asked again before
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._base = parts.path.rstrip("/")
        self._headers = self._make_headers(parts.username, parts.password, environ)
        self._tls = self._make_tls(environ) if parts.scheme == "https" else None
        self._proxy = _proxy_for(parts.scheme, self._host, environ)
        self._idle: list[http.client.HTTPConnection] = []  # keep-alive, not in use
        self._lock = threading.Lock()  # guards _idle, _in_flight and requests
        self.requests = 0  # requests sent
        self._in_flight: dict[tuple[str, tuple[tuple[str, str | int], ...]], _Shared] = {}

    @property
    def label(self) -> str:
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
            raise UserError(f"TLS settings for {self.label} unusable: "
                            f"{type(exc).__name__}: {_first_line(str(exc), 200)}") from None
        return context

    # -- connections ----------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> RestTransport:
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

    # -- requests -------------------------------------------------------------------------
    def get(self, endpoint: str, params: Sequence[tuple[str, str | int]], *,
            share: bool = False) -> dict[str, Any]:
        """GET one endpoint (``registered-models/get``); its JSON answer. Raises ``Missing``,
        ``Refused`` or a ``YardError`` (401/403, other refusals, an unreachable server).

        ``share``: the same GET asked again while it is in flight waits for that request's
        answer instead of sending its own; nothing is kept once it is answered. The caller
        says which GETs may share (``RestReader``: version searches only)."""
        if not share:
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

    def send(self, method: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON ``body`` sent to one endpoint (``POST registered-models/alias``); its JSON
        answer, errors as ``get``. Retried as a GET is: only for idempotent writes."""
        status, answer = self._fetch(f"{_API}{endpoint}", (), method=method,
                                     body=json.dumps(body).encode())
        return self._decode(status, answer, endpoint)

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
        """One request with the capped retries and the deadline: (HTTP status, body)."""
        import http.client

        query = f"?{urlencode(params, quote_via=quote)}" if params else ""
        path = f"{self._base}{api_path}{query}"
        if time.monotonic() < self._silent_until:  # it went silent moments ago: not asked again yet
            raise BackendError(detail=f"tracking server {self.label} did not answer "
                               f"within {self.timeout:g} s")
        deadline = time.monotonic() + self.timeout
        failures = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendError(detail=f"tracking server {self.label} did not answer "
                                   f"within {self.timeout:g} s")
            conn, reused = self._take(remaining)
            try:
                with self._lock:
                    self.requests += 1
                status, answer, keep = self._exchange(conn, path, method, body)
            except (OSError, http.client.HTTPException) as exc:
                connected = conn.sock is not None  # the timeout came after the connect
                conn.close()
                self._refuse_untrusted(exc)
                if reused and isinstance(exc, (http.client.RemoteDisconnected,
                                               ConnectionResetError, BrokenPipeError)):
                    continue  # the server closed an idle keep-alive connection
                failures += 1
                if isinstance(exc, TimeoutError) and connected:
                    # It took the request and went silent: asking again only waits again,
                    # and a write must not be sent twice. Later calls fail at once for a while.
                    self._silent_until = time.monotonic() + self.timeout
                    raise BackendError(detail=f"tracking server {self.label} took the request "
                                       f"and gave no answer within {self.timeout:g} s"
                                       ) from None
                if failures > self.retries or deadline - time.monotonic() <= 0:
                    reason = _first_line(str(exc), 120) or type(exc).__name__
                    raise BackendError(
                        detail=f"tracking server {self.label} unreachable "
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
                detail=f"tracking server {self.label}: TLS certificate not trusted ({reason}); "
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
                f"tracking server {self.label} refused the credentials (HTTP 401): set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
            )
        if status == 403:
            who = self.basic_username
            raise PermissionDenied(f"permission denied by tracking server {self.label} "
                                   f"(HTTP 403){' for ' + who if who else ''} on {endpoint}"
                                   + (f": {message}" if message else ""))
        if code == "RESOURCE_DOES_NOT_EXIST" or (status == 404 and code):
            raise Missing(message)
        if code == "INVALID_PARAMETER_VALUE":
            raise Refused(message)
        if status == 200 or status == 404:
            raise BackendError(detail=f"{self.label} is not an MLflow tracking server "
                               f"(HTTP {status} on {endpoint})")
        if 400 <= status < 500:
            raise UserError(f"tracking server {self.label} refused {endpoint} "
                            f"(HTTP {status}{', ' + code if code else ''}): {message}")
        raise BackendError(detail=f"tracking server {self.label} failed (HTTP {status}"
                           f"{', ' + code if code else ''}){': ' + message if message else ''}")





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
