"""``health``: one status for the registry, stores, stage holders, backups, drills, audit
chains and serving, also as node-exporter text."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from modelyard.cli.shell import (
    State,
    YardError_,
    _console,
    _escape,
    command_options,
    emit,
    main,
)

_STYLE = {"ok": "green", "warn": "yellow", "degraded": "yellow", "critical": "red",
          "healthy": "green"}


@main.command("health")
@click.option("--prometheus", "prometheus", is_flag=False, flag_value="-", default=None,
              metavar="[PATH]", help="Write node-exporter textfile format (to PATH or stdout).")
@click.option("--notify", is_flag=True,
              help="Post a signed webhook when the status changes (and on recovery).")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Check these models only (repeatable; default: every model).")
@command_options
def health_cmd(state: State, prometheus: str | None, notify: bool,
               models: tuple[str, ...]) -> None:
    """Registry, stores, stage holders, backups, drills, audit chains, serving: one status.

    Exit code 0 healthy, 1 degraded, 2 critical.

    \b
    Examples:
      modelyard health
      modelyard health --prometheus /var/lib/node_exporter/modelyard.prom
      modelyard health --notify --json
      modelyard health --model churn
    """
    target = _prometheus_file(prometheus) if prometheus and prometheus != "-" else None
    report = state.yard.incidents.health(notify=notify, models=list(models) or None)
    if prometheus == "-":
        click.echo(report.to_prometheus(), nl=False)
    else:
        if target is not None:
            partial = target.with_name(f".{target.name}.tmp")
            try:
                partial.write_text(report.to_prometheus())
                partial.replace(target)  # node-exporter never reads half a file
            except OSError as exc:
                with contextlib.suppress(OSError):
                    partial.unlink()
                raise YardError_(f"--prometheus: cannot write {target}: "
                                 f"{exc.strerror or exc}") from None

        def render(data: dict[str, Any]) -> None:
            from rich.table import Table

            table = Table("check", "target", "level", "detail", "ms",
                          title=f"health: [{_STYLE[data['status']]}]{data['status']}"
                                f"[/{_STYLE[data['status']]}]")
            for c in data["checks"]:
                style = _STYLE.get(c["level"], "white")
                ms = f"{c['seconds'] * 1000:.0f}" if c["seconds"] is not None else ""
                table.add_row(c["check"], _escape(c["target"]),
                              f"[{style}]{c['level']}[/{style}]", _escape(c["detail"]), ms)
            _console().print(table)

        emit(state, report, render)
    sys.exit(report.exit_code)


def _prometheus_file(value: str) -> Path:
    """The file ``--prometheus`` writes, refused before any check runs when it cannot be one:
    node-exporter's textfile collector reads ``*.prom`` files, so a folder is a mistake."""
    target = Path(value)
    if not target.name or target.is_dir():
        raise YardError_(f"--prometheus {value}: a folder, not a file to write; give the "
                         "file's path, e.g. /var/lib/node_exporter/modelyard.prom")
    return target
