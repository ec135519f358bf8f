"""The dashboard: a read-only FastAPI app with server-rendered pages (``modelyard ui``).

Six pages, each a GET with its inputs in the query string (a model's name may hold any
character a registry allows): ``/`` overview, ``/model?name=`` versions, chart, promotion
timeline and compare, ``/version?name=&ref=`` lineage, manifest, backups, snapshots, access
log, gates, reproduce, ``/audit`` the trail with its chain status, ``/incidents`` health, drills
and recover runs, ``/serving?name=`` traffic, latency, A/B arms, drift and shadow calls.

Pages are Jinja2 templates with autoescape on: a model or tag holding ``<script>`` shows as
text. Bad input is one clear line in a 400/404 page; any other failure is a 500 page that
names no internals (the cause goes to the log). Charts are SVG drawn here (``charts.py``).

On a tracking server that refuses reads without credentials (MLflow's basic-auth app) the
viewer's own MLflow user name and password are asked for (HTTP basic) and every read is made
with them, so a page holds only what that user may read; this process's own credentials
are never used for a viewer, and a password is never written to a page or a log line.

Never imports mlflow (``views.py`` says how).
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations
# (``Request``, imported inside ``create_app``) as objects.

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from modelyard.errors import InvalidInput, NotFound, PermissionDenied, YardError
from modelyard.ui.paging import MlflowLinks, mlflow_base, page_number, version_number
from modelyard.ui.views import Views

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI, Request

    from modelyard.core.settings import Settings
    from modelyard.yard import Yard

log = logging.getLogger("modelyard.ui")

NAV = (("overview", "Overview", "/"), ("audit", "Audit", "/audit"),
       ("incidents", "Incidents", "/incidents"))
# What a viewer's reads must not inherit from this process: its own MLflow credentials.
_OWN_CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                    "MLFLOW_TRACKING_TOKEN")
MAX_VIEWERS = 32  # viewers' registries kept open at once (least recently used dropped)
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" '
           'height="16" rx="3" fill="#16202c"/><path d="M3 12V4l5 5 5-5v8" stroke="#cfe3ff" '
           'stroke-width="2" fill="none"/></svg>')
MAX_QUERY = 300  # characters of one query value (a model name is at most 256)


class LoginRequired(PermissionDenied):
    http_status = 401


def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("modelyard.ui", "templates"),
                             autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)

    def q(path: str, **params: Any) -> str:
        given = {k: v for k, v in params.items() if v not in (None, "")}
        return f"{path}?{urlencode(given)}" if given else path

    def num(value: Any, digits: int = 4) -> str:
        if isinstance(value, bool) or value is None:
            return "-" if value is None else str(value)
        if isinstance(value, (int, float)):
            return f"{value:.{digits}g}" if isinstance(value, float) else str(value)
        return str(value)

    env.globals.update(q=q)
    env.filters["num"] = num
    return env


class Viewers:
    """One ``Yard`` per viewer's credentials (or one for everyone without authentication)."""

    def __init__(self, settings: "Settings", *, auth: bool,
                 environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.auth = auth
        self.environ = dict(os.environ if environ is None else environ)
        self._yards: OrderedDict[str, Yard] = OrderedDict()
        self._lock = threading.Lock()

    def yard_for(self, credentials: tuple[str, str] | None) -> "Yard":
        from modelyard.yard import Yard

        if self.auth and credentials is None:
            raise LoginRequired("sign in with your MLflow user name and password")
        key = "-" if not self.auth or credentials is None else hashlib.sha256(
            f"{credentials[0]}\0{credentials[1]}".encode()).hexdigest()
        with self._lock:
            found = self._yards.get(key)
            if found is not None:
                self._yards.move_to_end(key)
                return found
            yard = Yard(self.settings)
            if self.auth and credentials is not None:
                env = {k: v for k, v in self.environ.items() if k not in _OWN_CREDENTIALS}
                env.update(MLFLOW_TRACKING_USERNAME=credentials[0],
                           MLFLOW_TRACKING_PASSWORD=credentials[1])
                yard.ctx.environ = env
            self._yards[key] = yard
            while len(self._yards) > MAX_VIEWERS:
                self._yards.popitem(last=False)
            return yard


def needs_login(settings: "Settings", environ: Mapping[str, str] | None = None) -> bool:
    """Whether the tracking server refuses a read without credentials (its basic-auth app)."""
    from modelyard.backend.lean.reader import RestReader, open_reader

    uri = settings.resolved_tracking_uri
    if not uri.startswith(("http://", "https://")):
        return False
    env = {k: v for k, v in (os.environ if environ is None else environ).items()
           if k not in _OWN_CREDENTIALS}
    env["HOME"] = "/nonexistent-modelyard-ui"  # nor the ~/.mlflow/credentials file
    reader = open_reader(settings, environ=env)
    if not isinstance(reader, RestReader):
        return False
    try:
        reader.list_models()
        return False
    except PermissionDenied:
        return True
    finally:
        reader.close()


def _credentials(request: "Request") -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep and user else None


def _arg(request: "Request", key: str) -> str:
    value = request.query_params.get(key, "")
    if len(value) > MAX_QUERY:
        raise InvalidInput(f"{key} is longer than {MAX_QUERY} characters")
    if any(ord(c) < 32 for c in value):
        raise InvalidInput(f"{key} holds control characters")
    return value


def create_app(settings: "Settings", *, mlflow_ui: str | None = None, auth: bool | None = None,
               environ: Mapping[str, str] | None = None) -> "FastAPI":
    """The dashboard app for these settings. ``auth`` None: asked of the tracking server."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, Response

    env = _templates()
    viewers = Viewers(settings, auth=needs_login(settings, environ) if auth is None else auth,
                      environ=environ)
    links = MlflowLinks(mlflow_base(settings, mlflow_ui))
    app = FastAPI(title="modelyard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.viewers = viewers
    lock = threading.Lock()  # one page at a time per process: the readers are not shared

    def page(template: str, name: str, request: Request, context: dict[str, Any],
             status: int = 200, headers: dict[str, str] | None = None) -> Response:
        html = env.get_template(template).render(
            here=name, nav=NAV, viewer=getattr(request.state, "viewer", None),
            mlflow_home=links.home, root="", **context)
        return HTMLResponse(html, status_code=status, headers=headers)

    def problem(request: Request, status: int, heading: str, message: str) -> Response:
        if status == 401:
            return page("login.html", "login", request, {"title": "sign in"}, 401,
                        {"WWW-Authenticate": 'Basic realm="modelyard (MLflow credentials)", '
                                             'charset="UTF-8"'})
        return page("error.html", "error", request, {"title": heading, "status": status,
                                                     "heading": heading, "message": message},
                    status)

    def view(request: Request, template: str, name: str,
             build: Callable[[Views], dict[str, Any]], *, verify: bool = False) -> Response:
        credentials = _credentials(request)
        yard = viewers.yard_for(credentials)
        if viewers.auth and credentials is not None:
            request.state.viewer = credentials[0]
        # A page reads each model and version once (the reader's ``remembered`` scope: the
        # trail, the unaudited-move check and the page's own parts all ask for the model).
        remembered = getattr(yard.ctx.reads, "remembered", contextlib.nullcontext)
        with lock, remembered():
            context = build(Views(yard, links, verify=verify))
        return page(template, name, request, context)

    @app.exception_handler(YardError)
    async def yard_error(request: Request, exc: YardError) -> Response:
        if isinstance(exc, PermissionDenied) and (isinstance(exc, LoginRequired)
                                                  or "HTTP 401" in exc.message):
            return problem(request, 401, "sign in", "")
        status = exc.http_status if 400 <= exc.http_status < 600 else 500
        heading = {400: "bad request", 403: "not allowed", 404: "not found",
                   409: "conflict"}.get(status, "unavailable")
        if status >= 500:
            log.warning("ui: %s: %s", request.url.path, exc.message)
        return problem(request, status, heading, exc.message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        status = exc.status_code
        heading = "not found" if status == 404 else "bad request" if status < 500 \
            else "unavailable"
        message = ("no such page: the dashboard has /, /model, /version, /audit, /incidents "
                   "and /serving" if status == 404 else str(exc.detail))
        return problem(request, status, heading, message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return problem(request, 400, "bad request", "the request's parameters are invalid")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("ui: %s failed: %s", request.url.path, type(exc).__name__, exc_info=exc)
        return problem(request, 500, "internal error",
                       "this page failed; the server's log says why")

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        return view(request, "overview.html", "overview",
                    lambda v: {"title": "overview", **v.overview()})

    @app.get("/model", response_class=HTMLResponse)
    def model(request: Request) -> Response:
        name = _required(request, "name")
        below = version_number(_arg(request, "below"))
        number = page_number(_arg(request, "page"))
        a, b = _arg(request, "a"), _arg(request, "b")
        compare = (a, b) if a and b else None
        return view(request, "model.html", "model",
                    lambda v: {"title": name, **v.model(name, below, compare, number)})

    @app.get("/version", response_class=HTMLResponse)
    def version(request: Request) -> Response:
        name = _required(request, "name")
        ref = _required(request, "ref")
        return view(request, "version.html", "version",
                    lambda v: {"title": f"{name} {ref}", **v.version(name, ref)})

    @app.get("/audit", response_class=HTMLResponse)
    def audit(request: Request) -> Response:
        number = page_number(_arg(request, "page"))
        model, actor, action = _arg(request, "model"), _arg(request, "actor"), \
            _arg(request, "action")
        return view(request, "audit.html", "audit",
                    lambda v: {"title": "audit", **v.audit(model, actor, action, number)},
                    verify=True)

    @app.get("/incidents", response_class=HTMLResponse)
    def incidents(request: Request) -> Response:
        number = page_number(_arg(request, "page"))
        return view(request, "incidents.html", "incidents",
                    lambda v: {"title": "incidents", **v.incidents(number)})

    @app.get("/serving", response_class=HTMLResponse)
    def serving(request: Request) -> Response:
        name = _required(request, "name")
        since = _arg(request, "since") or "24h"
        return view(request, "serving.html", "serving",
                    lambda v: {"title": f"serving {name}", **v.serving(name, since)})

    @app.get("/favicon.ico")
    def favicon() -> Response:  # a browser asks for it on every first visit
        return Response(FAVICON, media_type="image/svg+xml",
                        headers={"Cache-Control": "max-age=86400"})

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    return app


def _required(request: "Request", key: str) -> str:
    value = _arg(request, key)
    if not value:
        raise InvalidInput(f"missing ?{key}=")
    return value


__all__ = ["LoginRequired", "NotFound", "Viewers", "create_app", "needs_login"]
