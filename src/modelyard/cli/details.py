"""Reading versions: ``list`` (every model), ``details`` (one version), ``lineage`` (what
produced it) and ``compare`` (versions side by side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from modelyard.cli.render import lineage_rows, unaudited_mark
from modelyard.cli.shell import (
    State,
    _console,
    _escape,
    _target,
    command_options,
    emit,
    main,
)
from modelyard.core.names import T_COMPILED, T_REPRODUCED
from modelyard.errors import InvalidInput


@main.command("list")
@command_options
def list_cmd(state: State) -> None:
    """List models: version count, latest semver, and who holds staging / production."""
    rows = state.yard.list_models()

    def render(data: list[dict[str, Any]]) -> None:
        from rich.table import Table

        if not data:
            _console().print("No models registered yet.")
            return
        fmt = state.yard.settings.format_version
        table = Table("model", "versions", "latest", "staging", "production")
        for row in data:
            latest = fmt(row["latest"]) if row["latest"] else "-"
            highest = row.get("highest_semver")
            if row["latest"] and highest and highest != row["latest"]:
                # latest is the highest number (what NAME@latest loads): a restored older
                # version takes a new one, so the newest semver is named beside it
                latest += f" (highest {fmt(highest)})"
            moved = {d["stage"] for d in row.get("unaudited") or []}
            table.add_row(row["name"], str(row["versions"]), latest,
                          unaudited_mark(row["staging"] or "-", "staging" in moved),
                          unaudited_mark(row["production"] or "-", "production" in moved))
        _console().print(table)
        for row in data:
            for item in row.get("unaudited") or []:
                _console(stderr=True).print(unaudited_mark(_escape(item["detail"]), True,
                                                       prefix=f"{_escape(row['name'])}: "))

    emit(state, rows, render)


@main.command("details")
@click.argument("target")
@command_options
def details_cmd(state: State, target: str) -> None:
    """Show one version: semver, stage, metrics, params, lineage, where its files live.

    \b
    Examples:
      modelyard details churn            (the latest version)
      modelyard details churn@production
      modelyard details churn@v1.2.0 --json
    """
    name, ref = _target(target)
    mv = state.yard.details(name, ref)
    # The vault holds a result only for versions `reproduce` tagged: no object-store read else.
    reproduced = (state.yard.incidents.last_reproduce(mv.name, mv.version)
                  if T_REPRODUCED in mv.tags else None)
    compiled = _compiled(mv.tags.get(T_COMPILED))

    def render(_: Any) -> None:
        from rich.table import Table

        console = _console()
        fmt = state.yard.settings.format_version
        console.print(f"[bold]{mv.name}[/bold] {fmt(mv.semver) if mv.semver else '(unmanaged)'}"
                      f"  (MLflow version {mv.version})")
        table = Table(show_header=False, box=None)
        moved = {d["stage"] for d in mv.unaudited}
        rows = [
            ("stage", unaudited_mark(mv.stage, bool(moved))),
            ("aliases", unaudited_mark(", ".join(mv.aliases) or "-", bool(moved))),
            ("bump", f"{mv.bump or '-'}: {mv.bump_reason or ''}"), ("run", mv.run_id or "-"),
            ("source", mv.source), ("artifacts", mv.artifact_location),
            ("manifest", mv.manifest_sha256 or "-"), ("signature", _signature_line(mv.signature)),
            ("created", mv.created_at),
            ("description", mv.description or "-"),
        ]
        for key, text in rows:
            table.add_row(key, text if key in ("stage", "aliases") else _escape(str(text)))
        for item in mv.unaudited:
            table.add_row("unaudited", unaudited_mark(_escape(item["detail"]), True))
        for key, value in sorted(mv.metrics.items()):
            table.add_row(f"metric {key}", f"{value:.6g}")
        for key, param in sorted(mv.params.items()):
            table.add_row(f"param {key}", _escape(str(param)))
        for key, text in lineage_rows(mv.lineage.to_dict()):
            table.add_row(_escape(key), _escape(text))
        if reproduced:
            verdict = ("reproduced" if reproduced.get("reproducible") else "did NOT reproduce: "
                       + "; ".join([*(f"likely cause: {c}" for c in
                                      reproduced.get("causes") or []),
                                    *reproduced.get("differences", [])][:3]))
            table.add_row("reproduce", _escape(f"{reproduced.get('at', '?')}: {verdict}"))
        table.add_row("compiled", _escape(_compiled_text(compiled)))
        console.print(table)

    emit(state, {**mv.to_dict(), "reproduce": reproduced, "compiled": compiled}, render)


def _compiled(tag: str | None) -> dict[str, Any]:
    """Whether a compiled (ONNX) copy exists and its parity, from the tag serving sets (no
    vault read); ``runtime`` None: not converted yet."""
    try:
        body = json.loads(tag) if tag else {}
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    return {"exists": body.get("runtime") == "onnx", "runtime": body.get("runtime"),
            "parity": body.get("parity"), "reason": body.get("reason")}


def _compiled_text(compiled: dict[str, Any]) -> str:
    if compiled["runtime"] is None:
        return "not yet (converted when first served or promoted to staging)"
    if not compiled["exists"]:
        return f"no: served through pyfunc ({compiled['reason']})"
    parity = compiled["parity"] or {}
    return (f"onnx; parity on {parity.get('rows')} rows: labels "
            f"{100 * (parity.get('labels_equal') or 0):.0f}% equal, largest probability "
            f"difference {parity.get('max_abs_diff'):.2g}")


def _signature_line(signature: dict[str, Any] | None) -> str:
    if not signature or signature["state"] == "unsigned":
        return "unsigned"
    signer = (signature.get("signer") or "?")[:16]
    if signature["state"] == "signed":
        return f"signed by {signer}" + (" (retired key)" if signature.get("retired") else "")
    return f"{signature['state']}: {signature.get('detail') or ''}"


@main.command("lineage")
@click.argument("target")
@click.option("--checkout", is_flag=True, help="Restore that version's DVC-tracked data here.")
@command_options
def lineage_cmd(state: State, target: str, checkout: bool) -> None:
    """Show the code, data and environment that produced a version.

    \b
    Examples:
      modelyard lineage churn@production
      modelyard lineage churn@v1.0.0 --checkout
    """
    name, ref = _target(target)
    data = state.yard.lineage(name, ref)
    if checkout:
        data.restored = state.yard.checkout_data(name, ref, Path.cwd())

    def render(info: dict[str, Any]) -> None:
        from rich.table import Table

        console = _console()
        lin = info["lineage"]
        console.print(f"[bold]{info['name']}[/bold] v{info['semver']} (run {info['run_id']})")
        table = Table(show_header=False, box=None)
        for key, param in sorted((info.get("params") or {}).items()):
            table.add_row(f"param {_escape(key)}", _escape(str(param)))
        for key, text in lineage_rows(lin):
            table.add_row(_escape(key), _escape(text))
        console.print(table)
        for item in info.get("restored", []):
            console.print(f"restored {item['path']} (md5 {item['md5']})")

    emit(state, data, render)


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
    data = state.yard.compare(name, list(refs) or None).to_dict()
    if plot is not None:
        from modelyard.registry.compare import plot_comparison

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
        # What training took: shown, never highlighted (two trainings never take the same).
        keys.extend(f"training.{k}" for k in (rows[0].get("training") or {}))
        for key in keys:
            group, _, sub = key.partition(".")
            values = [_cell((r.get(group) or {}).get(sub) if sub else r.get(group))
                      for r in rows]
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
