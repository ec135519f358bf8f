"""Serving: ``serve`` (a model over HTTP), ``monitor`` (what the served versions did) and the
``ab`` group (``ab report``: how the arms of an A/B test compare).

``serve --workers N`` starts uvicorn workers that each build their app through
``app_factory`` here, from the ``ServeConfig`` file the parent writes.

    modelyard serve churn                         # churn@production on 127.0.0.1:8080
    modelyard serve churn@staging --port 9000 --workers 2
    modelyard serve churn --ab production=90 --ab staging=10 --shadow @candidate
    modelyard monitor churn --since 1h --json
    modelyard ab report churn
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from modelyard.cli.shell import (
    State,
    _console,
    _escape,
    _target,
    command_options,
    emit,
    main,
)
from modelyard.errors import InvalidInput

# Set by `serve --workers N` for its own worker processes only. The leading underscore keeps
# it out of the MODELYARD_* settings namespace, which refuses unknown keys.
CONFIG_ENV = "_MODELYARD_SERVE_CONFIG"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's multiprocess mode
DEFAULT_PORT = 8080


@dataclass
class ServeConfig:
    """Everything a worker process needs to build the app (written as JSON for workers)."""

    name: str
    ref: str = "production"
    ab: list[str] = field(default_factory=list)
    shadow: str | None = None
    canary: str | None = None
    canary_started_at: float | None = None
    token_env: str = "MODELYARD_SERVE_TOKEN"
    max_body_bytes: int = 10 * 1024 * 1024
    batching: bool = True
    max_batch: int = 64
    max_wait_ms: float = 2.0
    poll_interval: float = 5.0
    capture_rate: float = 0.0
    mask: list[str] = field(default_factory=list)
    route_field: str | None = None
    route_header: str = "X-Routing-Key"
    predict_inline: bool | None = None
    follow_unaudited: bool = False
    compiled: bool = True
    threads: int | None = None
    yard_overrides: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"

    def app_options(self) -> dict[str, Any]:
        return {
            "ab": self.ab or None, "shadow": self.shadow, "canary": self.canary,
            "canary_started_at": self.canary_started_at, "token_env": self.token_env,
            "max_body_bytes": self.max_body_bytes, "batching": self.batching,
            "max_batch": self.max_batch, "max_wait_ms": self.max_wait_ms,
            "poll_interval": self.poll_interval, "capture_rate": self.capture_rate,
            "mask": self.mask, "route_field": self.route_field,
            "route_header": self.route_header,
            "predict_inline": self.predict_inline,
            "follow_unaudited": self.follow_unaudited,
            "compiled": self.compiled, "threads": self.threads,
        }


def app_from_config(path: str | os.PathLike[str]) -> Any:
    """Build the app a ``ServeConfig`` JSON file describes (one per worker process)."""
    from modelyard.serving.app import create_app
    from modelyard.yard import Yard

    config = ServeConfig(**json.loads(Path(path).read_text()))
    _logging(config.log_level)
    yard = Yard(**config.yard_overrides)
    return create_app(yard, config.name, config.ref, **config.app_options())


def app_factory() -> Any:
    """uvicorn's factory for ``--workers N``: the config file path comes from the parent."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise InvalidInput(f"{CONFIG_ENV} is not set; start workers with `modelyard serve`")
    return app_from_config(path)


def _logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("modelyard").setLevel(level.upper())


# -- serve --------------------------------------------------------------------------------
@main.command("serve")
@click.argument("target", metavar="NAME[@REF]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 exposes the server to the network).")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (each loads the model; the server keeps no state).")
@click.option("--ab", "ab", multiple=True, metavar="REF=W",
              help="A weighted arm; repeat for each (sticky by --route-header or --route-field).")
@click.option("--shadow", metavar="REF", help="Mirror requests to REF; recorded, never returned.")
@click.option("--canary", metavar="REF:START->END over DURATION",
              help='A canary ramp against NAME@REF, e.g. "staging:5->50 over 10m".')
@click.option("--canary-start", metavar="WHEN",
              help="When the canary ramp began: an ISO date-time or epoch seconds, the same "
              "for every replica (default: the start the first replica records in the vault).")
@click.option("--route-header", default="X-Routing-Key", show_default=True, metavar="HEADER",
              help="Route by this request header's value (sticky A/B and canary arms).")
@click.option("--route-field", metavar="FIELD",
              help="Route by this field of the request's first row when the header is absent.")
@click.option("--capture-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests written to capture/NAME/ in the vault.")
@click.option("--mask", multiple=True, metavar="FIELD", help="Hide this input field in captures.")
@click.option("--poll-interval", type=float, default=5.0, show_default=True,
              help="Seconds between alias look-ups (hot reload); 0 turns reloading off.")
@click.option("--no-batching", is_flag=True, help="One predict call per request.")
@click.option("--max-batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--inline/--threaded", "predict_inline", default=None,
              help="Model calls on the event loop or in a thread (default: inline for "
              "short calls such as forests).")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=2.0, show_default=True)
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=10 * 1024 * 1024,
              show_default=True)
@click.option("--token-env", default="MODELYARD_SERVE_TOKEN", show_default=True,
              help="Environment variable holding the bearer token (unset: no token needed).")
@click.option("--drain-timeout", type=float, default=None, metavar="SECONDS",
              help="On SIGTERM, how long requests in flight may take to finish before they "
              "are cancelled and the last capture files written (default: no limit).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@click.option("--follow-unaudited", is_flag=True,
              help="Follow a stage alias even when it moved without an audit event.")
@click.option("--runtime", type=click.Choice(["auto", "pyfunc"]), default="auto",
              show_default=True,
              help="auto: a version's compiled (ONNX) copy when it converts and passes parity, "
              "else its own flavor; pyfunc: always its own flavor.")
@command_options
def serve_cmd(state: State, target: str, host: str, port: int, workers: int,
              ab: tuple[str, ...], shadow: str | None, canary: str | None,
              canary_start: str | None, route_header: str,
              route_field: str | None, capture_rate: float, mask: tuple[str, ...],
              poll_interval: float, no_batching: bool, max_batch: int,
              predict_inline: bool | None, max_wait_ms: float,
              max_body_bytes: int, token_env: str, drain_timeout: float | None,
              log_level: str,
              follow_unaudited: bool, runtime: str) -> None:
    """Serve a model over HTTP, following its alias (hot reload on promotion).

    \b
    Endpoints: POST /predict, POST /invocations (MLflow's protocol), GET /health,
    /ready, /version, /metrics, POST /feedback, and the Open Inference Protocol (v2):
    /v2/health/live|ready, /v2/models/NAME[/versions/V][/ready|/infer].

    \b
    Examples:
      modelyard serve churn
      modelyard serve churn@staging --port 9000 --workers 2
      modelyard serve churn --ab production=90 --ab staging=10 --shadow @candidate
      modelyard serve churn --canary "staging:5->50 over 30m" --capture-rate 0.1
      modelyard serve churn --ab production=90 --ab staging=10 --route-header X-User-Id
    """
    import uvicorn

    from modelyard.serving.app import check_header, check_options, parse_arms
    from modelyard.serving.routing import CanaryRamp, Router, parse_moment

    name, ref = _target(target, "production")
    check_options(max_body_bytes=max_body_bytes, max_batch=max_batch, max_wait_ms=max_wait_ms,
                  poll_interval=poll_interval, capture_rate=capture_rate,
                  drain_timeout=drain_timeout)
    # uvicorn takes whole seconds: a fraction rounds up, never cutting a drain short
    drain = None if drain_timeout is None else math.ceil(drain_timeout)
    if ab and canary:
        raise InvalidInput("use --ab or --canary, not both")
    arms = parse_arms(list(ab)) if ab else None
    ramp = CanaryRamp.parse(canary) if canary else None
    if canary_start is not None and ramp is None:
        raise InvalidInput("--canary-start needs --canary")
    started_at = parse_moment(canary_start) if canary_start is not None else None
    check_header(route_header)
    Router(arms or parse_arms([f"{ref}=100"]), canary=ramp)  # check the routing before loading
    from modelyard.serving.source import ModelSource

    yard = state.yard
    source = ModelSource(yard, name)
    for each in [*(a.ref for a in arms or []), *([] if arms else [ref]),
                 *([ramp.ref] if ramp else []), *([shadow] if shadow else [])]:
        # One clear line now beats a failed worker start: the version exists and its stored
        # files match its manifest (a tampered file is refused here, not in a traceback).
        yard.verify(name, str(source.check(each)))
    overrides = dict(state.overrides)
    config = ServeConfig(
        name=name, ref=ref, ab=list(ab), shadow=shadow, canary=canary,
        # The ramp's start is one moment for every replica: the one given, else the one the
        # vault records (never this process's start: replicas start at different times).
        canary_started_at=started_at, token_env=token_env,
        max_body_bytes=max_body_bytes, batching=not no_batching, max_batch=max_batch,
        follow_unaudited=follow_unaudited,
        max_wait_ms=max_wait_ms, poll_interval=poll_interval, capture_rate=capture_rate,
        mask=list(mask), route_field=route_field, route_header=route_header,
        predict_inline=predict_inline,
        yard_overrides=overrides, log_level=log_level, compiled=runtime == "auto",
        # A pyfunc model's native thread pools keep to this worker's share of the cores.
        threads=max(1, (os.cpu_count() or 1) // workers),
    )
    _logging(log_level)
    if host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get(token_env):
        logging.getLogger("modelyard.serving").warning(
            "serving on %s without a bearer token (set %s to require one)", host, token_env)
    if workers == 1:
        from modelyard.serving.app import create_app

        app = create_app(yard, name, ref, **config.app_options())
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                    timeout_graceful_shutdown=drain)
        return
    with tempfile.TemporaryDirectory(prefix="modelyard-serve-") as folder:
        path = Path(folder) / "serve.json"
        path.write_text(json.dumps(asdict(config)))
        # The CLI process sets these for its own worker processes (uvicorn spawns them with
        # this environment) and puts them back afterwards: the config file, and a fresh
        # folder for prometheus-client's multiprocess mode so /metrics sums every worker's
        # series (an operator's own PROMETHEUS_MULTIPROC_DIR is kept).
        extra = {CONFIG_ENV: str(path)}
        if not os.environ.get(MULTIPROC_ENV):
            metrics_dir = Path(folder) / "metrics"
            metrics_dir.mkdir()
            extra[MULTIPROC_ENV] = str(metrics_dir)
        saved = {key: os.environ.get(key) for key in extra}
        os.environ.update(extra)
        try:
            uvicorn.run("modelyard.cli.serve:app_factory", factory=True, host=host,
                        port=port, workers=workers, log_level=log_level, access_log=False,
                        timeout_graceful_shutdown=drain)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# -- monitor ------------------------------------------------------------------------------
@main.command("monitor")
@click.argument("name")
@click.option("--since", default="1h", show_default=True,
              help="Window start: a duration ago (30m, 1h, 7d) or an ISO date-time.")
@click.option("--until", default=None, help="Window end (default: now).")
@click.option("--threshold", type=float, default=None,
              help="PSI above which a feature is flagged (default 0.2).")
@command_options
def monitor_cmd(state: State, name: str, since: str, until: str | None,
                threshold: float | None) -> None:
    """Per version: traffic, error rate, latency, confidence and drift, from the capture log.

    \b
    Examples:
      modelyard monitor churn
      modelyard monitor churn --since 24h --json
    """
    from modelyard.core.profile import DRIFT_THRESHOLD
    from modelyard.serving.monitor import monitor

    report = monitor(state.yard, name, since, until=until,
                     threshold=DRIFT_THRESHOLD if threshold is None else threshold)
    emit(state, report, lambda _: _render_monitor(name, report))


def _render_monitor(name: str, report: Any) -> None:
    from rich.table import Table

    console = _console()
    replicas = len(report.replicas)
    console.print(f"[bold]{_escape(name)}[/bold]  {report.since} -> {report.until}  "
                  f"({report.records} captured predictions"
                  + (f" from {replicas} replica{'s' if replicas != 1 else ''})" if replicas
                     else ")"))
    if not report.versions:
        console.print("Nothing captured in that window (serve with --capture-rate > 0).")
        return
    table = Table("version", "arms", "count", "errors", "p50 ms", "p95 ms", "p99 ms",
                  "confidence", f"drift (PSI > {report.threshold:.2g})")
    for v in report.versions:
        label = f"v{v.semver} (#{v.version})" + (" shadow" if v.shadow else "")
        arms = ", ".join(f"{a}:{n}" for a, n in v.arms.items())
        drift = ", ".join(f"[red]{_escape(c)}[/red] {v.drift[c]:.2f}" for c in v.drifted) or (
            "none" if v.drift else _escape(v.drift_note or "-"))
        table.add_row(label, _escape(arms), str(v.count), f"{v.error_rate:.2%}", _ms(v.p50_ms),
                      _ms(v.p95_ms), _ms(v.p99_ms),
                      "-" if v.mean_confidence is None else f"{v.mean_confidence:.3f}", drift)
    console.print(table)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# -- ab report ----------------------------------------------------------------------------
@main.group("ab")
def ab_group() -> None:
    """A/B tests: how the arms of a served model compare."""


@ab_group.command("report")
@click.argument("name")
@click.option("--since", default="7d", show_default=True)
@click.option("--until", default=None)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.05, show_default=True, help="Significance level.")
@click.option("--min-labelled", type=click.IntRange(min=1), default=30, show_default=True,
              help="Labelled predictions each arm needs before a verdict.")
@command_options
def ab_report_cmd(state: State, name: str, since: str, until: str | None, alpha: float,
                  min_labelled: int) -> None:
    """Per arm: traffic, latency and the feedback metric with 95% intervals; a verdict.

    \b
    Examples:
      modelyard ab report churn
      modelyard ab report churn --since 24h --json
    """
    from modelyard.serving.monitor import ab_report

    report = ab_report(state.yard, name, since, until=until, alpha=alpha,
                       min_labelled=min_labelled)
    emit(state, report, lambda _: _render_ab(report))


def _render_ab(report: Any) -> None:
    from rich.table import Table

    console = _console()
    table = Table("arm", "versions", "requests", "share", "p50 ms", "p95 ms", "labelled",
                  report.metric or "metric", "95% CI")
    for arm in report.arms:
        ci = "-" if arm.ci_low is None else f"{arm.ci_low:.3f} - {arm.ci_high:.3f}"
        table.add_row(_escape(arm.arm) + (" (shadow)" if arm.shadow else ""),
                      _escape(", ".join(arm.versions)), str(arm.requests),
                      "-" if arm.shadow else f"{arm.share:.1%}", _ms(arm.p50_ms),
                      _ms(arm.p95_ms), str(arm.labelled),
                      "-" if arm.value is None else f"{arm.value:.4f}", ci)
    console.print(table)
    for c in report.comparisons:
        console.print(f"{_escape(c.arm)} vs {_escape(c.control)}: {c.difference:+.4f} "
                      f"({c.test}, p={c.p_value:.3g}{', significant' if c.significant else ''})")
    colour = {"promote": "green", "keep": "yellow"}.get(report.recommendation, "white")
    console.print(f"[bold {colour}]{report.recommendation}[/bold {colour}]: "
                  f"{_escape(report.reason)}")

