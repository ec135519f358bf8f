"""``export`` and ``import``: the registry as one JSON document, written out and read back in."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from modelyard.cli.shell import (
    State,
    _console,
    _escape,
    command_options,
    emit,
    main,
)
from modelyard.errors import InvalidInput


@main.command("export")
@click.argument("names", nargs=-1)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON document here (default: standard output).")
@command_options
def export_cmd(state: State, names: tuple[str, ...], out: Path | None) -> None:
    """Export the registry (or some models) to one JSON document.

    The document holds MLflow's registry records plus modelyard's semvers, stages, manifests,
    lineage, metrics and params. It never holds credentials.

    \b
    Examples:
      modelyard export --out registry.json
      modelyard export churn fraud --out two-models.json
      modelyard export churn > churn.json
    """
    doc = state.yard.export(list(names) or None)
    text = json.dumps(doc, indent=2, sort_keys=False, default=str)
    if out is None:
        click.echo(text)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text + "\n")
        tmp.replace(out)
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror or exc}") from None
    versions = sum(len(m["versions"]) for m in doc["models"])
    summary = {"out": str(out), "models": len(doc["models"]), "versions": versions,
               "bytes": len(text) + 1}
    emit(state, summary, lambda s: _console().print(
        f"exported {s['models']} model(s), {s['versions']} version(s) to {s['out']}",
        markup=False))


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and show what would be created.")
@click.option("--source-tracking-uri", default=None,
              help="Where to fetch the exported artifacts from, if not the export's own "
              "tracking URI.")
@command_options
def import_cmd(state: State, file: Path, dry_run: bool, source_tracking_uri: str | None
               ) -> None:
    """Recreate an exported registry here (idempotent; refuses malformed files).

    The whole file is checked before anything is written. Versions already here (same
    model, semver and manifest) are skipped; files are copied in and verified.

    \b
    Examples:
      modelyard import registry.json --dry-run
      modelyard import registry.json
    """
    from modelyard.registry.export_format import MAX_DOCUMENT_BYTES
    from modelyard.store.files import read_capped

    # The read keeps the limit, not stat(): /dev/zero and a pipe report a size of 0.
    raw = read_capped(file, MAX_DOCUMENT_BYTES, "an export document")
    try:
        summary = state.yard.import_registry(raw, dry_run=dry_run,
                                             source_tracking_uri=source_tracking_uri)
    except InvalidInput as exc:
        raise InvalidInput(f"{file}: {exc.message}") from None

    def render(s: dict[str, Any]) -> None:
        from rich.table import Table

        console = _console()
        fmt = state.yard.settings.format_version
        table = Table("model", "version", "result", "detail")
        for item in s.get("would_create", []):
            table.add_row(_escape(item["name"]), fmt(item["semver"]), "would create", "")
        for item in s["created"]:
            table.add_row(_escape(item["name"]), fmt(item["semver"]), "[green]created[/green]",
                          f"MLflow version {item['version']}")
        for item in s["skipped"]:
            label = fmt(item["semver"]) if item["semver"] else f"#{item['version']}"
            table.add_row(_escape(item["name"]), label, "skipped", _escape(item["reason"]))
        for item in s["failed"]:
            table.add_row(_escape(item["name"]), fmt(item["semver"]), "[red]FAILED[/red]",
                          _escape(item["error"]))
        if table.row_count:
            console.print(table)
        for warning in s["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {_escape(warning)}")
        verb = "would create" if s["dry_run"] else "created"
        count = len(s.get("would_create", [])) if s["dry_run"] else len(s["created"])
        console.print(f"{verb} {count}, skipped {len(s['skipped'])}, failed {len(s['failed'])}",
                      markup=False)

    emit(state, summary, render)
    if summary["failed"]:
        first = summary["failed"][0]
        if not state.json:
            _console(stderr=True).print(
                f"[red]Error:[/red] {len(summary['failed'])} version(s) not imported; first: "
                f"{_escape(first['error'])}")
        sys.exit(1)
