"""CLI commands for compare, export, import and adopt."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from modelyard.cli import State, _console, _escape, command_options, emit, main
from modelyard.errors import InvalidInput


def _label(row: dict[str, Any], fmt: Any) -> str:
    return fmt(row["semver"]) if row.get("semver") else f"#{row['version']}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        if value and isinstance(value[0], dict):  # an input schema
            return ", ".join(f"{c['name']}:{c['type']}{'' if c['required'] else '?'}"
                             for c in value)
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


@main.command("compare")
@click.argument("name")
@click.argument("refs", nargs=-1)
@click.option("--plot", "plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw each metric across the versions into this PNG file.")
@command_options
def compare_cmd(state: State, name: str, refs: tuple[str, ...], plot: Path | None) -> None:
    """Compare versions side by side; rows that differ are highlighted.

    Without REFS every version of NAME is compared. REFS are version numbers, semvers,
    latest, production, staging or @alias.

    \b
    Examples:
      modelyard compare churn
      modelyard compare churn v1.0.0 production
      modelyard compare churn --plot metrics.png
      modelyard compare churn 1 2 --json
    """
    if plot is not None and plot.suffix.lower() != ".png":
        raise InvalidInput(f"--plot writes a PNG file; give a name ending in .png, not {plot}")
    data = state.yard.compare(name, list(refs) or None)
    if plot is not None:
        from modelyard.exchange import plot_comparison

        data["plot"] = {"path": str(plot), "metrics": plot_comparison(data, plot)}

    def render(info: dict[str, Any]) -> None:
        from rich.table import Table

        fmt = state.yard.settings.format_version
        rows = info["versions"]
        differ = set(info["differences"])
        table = Table(title=f"{info['name']}: {len(rows)} version(s)")
        table.add_column("")
        for row in rows:
            table.add_column(f"{_label(row, fmt)} (#{row['version']})")
        keys: list[str] = ["stage", "aliases", "bump", "bump_reason", "created_at",
                           "input_schema"]
        for group in ("metrics", "params", "data"):
            keys.extend(f"{group}.{k}" for k in sorted({k for r in rows for k in r[group]}))
        for key in keys:
            group, _, sub = key.partition(".")
            values = [_cell(r[group].get(sub) if sub else r.get(group)) for r in rows]
            style = "bold yellow" if key in differ else None
            table.add_row(_escape(key), *[_escape(v) for v in values], style=style)
        console = _console()
        console.print(table)
        if len(rows) > 1:
            console.print("differs: " + (", ".join(info["differences"]) or "nothing"),
                          markup=False)
        if "plot" in info:
            console.print(f"plot of {', '.join(info['plot']['metrics'])} written to "
                          f"{info['plot']['path']}", markup=False)

    emit(state, data, render)


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
    from modelyard.exchange import MAX_DOCUMENT_BYTES

    try:
        size = file.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise InvalidInput(f"{file} is too large ({size} bytes; the limit is "
                               f"{MAX_DOCUMENT_BYTES})")
        raw = file.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{file}: no such file") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror or exc}") from None
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


@main.command("adopt")
@click.argument("name")
@command_options
def adopt_cmd(state: State, name: str) -> None:
    """Bring versions registered by plain MLflow under modelyard (semver and manifest).

    Versions are taken in MLflow version order: the first becomes 1.0.0, later ones are
    bumped by the same rules as registration. Already managed versions are left alone.

    \b
    Examples:
      modelyard adopt churn
      modelyard adopt churn --json
    """
    adopted = state.yard.adopt(name)
    fmt = state.yard.settings.format_version

    def render(items: list[dict[str, Any]]) -> None:
        from rich.table import Table

        console = _console()
        if not items:
            console.print(f"{name}: nothing to adopt (every version is already managed)",
                          markup=False)
            return
        table = Table("MLflow version", "semver", "stage", "bump", "reason")
        for item in items:
            table.add_row(str(item["version"]), fmt(item["semver"]), item["stage"],
                          item["bump"] or "-", _escape(item["bump_reason"] or ""))
        console.print(table)

    emit(state, [mv.to_dict() for mv in adopted], render)
