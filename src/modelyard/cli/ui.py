"""``ui``: the dashboard (``modelyard.ui``), a read-only web app over this registry."""

from __future__ import annotations

import click

from modelyard.cli.shell import State, _console, _escape, command_options, emit, main

DEFAULT_PORT = 8050
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@main.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--mlflow-ui", "mlflow_ui", default=None, metavar="URL",
              help="MLflow's UI the pages link to (default: the tracking server, or "
                   "http://127.0.0.1:5000, where `modelyard mlflow-ui` serves it).")
@click.option("--print", "print_only", is_flag=True, help="Print the address; start nothing.")
@command_options
def ui_cmd(state: State, host: str, port: int, mlflow_ui: str | None, print_only: bool) -> None:
    """Open the dashboard: versions and why they bumped, who moved what, health, drills and
    serving, in a browser. Read-only; on a tracking server with MLflow authentication it asks
    each viewer for their MLflow user name and password.

    \b
    Examples:
      modelyard ui                      # then browse http://127.0.0.1:8050
      modelyard ui --host 0.0.0.0 --port 8080
    """
    import logging

    if mlflow_ui is not None and not mlflow_ui.startswith(("http://", "https://")):
        from modelyard.errors import InvalidInput

        raise InvalidInput(f"--mlflow-ui must be an http(s):// address, not {mlflow_ui!r:.80}")
    shown = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    settings = state.yard.settings
    if print_only:
        emit(state, {"url": shown, "tracking": state.yard.tracking.display_uri},
             lambda _: click.echo(shown))
        return
    try:
        import jinja2  # noqa: F401  (the ui extra)
        import uvicorn
    except ImportError as exc:
        from modelyard.errors import MissingDependency

        raise MissingDependency(f"the dashboard needs {exc.name}: pip install "
                                "'modelyard[ui]'") from None
    from modelyard.ui.app import create_app

    app = create_app(settings, mlflow_ui=mlflow_ui)
    if host not in LOOPBACK and not app.state.viewers.auth:
        logging.getLogger("modelyard.ui").warning(
            "the dashboard on %s shows this registry to anyone who reaches it (it asks for "
            "credentials only when the tracking server does)", host)
    _console(stderr=True).print(f"modelyard dashboard on {_escape(shown)} (Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
