"""The serving app: a FastAPI application over one registered model.

``create_app(yard, "churn")`` serves ``churn@production``: it loads the version verified
against its manifest, follows the alias (hot reload, zero failed requests), merges concurrent
requests into one predict call (adaptive micro-batching), and can split traffic between
versions (A/B with sticky routing, a canary ramp) and mirror it to a shadow version.

Endpoints:
    POST /predict       {"instances": [{col: value, ...}]} -> {"predictions", "model",
                        "version", "semver", "arm", "request_id"}
    POST /invocations   MLflow's scoring protocol, answered as ``mlflow models serve`` answers
                        ({"predictions": [...]}); the version is named in X-Model-* headers
    GET  /health        liveness (never needs the token)
    GET  /ready         200 when every arm serves a verified model; says if a reload failed
    GET  /version       name, version, semver, stage, manifest hash, arms, worker pid
    GET  /metrics       Prometheus, labelled by model, version, semver, arm and runtime
    POST /feedback      {"request_id": ..., "label": ...} (or "value" for regressors)
    The Open Inference Protocol (v2, ``v2.py``): GET /v2/health/live, /v2/health/ready,
    /v2/models/NAME[/versions/V], .../ready; POST /v2/models/NAME[/versions/V]/infer

>>> app = create_app(yard, "churn", ab={"production": 90, "staging": 10}, capture_rate=0.1)
>>> uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import random
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelyard.errors import InvalidInput, YardError
from modelyard.serving import v2
from modelyard.serving.capture import CaptureLog
from modelyard.serving.errors import (
    BadRequest,
    ModelNotServed,
    NotReady,
    PayloadTooLarge,
    Unauthorized,
    error_body,
)
from modelyard.serving.metrics import Metrics, no_labels
from modelyard.serving.payload import dumps, loads, parse_body
from modelyard.serving.routing import Arm, CanaryRamp, Router
from modelyard.serving.runtime import Outcome, Runtime
from modelyard.serving.source import ModelSource, store_of

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.serving.source import Registry

log = logging.getLogger("modelyard.serving")

DEFAULT_MAX_BODY = 10 * 1024 * 1024
_REQUEST_ID = re.compile(r"^[\w.\-]{1,128}$")
_ids = random.Random()
_JSON = "application/json"

ArmsSpec = Mapping[str, float] | Iterable[str | Arm | tuple[str, float]]


def parse_arms(spec: ArmsSpec) -> list[Arm]:
    """``{"production": 90, "staging": 10}``, ``["production=90", ...]`` or Arm objects."""
    if isinstance(spec, Mapping):
        return [Arm(str(ref), float(weight)) for ref, weight in spec.items()]
    arms = []
    for item in spec:
        if isinstance(item, Arm):
            arms.append(item)
        elif isinstance(item, tuple):
            arms.append(Arm(str(item[0]), float(item[1])))
        else:
            arms.append(Arm.parse(item))
    return arms


# Every numeric option's range: (low, high), both inclusive. Out of range, NaN or infinite
# is refused in one line before anything starts (an infinite batch wait would hang every
# request and keep SIGTERM's drain from ever ending).
OPTION_RANGES: dict[str, tuple[float, float]] = {
    "max_body_bytes": (1, 1024**3),
    "max_batch": (1, 10_000),
    "max_wait_ms": (0, 1_000),  # the cap on holding a batch open (batching.py)
    "poll_interval": (0, 86_400),  # 0: the holder is never polled (no hot reload)
    "capture_rate": (0, 1),
    "capture_flush_s": (0.1, 3_600),
    "drain_timeout": (0, 86_400),  # `serve --drain-timeout`: seconds SIGTERM waits for requests
}


def check_options(**options: Any) -> None:
    """Refuse a numeric option outside ``OPTION_RANGES`` (or not a finite number)."""
    for key, value in options.items():
        if key not in OPTION_RANGES or value is None:
            continue
        low, high = OPTION_RANGES[key]
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else float("nan")
        if not (math.isfinite(number) and low <= number <= high):
            raise InvalidInput(f"{key.replace('_', '-')} must be a number from {low:g} to "
                               f"{high:g}, not {value!r}")


_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")  # an HTTP field name (RFC 9110), whole


def check_header(name: str) -> str:
    """A routing header's name, lower-cased as Starlette looks it up; refused if not a token."""
    if not isinstance(name, str) or not _HEADER.fullmatch(name):
        raise InvalidInput(f"invalid route header {name!r:.80}: use an HTTP header name, e.g. "
                           "X-Routing-Key")
    return name.lower()


def create_app(
    yard: Registry,
    name: str,
    ref: str = "production",
    *,
    ab: ArmsSpec | None = None,
    shadow: str | None = None,
    canary: str | CanaryRamp | None = None,
    canary_started_at: float | None = None,
    token_env: str | None = "MODELYARD_SERVE_TOKEN",
    max_body_bytes: int = DEFAULT_MAX_BODY,
    batching: bool = True,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    poll_interval: float = 5.0,
    capture_rate: float = 0.0,
    mask: Iterable[str] = (),
    route_field: str | None = None,
    route_header: str = "X-Routing-Key",
    capture_flush_s: float = 5.0,
    confidence: bool = True,
    predict_inline: bool | None = None,
    follow_unaudited: bool = False,
    compiled: bool = True,
    threads: int | None = None,
) -> FastAPI:
    """A FastAPI app serving ``name@ref`` (or the ``ab`` arms), loaded and verified at start.

    ``ab``: weighted arms (sticky by the ``route_header`` header, else the ``route_field``
    field of the request's first row); ``canary``: ``"staging:5->50 over 10m"`` against
    ``ref``, measured from ``canary_started_at`` (epoch seconds) or, when that is None, from
    the start the vault records for the ramp (the first replica's clock), so every replica
    gives a key the same arm; ``shadow``: a reference whose predictions are
    recorded and never returned; ``capture_rate``: share of requests written to
    ``capture/NAME/...`` in the vault, with ``mask`` fields hidden. The bearer token, when the
    ``token_env`` variable is set, guards every endpoint but ``/health``. ``predict_inline``:
    run model calls on the event loop (default: for models whose calls are short, such as
    compiled copies) or in a worker thread (``False``; for slow or GIL-free models).
    ``compiled``: serve a version's compiled (ONNX) copy when it converts and passes parity,
    else its own flavor (``False``: always the flavor, pyfunc). ``threads``: native threads a
    pyfunc model may use per worker (``serve --workers N`` passes the worker's share).

    >>> app = create_app(yard, "churn", shadow="staging", capture_rate=1.0, mask=["email"])
    """
    check_options(max_body_bytes=max_body_bytes, max_batch=max_batch, max_wait_ms=max_wait_ms,
                  poll_interval=poll_interval, capture_rate=capture_rate,
                  capture_flush_s=capture_flush_s)
    arms = parse_arms(ab) if ab else [Arm(str(ref), 100.0)]
    ramp = CanaryRamp.parse(canary) if isinstance(canary, str) else canary
    header = check_header(route_header)
    router = Router(arms, canary=ramp, started_at=canary_started_at)
    source = ModelSource(yard, name, follow_unaudited=follow_unaudited,
                         runtime="auto" if compiled else "pyfunc")
    metrics = Metrics(name)
    capture = CaptureLog(store_of(yard), name, rate=capture_rate, mask=mask,
                         flush_every=capture_flush_s)
    runtime = Runtime(source, router, shadow=shadow, metrics=metrics, capture=capture,
                      batching=batching, max_batch=max_batch, max_wait=max_wait_ms / 1000.0,
                      poll_interval=poll_interval, confidence=confidence,
                      predict_inline=predict_inline, threads=threads,
                      anchor_ramp=canary_started_at is None)
    token = os.environ.get(token_env, "") if token_env else ""  # read, never written
    main_ref = arms[0].ref if ramp else max(arms, key=lambda a: a.weight).ref
    pre_route = no_labels(name)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        await runtime.start()
        status = runtime.status()
        log.info("serving %s: %s", name, ", ".join(
            f"{a['arm']}=v{a['semver']} (#{a['version']}, {a['weight']:g}%)"
            for a in status["arms"]))
        try:
            yield
        finally:
            await runtime.stop()
            metrics.close()

    app = FastAPI(title=f"modelyard: {name}", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.runtime = runtime
    app.state.metrics = metrics

    def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(dumps(body), status_code=status, media_type=_JSON, headers=headers)

    def failure(exc: BaseException, request_id: str | None,
                headers: dict[str, str] | None = None) -> Response:
        status, body = error_body(exc)
        if request_id:
            body["request_id"] = request_id
        return respond(status, body, headers)

    def check_token(request: Request) -> None:
        if not token:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                  token.encode()):
            raise Unauthorized()

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError as exc:
                raise BadRequest(message="invalid Content-Length") from exc
            if declared > max_body_bytes:
                raise PayloadTooLarge(limit=max_body_bytes)
            return await request.body()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise PayloadTooLarge(limit=max_body_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    def request_id_of(request: Request) -> str:
        given = request.headers.get("x-request-id")
        # Not uuid4: it reads os.urandom, a system call per request that waits for the GIL.
        return given if given and _REQUEST_ID.fullmatch(given) else f"{_ids.getrandbits(128):032x}"

    def version_headers(outcome: Outcome, request_id: str) -> dict[str, str]:
        headers = {"x-request-id": request_id, "x-model-name": name, "x-model-arm": outcome.arm}
        if outcome.live is not None:
            headers["x-model-version"] = str(outcome.live.version)
            headers["x-model-semver"] = outcome.live.served.semver
        return headers

    async def answer(request: Request, *, mlflow_style: bool) -> Response:
        started = time.perf_counter()
        request_id = request_id_of(request)
        try:
            check_token(request)
            body = await read_body(request)
            payload = parse_body(body, request.headers.get("content-type"), strict=mlflow_style)
        except YardError as exc:
            metrics.error(pre_route, type(exc).__name__)
            return failure(exc, request_id, {"x-request-id": request_id})
        key = request.headers.get(header)
        if key is None and route_field is not None:
            value = payload.field(route_field)
            key = None if value is None else str(value)
        outcome = await runtime.serve(payload, key=key, request_id=request_id, started=started)
        headers = version_headers(outcome, request_id)
        if outcome.error is not None:
            return failure(outcome.error, request_id, headers)
        if mlflow_style:
            return respond(200, {"predictions": outcome.predictions}, headers)
        live = outcome.live
        assert live is not None
        body_out: dict[str, Any] = {
            "predictions": outcome.predictions, "model": name, "version": live.version,
            "semver": live.served.semver, "arm": outcome.arm, "request_id": request_id,
        }
        if outcome.confidence is not None:
            body_out["confidence"] = outcome.confidence
        return respond(200, body_out, headers)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        return await answer(request, mlflow_style=False)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        return await answer(request, mlflow_style=True)

    @app.get("/health")
    async def health() -> Response:
        return respond(200, {"status": "ok"})

    @app.get("/ping")  # MLflow's scoring server answers its health check here too
    async def ping() -> Response:
        return respond(200, {"status": "ok"})

    @app.get("/ready")
    async def ready(request: Request) -> Response:
        try:
            check_token(request)
        except YardError as exc:
            return failure(exc, None)
        status = runtime.status()
        body = {key: status[key] for key in ("model", "ready", "reload_failed", "arms",
                                             "shadow")}
        return respond(200 if status["ready"] else 503, body)

    @app.get("/version")
    async def version(request: Request) -> Response:
        try:
            check_token(request)
        except YardError as exc:
            return failure(exc, None)
        status = runtime.status()
        main = next(a for a in status["arms"] if a["arm"] == main_ref)
        body = {
            "name": name, "model": name, "ref": main["ref"], "version": main["version"],
            "semver": main["semver"], "stage": main["stage"],
            "manifest_sha256": main["manifest_sha256"], "verified": main["verified"],
            "runtime": main["runtime"], "runtime_reason": main["runtime_reason"],
            "parity": main["parity"], "reload_error": main["reload_error"], **status,
            "pid": os.getpid(),  # which worker process answered (`serve --workers N`)
            "replica": capture.replica,  # the name its capture files carry
            "routing_key": {"header": route_header, "field": route_field},
        }
        return respond(200, body)

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        try:
            check_token(request)
        except YardError as exc:
            return failure(exc, None)
        content, media = metrics.render()
        return Response(content, media_type=media)

    @app.post("/feedback")
    async def feedback(request: Request) -> Response:
        try:
            check_token(request)
            raw = await read_body(request)
            try:
                data = loads(raw)
            except ValueError as exc:
                raise BadRequest(message="feedback must be JSON") from exc
            items = data if isinstance(data, list) else [data]
            known = 0
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("request_id"), str):
                    raise BadRequest(message="feedback needs a request_id and a label or value")
                if "label" not in item and "value" not in item:
                    raise BadRequest(message="feedback needs a label or a value")
                known += runtime.feedback(item["request_id"], label=item.get("label"),
                                          value=item.get("value"))
        except YardError as exc:
            return failure(exc, None)
        return respond(202, {"recorded": len(items), "matched": known})

    # -- the Open Inference Protocol (v2) ------------------------------------------------------
    def v2_error(exc: BaseException) -> Response:
        status, body = error_body(exc)
        # The protocol's error body is {"error": message}; the code rides along.
        return respond(status, {"error": body.get("message", ""),
                                "error_code": body.get("error_code")})

    def v2_slot(model: str, version: str | None) -> Any:
        if model != name:
            raise ModelNotServed(message=f"model {model!r:.80} is not served here (this "
                                 f"server serves {name!r})")
        if version is None:
            return runtime.slots[main_ref]
        slot = runtime.slot_of(version)
        if slot is None:
            serving = ", ".join(str(a["version"]) for a in runtime.status()["arms"])
            raise ModelNotServed(message=f"{name} version {version!r:.40} is not served here "
                                 f"(serving {serving or 'nothing yet'})")
        return slot

    @app.get("/v2/health/live")
    async def v2_live() -> Response:
        return respond(200, {"live": True})

    @app.get("/v2/health/ready")
    async def v2_ready(request: Request) -> Response:
        try:
            check_token(request)
        except YardError as exc:
            return v2_error(exc)
        return respond(200 if runtime.ready else 503, {"ready": runtime.ready})

    @app.get("/v2/models/{model}")
    @app.get("/v2/models/{model}/versions/{version}")
    async def v2_metadata(request: Request, model: str, version: str | None = None) -> Response:
        try:
            check_token(request)
            slot = v2_slot(model, version)
        except YardError as exc:
            return v2_error(exc)
        live = slot.live
        if live is None:
            return v2_error(NotReady(name=name, ref=slot.ref))
        versions = sorted({a["version"] for a in runtime.status()["arms"] if a["version"]})
        return respond(200, v2.metadata(name, [live.version] if version else versions,
                                        live.scorer.runtime, live.served.columns,
                                        callable(getattr(live.served.model, "predict_proba",
                                                         None))))

    @app.get("/v2/models/{model}/ready")
    @app.get("/v2/models/{model}/versions/{version}/ready")
    async def v2_model_ready(request: Request, model: str, version: str | None = None
                             ) -> Response:
        try:
            check_token(request)
            slot = v2_slot(model, version)
        except YardError as exc:
            return v2_error(exc)
        ok = slot.live is not None
        return respond(200 if ok else 503, {"name": name, "ready": ok})

    @app.post("/v2/models/{model}/infer")
    @app.post("/v2/models/{model}/versions/{version}/infer")
    async def v2_infer(request: Request, model: str, version: str | None = None) -> Response:
        started = time.perf_counter()
        request_id = request_id_of(request)
        try:
            check_token(request)
            slot = v2_slot(model, version) if version is not None or model != name else None
            body = await read_body(request)
            payload, asked = v2.parse_infer(
                body, request.headers.get("inference-header-content-length"))
        except YardError as exc:
            metrics.error(pre_route, type(exc).__name__)
            return v2_error(exc)
        key = request.headers.get(header)
        if key is None and route_field is not None:
            value = payload.field(route_field)
            key = None if value is None else str(value)
        outcome = await runtime.serve(payload, key=key,
                                      request_id=asked.id or request_id, started=started,
                                      slot=slot)
        headers = version_headers(outcome, request_id)
        if outcome.error is not None:
            status, error = error_body(outcome.error)
            return respond(status, {"error": error.get("message", ""),
                                    "error_code": error.get("error_code")}, headers)
        live = outcome.live
        assert live is not None and outcome.predictions is not None
        return respond(200, v2.infer_response(name, live.version, live.served.semver,
                                              live.scorer.runtime, asked, outcome.predictions,
                                              outcome.confidence), headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        return respond(exc.status_code, {
            "error": names.get(exc.status_code, "HTTPError"),
            "error_code": "RESOURCE_DOES_NOT_EXIST" if exc.status_code == 404 else "BAD_REQUEST",
            "message": str(exc.detail),
        })

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.error("unexpected error while serving %s: %s", name, type(exc).__name__,
                  exc_info=exc)
        return failure(exc, None)

    return app
