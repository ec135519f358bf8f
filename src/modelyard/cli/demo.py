"""``demo``: the main job end to end, a DVC pipeline whose model modelyard versions, gates,
promotes and rolls back.

``run_demo`` yields one ``Step`` per thing it did; the ``demo`` command prints them (or their
JSON). It works on the embedded default and, unchanged, against a team stack
(``MLFLOW_TRACKING_URI`` set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli.shell import State, _console, _escape, command_options, main
from modelyard.core.names import T_SEMVER, T_STAGE
from modelyard.errors import GateFailed, InvalidInput, UserError

if TYPE_CHECKING:
    from modelyard.core.settings import Settings


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
            console.print(f"Browse it: [bold]{_escape(step.data['ui'])}[/bold] "
                          "(then http://127.0.0.1:8050)")
    if state.json:
        click.echo(json.dumps(steps, indent=1, default=str))


@dataclass
class Step:
    title: str
    lines: list[str]
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class DemoError(UserError):
    template = "demo step failed: {detail}"


def project_settings(project: Path) -> Settings:
    """The settings a process started in ``project`` (an absolute folder) resolves: its
    modelyard.toml and the environment, with a relative ``home`` taken inside ``project``."""
    from modelyard.core.config import load_settings

    settings = load_settings(cwd=project)
    if not Path(settings.home).expanduser().is_absolute():
        settings = load_settings({"home": str(project / settings.home)}, cwd=project)
    return settings


def _run(args: list[str], cwd: Path, what: str) -> str:
    # Stages run `python ...`: make that the interpreter modelyard runs in (its venv).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False,
                          env={**os.environ, "PATH": path, "PYTHONWARNINGS": "ignore",
                               "DVC_NO_ANALYTICS": "1"})
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise DemoError(detail=f"{what}: {' | '.join(tail)}")
    return done.stdout


def _commit(project: Path, message: str) -> None:
    _run(["git", "add", "-A"], project, "git add")
    _run(["git", "-c", "user.name=modelyard demo", "-c", "user.email=demo@modelyard.invalid",
          "commit", "-q", "--allow-empty", "-m", message], project, "git commit")


def _repro(project: Path) -> dict[str, Any]:
    _run([sys.executable, "-m", "dvc", "repro", "-q"], project, "dvc repro")
    info: dict[str, Any] = json.loads((project / "model.json").read_text())
    metrics = json.loads((project / "metrics" / "evaluate.json").read_text())
    info["metrics"] = metrics
    return info


def run_demo(directory: Path, *, rows: int = 2000, trees: int = 60,
             name: str | None = None) -> Iterator[Step]:
    """Run the demo in ``directory`` (created; must be empty), yielding each step."""
    from modelyard.project import git
    from modelyard.project.dvc import set_param
    from modelyard.project.scaffold import init_project
    from modelyard.yard import Yard

    started = time.perf_counter()
    directory = directory.absolute()
    if directory.exists() and any(directory.iterdir()):
        raise InvalidInput(f"{directory} is not empty: give --dir a new folder")
    clock = time.perf_counter()
    model = name or "churn"
    if name is None and os.environ.get("MLFLOW_TRACKING_URI"):
        # A shared server may have run the demo before: keep the story starting at v1.0.0.
        model = f"churn-demo-{uuid.uuid4().hex[:6]}"
    # The demo's project is a repository of its own, never part of one it happens to sit in.
    directory.mkdir(parents=True, exist_ok=True)
    git.init_repository(directory)
    # The scaffolded policy is the demo's: gates accuracy >= 0.75 and roc_auc >= 0.83, and
    # auto-promotion to staging of a version with roc_auc >= 0.83.
    init_project(directory, name=model)
    # The demo keeps its backup store beside the registry; in real use a second disk or an
    # s3://bucket/prefix of its own.
    toml = directory / "modelyard.toml"
    toml.write_text(toml.read_text().replace(
        '# backup = "s3://my-bucket/modelyard/backup"',
        'backup = ".modelyard/backup"  # demo; in real use s3://my-bucket/modelyard/backup', 1))
    params = directory / "params.yaml"
    set_param(params, "prepare", "n_rows", str(rows))
    set_param(params, "train", "n_estimators", str(trees))
    # Three folds, not the template's five: the cross-validated scores are reported, the gates
    # read the held-out ones; each of the demo's four trainings is a second or so shorter.
    set_param(params, "train", "cv_folds", "3")
    # The registry the project's own stages register into (they run with cwd=directory),
    # opened without changing this process's working directory.
    yard = Yard(project_settings(directory))
    _commit(directory, "modelyard demo: scaffold")
    yield Step("init", [f"scaffolded a DVC project in {directory}",
                        f"tracking: {yard.settings.resolved_tracking_uri}"],
               {"dir": str(directory), "model": model}, time.perf_counter() - clock)

    summary: list[dict[str, Any]] = []

    def repro(title: str, message: str) -> dict[str, Any]:
        clock = time.perf_counter()
        info = _repro(directory)
        _commit(directory, message)
        mv = yard.get(model, info["version"], full=False)
        metrics = info["metrics"]
        summary.append({"semver": mv.semver, "version": mv.version, "bump": mv.bump,
                        "accuracy": metrics.get("accuracy"), "roc_auc": metrics.get("roc_auc")})
        lines = [f"{_v(yard, mv.semver)} registered ({mv.bump}: {mv.bump_reason})",
                 f"accuracy {metrics.get('accuracy', 0):.3f}, roc_auc "
                 f"{metrics.get('roc_auc', 0):.3f}; stage after policy: {mv.stage}"]
        step = Step(title, lines, {"version": mv.to_dict(), "metrics": metrics},
                    time.perf_counter() - clock)
        info["step"] = step
        info["mv"] = mv
        return info

    first = repro("dvc repro", "train v1")
    yield first["step"]
    clock = time.perf_counter()
    change = yard.promote(model, first["version"], to="production",
                          reason="first model passed review")
    gates = ", ".join(f"{g['gate']} {'passed' if g['passed'] else 'FAILED'}"
                      for g in change.gates) or "no gates"
    yield Step("promote", [f"{_v(yard, change.semver)} {change.from_stage} -> production "
                           f"({gates})"], change.to_dict(), time.perf_counter() - clock)

    set_param(params, "prepare", "n_rows", str(int(rows * 1.5)))
    yield repro("new data", "more training rows")["step"]

    set_param(params, "train", "n_estimators", str(trees + 40))
    patch = repro("new hyperparameters", "more trees")
    yield patch["step"]
    clock = time.perf_counter()
    change = yard.promote(model, patch["version"], to="production", reason="more data and trees")
    yield Step("promote", [f"{_v(yard, change.semver)} {change.from_stage} -> production; "
                           f"previous holder v{_semver_of(yard, model, change.replaced)} "
                           "archived"], change.to_dict(), time.perf_counter() - clock)

    set_param(params, "prepare", "drop_columns", "[contract]")
    major = repro("dropped column", "drop the contract column")
    held = major["step"]
    clock = time.perf_counter()
    # Auto-promotion may already have taken it to staging on other data sizes: then the
    # next step up is production, which the same gates guard.
    target = "production" if major["mv"].stage == "staging" else "staging"
    try:
        yard.promote(model, major["version"], to=target, reason="try the smaller schema")
        held.lines.append(f"promoted to {target} (gates passed)")
    except GateFailed as exc:
        held.lines.append(f"held back: {exc.message}")
        held.data["held_back"] = exc.message
    held.seconds += time.perf_counter() - clock
    yield held

    clock = time.perf_counter()
    from modelyard.registry.compare import plot_comparison

    comparison = yard.compare(model)
    plot = directory / "compare.png"
    plot_comparison(comparison, plot)
    differing = comparison.get("differences", {})
    yield Step("compare", [f"{len(comparison.get('versions', []))} versions side by side; "
                           f"differing: {_short(differing)}",
                           f"metrics plotted to {plot}"],
               {"plot": str(plot)}, time.perf_counter() - clock)

    clock = time.perf_counter()
    back = yard.rollback(model, "production", reason="demo: practise a rollback")
    yield Step("rollback", [f"production back to {_v(yard, back.semver)} (was "
                            f"v{_semver_of(yard, model, back.replaced)})"],
               back.to_dict(), time.perf_counter() - clock)

    clock = time.perf_counter()
    events = yard.history(model, verify=True)
    yield Step("history", [f"{len(events)} audit events, hash chain verified",
                           ", ".join(sorted({e.action for e in events}))],
               {"events": len(events)}, time.perf_counter() - clock)

    clock = time.perf_counter()
    document = yard.export([model])
    out = directory / "export.json"
    out.write_text(json.dumps(document, indent=1, default=str))
    count = sum(len(m.get("versions", [])) for m in document.get("models", []))
    yield Step("export", [f"{count} versions exported to {out}"], {"path": str(out)},
               time.perf_counter() - clock)

    clock = time.perf_counter()
    saved = yard.protection.backup([(model, None)])
    sent = sum(v.files_sent for v in saved.versions)
    kept = sum(v.files_skipped for v in saved.versions)
    yield Step("backup", [f"{len(saved.versions)} versions in the backup store: {sent} file(s) "
                          f"sent, {kept} already there (promoted versions are backed up on "
                          "promotion)"], saved.to_dict(), time.perf_counter() - clock)

    clock = time.perf_counter()
    tag = f"{model}-demo"
    snap = yard.protection.snapshots.create(tag, models=[model],
                                            message="the registry at the end of the demo")
    diff = yard.protection.snapshots.diff(tag)
    yield Step("snapshot", [f"snapshot {tag!r} records {len(snap.models)} model(s) and the "
                            f"git commit; diff against now: "
                            f"{'no change' if diff.same else 'changes'}",
                            f"`modelyard snapshot restore {tag} --yes` puts every alias back"],
               snap.to_dict(), time.perf_counter() - clock)

    clock = time.perf_counter()
    drill = yard.incidents.drill("model-corruption", model=model)
    yield Step("drill", [f"model-corruption drill (sandbox copy): detected by "
                         f"{', '.join(drill.detected_by) or 'nothing'}, recovered by "
                         f"{drill.layer} {drill.via}, verified={drill.verified}, "
                         f"MTTR {drill.mttr:.2f} s"], drill.to_dict(),
               time.perf_counter() - clock)

    clock = time.perf_counter()
    health = yard.incidents.health()
    problems = [f"{c.check} {c.target}: {c.detail}" for c in health.checks
                if c.level != "ok"]
    yield Step("health", [f"{health.status} (exit {health.exit_code}); "
                          f"{len(health.checks)} checks", *problems[:3]],
               health.to_dict(), time.perf_counter() - clock)

    final = {v.version: v for v in yard.versions(model)}
    for row in summary:
        record = final.get(row["version"])
        row["stage"] = record.tags.get(T_STAGE, "none") if record else "deleted"
    yield Step("summary", [], {"rows": summary, "model": model,
                               "seconds": round(time.perf_counter() - started, 1),
                               "ui": ui_command(directory)},
               time.perf_counter() - started)


def ui_command(directory: Path) -> str:
    """The command that opens the dashboard on the demo's registry (its own project; a
    tracking server's address comes from the environment, as for the demo)."""
    import shlex

    return f"cd {shlex.quote(str(directory))} && modelyard ui"


def _v(yard: Any, semver: str | None) -> str:
    return str(yard.settings.format_version(semver)) if semver else "?"


def _semver_of(yard: Any, model: str, version: int | None) -> str:
    if version is None:
        return "?"
    return str(yard.tracking.get_version(model, version).tags.get(T_SEMVER, "?"))


def _short(differences: Any) -> str:
    if isinstance(differences, dict):
        keys = [k for k, v in differences.items() if v]
        flat: list[str] = []
        for key in keys:
            value = differences[key]
            flat.extend(value if isinstance(value, list) else [key])
        return ", ".join(flat[:6]) or "nothing"
    if isinstance(differences, list):
        return ", ".join(map(str, differences[:6])) or "nothing"
    return str(differences)
