"""The ``modelyard`` command line. It parses, calls ``Yard``, and renders; nothing else.

Heavy libraries (mlflow, boto3, pandas, sklearn) are imported only inside commands that need
them, so ``modelyard --help`` starts fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from modelyard import __version__
from modelyard.errors import YardError

F = TypeVar("F", bound=Callable[..., Any])

SECTIONS = {
    "Read the registry": ["list", "details", "compare", "history", "lineage", "doctor"],
    "Change the registry": [
        "register", "promote", "approve", "reject", "requests", "rollback", "alias", "tag",
        "cleanup", "export", "import", "adopt", "init",
    ],
    "Operate": ["load", "verify", "demo"],
}


class SectionedGroup(click.Group):
    """Help grouped into sections, like the registry's verbs in DESIGN.md."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        placed: set[str] = set()
        for section, names in SECTIONS.items():
            rows = []
            for name in names:
                command = self.commands.get(name)
                if command is None or command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(70)))
                placed.add(name)
            if rows:
                with formatter.section(section):
                    formatter.write_dl(rows)
        rest = [(n, c.get_short_help_str(70)) for n, c in self.commands.items()
                if n not in placed and not c.hidden]
        if rest:
            with formatter.section("Other"):
                formatter.write_dl(rest)


class State:
    def __init__(self) -> None:
        self.json = False
        self.traceback = False
        self.overrides: dict[str, Any] = {}
        self._yard: Any = None

    @property
    def yard(self) -> Any:
        if self._yard is None:
            from modelyard.yard import Yard

            self._yard = Yard(**self.overrides)
        return self._yard


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> None:
    _console(stderr=True).print(f"[red]Error:[/red] {message}", markup=True, highlight=False)
    sys.exit(code)


def command_options(func: F) -> F:
    """--json on every command, and the one error boundary."""

    @click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
    @click.pass_obj
    @functools.wraps(func)
    def wrapper(state: State, *args: Any, as_json: bool = False, **kwargs: Any) -> Any:
        state.json = state.json or as_json
        try:
            return func(state, *args, **kwargs)
        except YardError as exc:
            if state.traceback:
                raise
            if state.json:
                click.echo(json.dumps({"ok": False, **exc.to_dict()}), err=True)
                sys.exit(exc.exit_code)
            fail(_escape(exc.message), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def emit(state: State, data: Any, render: Callable[[Any], None]) -> None:
    if state.json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render(data)


@click.group(cls=SectionedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelyard")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output for every command.")
@click.option("--traceback", is_flag=True, hidden=True, help="Show the stack on errors.")
@click.option("--tracking-uri", envvar=None, default=None, help="MLflow tracking URI.")
@click.pass_context
def main(ctx: click.Context, as_json: bool, traceback: bool, tracking_uri: str | None) -> None:
    """modelyard: semantic versions, lineage, governed promotion and verified models on MLflow.

    With nothing configured it runs on the embedded default (SQLite and a folder under
    ./.modelyard). Set MLFLOW_TRACKING_URI to use a team's tracking server.

    \b
    Examples:
      modelyard demo
      modelyard list
      modelyard details churn@production
      modelyard promote churn@v1.2.0 --to production --reason "beats v1.1.0"
    """
    state = State()
    state.json = as_json
    state.traceback = traceback
    if tracking_uri:
        state.overrides["tracking_uri"] = tracking_uri
    ctx.obj = state


# -- Read ---------------------------------------------------------------------------------
@main.command("doctor")
@command_options
def doctor_cmd(state: State) -> None:
    """Check the tracking server, artifact store, vault and credentials.

    \b
    Examples:
      modelyard doctor
      modelyard doctor --json
    """
    report = state.yard.doctor()

    def render(data: dict[str, Any]) -> None:
        from rich.table import Table

        console = _console()
        console.print(f"mode: [bold]{data['mode']}[/bold]   user: {data['user']}")
        console.print(f"tracking: {data['tracking_uri']}")
        console.print(f"artifacts: {data['artifact_location']}")
        console.print(f"vault: {data['vault']}")
        table = Table("component", "target", "status", "detail")
        for check in data["checks"]:
            status = "[green]ok[/green]" if check["ok"] else "[red]BROKEN[/red]"
            table.add_row(check["component"], check["target"], status, _escape(check["detail"]))
        console.print(table)
        present = [k for k, v in data["credentials"].items() if v == "set"]
        console.print("credentials set: " + (", ".join(present) if present else "none"))

    emit(state, report, render)
    if not report["ok"]:
        broken = ", ".join(c["component"] for c in report["checks"] if not c["ok"])
        if not state.json:
            _console(stderr=True).print(f"[red]Broken:[/red] {broken}")
        sys.exit(1)


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
            table.add_row(row["name"], str(row["versions"]), latest, row["staging"] or "-",
                          row["production"] or "-")
        _console().print(table)

    emit(state, rows, render)


def _target(target: str, default_ref: str = "latest") -> tuple[str, str]:
    from modelyard.refs import split_target

    name, ref = split_target(target)
    return name, ref or default_ref


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
    mv = state.yard.get(name, ref)

    def render(_: Any) -> None:
        from rich.table import Table

        console = _console()
        fmt = state.yard.settings.format_version
        console.print(f"[bold]{mv.name}[/bold] {fmt(mv.semver) if mv.semver else '(unmanaged)'}"
                      f"  (MLflow version {mv.version})")
        table = Table(show_header=False, box=None)
        rows = [
            ("stage", mv.stage), ("aliases", ", ".join(mv.aliases) or "-"),
            ("bump", f"{mv.bump or '-'}: {mv.bump_reason or ''}"), ("run", mv.run_id or "-"),
            ("source", mv.source), ("artifacts", mv.artifact_location),
            ("manifest", mv.manifest_sha256 or "-"), ("created", mv.created_at),
            ("description", mv.description or "-"),
        ]
        for key, value in rows:
            table.add_row(key, _escape(str(value)))
        for key, value in sorted(mv.metrics.items()):
            table.add_row(f"metric {key}", f"{value:.6g}")
        for key, value in sorted(mv.params.items()):
            table.add_row(f"param {key}", _escape(str(value)))
        console.print(table)

    emit(state, mv.to_dict(), render)


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
        data["restored"] = state.yard.checkout_data(name, ref, Path.cwd())

    def render(info: dict[str, Any]) -> None:
        from rich.table import Table

        console = _console()
        lin = info["lineage"]
        console.print(f"[bold]{info['name']}[/bold] v{info['semver']} (run {info['run_id']})")
        table = Table(show_header=False, box=None)
        for key in ("git_commit", "git_branch", "git_dirty", "python", "seed", "trained_by",
                    "host", "started_at", "duration_s", "parent_run"):
            table.add_row(key, str(lin.get(key) or "-"))
        for ref_ in lin.get("data", []):
            extra = f" (git {ref_['git_commit'][:8]})" if ref_.get("git_commit") else ""
            table.add_row(f"data {ref_['path']}", f"{ref_['source']}:{ref_['hash']}{extra}")
        for pkg, version in sorted(lin.get("packages", {}).items()):
            table.add_row(f"package {pkg}", version)
        console.print(table)
        for item in info.get("restored", []):
            console.print(f"restored {item['path']} (md5 {item['md5']})")

    emit(state, data, render)


# -- Change -------------------------------------------------------------------------------
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
        f"registered [bold]{mv.name}[/bold] {fmt(mv.semver)} (MLflow version {mv.version}; "
        f"{mv.bump}: {_escape(mv.bump_reason or '')})"))


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise YardError_(f"{option} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise YardError_(f"--metric {key}: {value!r} is not a number") from None


def YardError_(message: str) -> YardError:
    from modelyard.errors import InvalidInput

    return InvalidInput(message)


# -- Operate ------------------------------------------------------------------------------
@main.command("load")
@click.argument("target")
@click.option("--to", "dest", required=True, type=click.Path(path_type=Path),
              help="Folder to write the verified files to.")
@click.option("--no-verify", is_flag=True, help="Skip the manifest check (not recommended).")
@command_options
def load_cmd(state: State, target: str, dest: Path, no_verify: bool) -> None:
    """Download a version's files, checked against its manifest, into a folder.

    \b
    Examples:
      modelyard load churn@production --to ./serving/model
    """
    name, ref = _target(target, "production")
    mv, path = state.yard.download(name, ref, dest, verify=not no_verify)
    emit(state, {"name": mv.name, "version": mv.version, "semver": mv.semver, "path": str(path),
                 "verified": not no_verify},
         lambda _: _console().print(f"{mv.label} -> {path} (verified: {not no_verify})"))


@main.command("verify")
@click.argument("target")
@command_options
def verify_cmd(state: State, target: str) -> None:
    """Check a version's stored files against its manifest.

    \b
    Examples:
      modelyard verify churn@production
    """
    name, ref = _target(target)
    result = state.yard.verify(name, ref)
    emit(state, result, lambda r: _console().print(
        f"[green]ok[/green] {r['name']} v{r['semver']}: {r['files']} files, {r['bytes']} bytes "
        "match the manifest"))


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
    from modelyard.scaffold import init_project

    created = init_project(directory, name=name, force=force)
    emit(state, {"dir": str(directory), "files": [str(p) for p in created]}, lambda _: (
        _console().print(f"created {len(created)} files in {directory}; next: "
                         f"cd {directory} && dvc repro")))


@main.command("demo")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="Folder to run in (new or empty; default: a new ./modelyard-demo-N).")
@click.option("--rows", default=2000, show_default=True, help="Synthetic customers at first.")
@click.option("--trees", default=60, show_default=True, help="Trees in the first forest.")
@command_options
def demo_cmd(state: State, directory: Path | None, rows: int, trees: int) -> None:
    """Run the main job end to end: DVC pipeline, semvers, gates, promotion, rollback.

    \b
    Examples:
      modelyard demo
      MLFLOW_TRACKING_URI=http://mlflow:5000 modelyard demo --dir /tmp/demo
    """
    from modelyard.demo import run_demo

    if directory is None:
        index = 1
        while Path(f"modelyard-demo-{index}").exists():
            index += 1
        directory = Path(f"modelyard-demo-{index}")
    console = _console()
    steps = []
    runner = run_demo(directory, rows=rows, trees=trees)
    while True:
        if state.json:
            step = next(runner, None)
        else:
            with console.status("[bold]working...[/bold] (dvc repro trains a model: ~20 s)"):
                step = next(runner, None)
        if step is None:
            break
        steps.append({"step": step.title, "lines": step.lines, "seconds": round(step.seconds, 2),
                      "data": step.data})
        if not state.json and step.title != "summary":
            console.print(f"[bold cyan]{step.title:>20}[/bold cyan]  {_escape(step.lines[0])}"
                          if step.lines else step.title)
            for line in step.lines[1:]:
                console.print(f"{'':>20}  {_escape(line)}")
        if step.title == "summary" and not state.json:
            from rich.table import Table

            table = Table("version", "MLflow #", "bump", "accuracy", "roc_auc", "stage",
                          title=f"{step.data['model']}: demo finished in "
                          f"{step.data['seconds']} s")
            fmt = state.yard.settings.format_version
            for row in step.data["rows"]:
                table.add_row(fmt(row["semver"]), str(row["version"]), row["bump"],
                              f"{row['accuracy']:.3f}", f"{row['roc_auc']:.3f}", row["stage"])
            console.print(table)
    if state.json:
        click.echo(json.dumps(steps, indent=1, default=str))


# Commands defined in their own modules register themselves on `main`.
from modelyard import cli_exchange, cli_lifecycle  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    # Under `python -m modelyard.cli` this file is `__main__`, a second copy of the module:
    # the command modules registered their commands on `modelyard.cli.main`, so run that one.
    from modelyard.cli import main as _registered_main

    _registered_main()
