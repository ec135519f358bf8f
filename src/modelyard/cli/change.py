"""Commands that change the registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from modelyard.cli.render import _fmt, _render_change
from modelyard.cli.shell import (
    State,
    _console,
    _escape,
    _number,
    _pairs,
    _target,
    command_options,
    emit,
    main,
)
from modelyard.errors import InvalidInput


@main.command("register")
@click.argument("source")
@click.option("--name", "-n", required=True, help="Registered model name.")
@click.option("--data", "-d", multiple=True, help="Training data path (repeatable).")
@click.option("--metric", "-m", multiple=True, help="METRIC=VALUE (repeatable).")
@click.option("--param", "-p", multiple=True, help="PARAM=VALUE (repeatable).")
@click.option("--tag", "-t", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("--description", default=None)
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]), default=None)
@click.option("--version", "explicit", default=None, help="Explicit semver, e.g. 2.0.0.")
@command_options
def register_cmd(
    state: State, source: str, name: str, data: tuple[str, ...], metric: tuple[str, ...],
    param: tuple[str, ...], tag: tuple[str, ...], description: str | None, bump: str | None,
    explicit: str | None,
) -> None:
    """Register a saved MLflow model directory or an MLflow URI (models:/m-..., runs:/...).

    \b
    Examples:
      modelyard register ./model --name churn --data data/train.csv -m accuracy=0.91
      modelyard register models:/m-0123abcd --name churn
    """
    metrics = {k: _number(k, v) for k, v in _pairs(metric, "--metric").items()}
    if "://" not in source and ":/" not in source:
        mv = state.yard.register_directory(
            Path(source), name, metrics=metrics, params=_pairs(param, "--param"),
            data=list(data), description=description, tags=_pairs(tag, "--tag"), bump=bump,
            version=explicit,
        )
    else:
        mv = state.yard.register_uri(
            source, name, data=list(data), description=description, tags=_pairs(tag, "--tag"),
            bump=bump, version=explicit,
        )
    fmt = state.yard.settings.format_version
    emit(state, mv.to_dict(), lambda _: _console().print(
        f"registered [bold]{mv.name}[/bold] {fmt(mv.semver or '?')} (MLflow version "
        f"{mv.version}; "
        f"{mv.bump}: {_escape(mv.bump_reason or '')})"))


@main.command("promote")
@click.argument("target")
@click.option("--to", "stage", required=True, help="staging, production, archived or none.")
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@click.option("--force", is_flag=True, help="Skip staging on the way to production (needs "
              "--reason).")
@click.option("--gate", "gates", multiple=True,
              help="Extra gate: 'accuracy >= 0.85', 'KEY=VALUE' or 'beat accuracy by 0.01' "
              "(repeatable).")
@command_options
def promote_cmd(state: State, target: str, stage: str, reason: str | None, force: bool,
                gates: tuple[str, ...]) -> None:
    """Move a version into a stage; its previous holder moves out.

    Production needs the version to be in staging first (or --force with --reason), and
    every gate of the policy to pass. With production_approval_required a request is filed
    for another user to approve.

    \b
    Examples:
      modelyard promote churn@v1.2.0 --to staging
      modelyard promote churn@staging --to production --reason "beats v1.1.0"
      modelyard promote churn@7 --to production --force --reason "hotfix" --gate "auc >= 0.8"
      modelyard promote churn@v1.0.0 --to archived
    """
    name, ref = _target(target, "")
    if not ref:
        raise InvalidInput(f"name the version to promote: {name}@REF (e.g. {name}@v1.2.0)")
    state.yard.prepare_vault()  # the audit event is written after the registry calls
    change = state.yard.promote(name, ref, to=stage, reason=reason, force=force,
                                gates=list(gates))
    emit(state, change.to_dict(), lambda d: _render_change(state, d))


@main.command("approve")
@click.argument("request_id")
@click.option("--reason", default=None, help="Comment kept in the audit trail.")
@command_options
def approve_cmd(state: State, request_id: str, reason: str | None) -> None:
    """Approve a pending promotion (not by its requester): gates are checked again.

    \b
    Examples:
      modelyard requests churn
      modelyard approve 3f9c0a1b2d --reason "reviewed the holdout report"
    """
    change = state.yard.approve(request_id, reason=reason)
    emit(state, change.to_dict(), lambda d: _render_change(state, d))


@main.command("reject")
@click.argument("request_id")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@command_options
def reject_cmd(state: State, request_id: str, reason: str) -> None:
    """Close a pending promotion without promoting.

    \b
    Examples:
      modelyard reject 3f9c0a1b2d --reason "fails on the March data"
    """
    data = state.yard.reject(request_id, reason=reason)
    emit(state, data, lambda d: _console().print(
        f"request {d['id']} for {_escape(d['name'])} #{d['version']} [red]rejected[/red] "
        f"by {_escape(d['rejected_by'])}: {_escape(d['reason'])}"))


@main.command("rollback")
@click.argument("name")
@click.option("--stage", default="production", type=click.Choice(["production", "staging"]),
              show_default=True)
@click.option("--to", "to", default=None, help="Version to put back (default: the previous "
              "holder, from the audit trail).")
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@command_options
def rollback_cmd(state: State, name: str, stage: str, to: str | None, reason: str | None
                 ) -> None:
    """Put back the previous holder of a stage; the current one is archived and marked.

    \b
    Examples:
      modelyard rollback churn --reason "latency regression"
      modelyard rollback churn --to v1.1.0
      modelyard rollback churn --stage staging
    """
    state.yard.prepare_vault()
    change = state.yard.rollback(name, stage, to, reason=reason)
    emit(state, change.to_dict(), lambda d: _render_change(state, d))


@main.command("alias")
@click.argument("target")
@click.argument("alias")
@click.option("--delete", is_flag=True, help="Remove the alias instead.")
@command_options
def alias_cmd(state: State, target: str, alias: str, delete: bool) -> None:
    """Point a user alias at a version, or remove it (stages move only with promote).

    \b
    Examples:
      modelyard alias churn@v1.2.0 champion
      modelyard alias churn champion --delete
    """
    name, ref = _target(target, "")
    if delete:
        data = state.yard.remove_alias(name, alias)
        emit(state, data, lambda d: _console().print(
            f"removed alias {_escape(d['alias'])} from {_escape(d['name'])} #{d['version']}"))
        return
    if not ref:
        raise InvalidInput(f"name the version: {name}@REF {alias}")
    data = state.yard.set_alias(name, ref, alias)
    emit(state, data, lambda d: _console().print(
        f"{_escape(d['name'])}@{_escape(d['alias'])} -> "
        f"{_fmt(state, d['semver'], d['version'])}"))


@main.command("tag")
@click.argument("target")
@click.argument("pair", required=False)
@click.option("--delete", "delete_key", default=None, metavar="KEY", help="Remove a tag.")
@command_options
def tag_cmd(state: State, target: str, pair: str | None, delete_key: str | None) -> None:
    """Set (KEY=VALUE) or remove (--delete KEY) a tag on a version.

    The modelyard. namespace is reserved.

    \b
    Examples:
      modelyard tag churn@v1.2.0 validation_status=passed
      modelyard tag churn@v1.2.0 --delete validation_status
    """
    name, ref = _target(target)
    if delete_key and pair:
        raise InvalidInput("give KEY=VALUE or --delete KEY, not both")
    if delete_key:
        data = state.yard.remove_tag(name, ref, delete_key)
        emit(state, data, lambda d: _console().print(
            f"removed tag {_escape(d['key'])} from {_escape(d['name'])} #{d['version']}"))
        return
    key, sep, value = (pair or "").partition("=")
    if not sep or not key:
        raise InvalidInput(f"expected KEY=VALUE, got {pair or ''!r}")
    data = state.yard.set_tag(name, ref, key, value)
    emit(state, data, lambda d: _console().print(
        f"{_escape(d['name'])} {_fmt(state, d['semver'], d['version'])}: "
        f"{_escape(d['key'])}={_escape(d['value'])}"))


@main.command("cleanup")
@click.argument("name")
@click.option("--keep", type=int, default=None,
              help="How many of the newest versions to keep (default: max_versions).")
@click.option("--delete", is_flag=True, help="Delete versions (and their files) instead of "
              "archiving them.")
@click.option("--yes", is_flag=True, help="Apply the plan (without it nothing changes).")
@command_options
def cleanup_cmd(state: State, name: str, keep: int | None, delete: bool, yes: bool) -> None:
    """Archive or delete versions beyond the newest N; never touches an alias holder.

    Shows the plan and changes nothing unless --yes is given.

    \b
    Examples:
      modelyard cleanup churn --keep 10
      modelyard cleanup churn --keep 10 --yes
      modelyard cleanup churn --keep 10 --delete --yes
    """
    result = state.yard.cleanup(name, keep, delete=delete, yes=yes)

    def render(data: dict[str, Any]) -> None:
        console = _console()
        verb = "delete" if data["delete"] else "archive"
        done = "done" if data["applied"] else "plan"
        if not data["plan"]:
            console.print(f"{_escape(name)}: nothing to {verb} (keeping the newest "
                          f"{data['keep']})")
        for row in data["plan"]:
            console.print(f"{done}: {row['action']} {_fmt(state, row['semver'], row['version'])}"
                          f" (stage {row['stage']})")
        for row in data["skipped"]:
            console.print(f"kept: {_fmt(state, row['semver'], row['version'])} "
                          f"({_escape(row['why'])})")
        if data["plan"] and not data["applied"]:
            console.print("Nothing changed: run again with --yes to apply.")

    emit(state, result, render)


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


@main.command("init")
@click.argument("directory", type=click.Path(path_type=Path), default=".")
@click.option("--name", default="churn", show_default=True, help="Model name for the project.")
@click.option("--force", is_flag=True, help="Overwrite files the template also has.")
@command_options
def init_cmd(state: State, directory: Path, name: str, force: bool) -> None:
    """Scaffold a project: DVC pipeline (prepare, train, evaluate), params, policy, CI.

    \b
    Examples:
      modelyard init churn-model && cd churn-model && dvc repro
      modelyard init . --name fraud
    """
    from modelyard.project.scaffold import init_project

    created = init_project(directory, name=name, force=force)
    emit(state, {"dir": str(directory), "files": [str(p) for p in created]}, lambda _: (
        _console().print(f"created {len(created)} files in {directory}; next: "
                         f"cd {directory} && dvc repro")))
