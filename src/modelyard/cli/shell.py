"""What every command shares: the group, the shared state, the one error boundary, output.

``COMMANDS`` maps every command, by help section, to the module that defines it: one module per
command group, named after it (``details``, ``promote``, ``snapshot``, ``serve``, ...). Command
modules import this module and ``render``, never each other. Heavy libraries (mlflow, boto3,
pandas, sklearn) are imported only inside commands that need them, so ``modelyard --help``
starts fast.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from modelyard import __version__
from modelyard.errors import YardError

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.yard import Yard

F = TypeVar("F", bound=Callable[..., Any])

# Every command, by help section, with the module that defines it. A command's module is
# imported when the command runs (or when help lists them all), so `modelyard details` does
# not pay for importing the serving app, the drills or the exchange commands.
COMMANDS: dict[str, dict[str, str]] = {
    "Read the registry": {
        "list": "details", "details": "details", "compare": "details", "history": "history",
        "lineage": "details", "doctor": "doctor",
        "mlflow-ui": "doctor", "ui": "ui",
    },
    "Change the registry": {
        "register": "register", "promote": "promote", "approve": "promote",
        "reject": "promote", "requests": "promote", "rollback": "promote", "alias": "alias",
        "tag": "tag", "cleanup": "cleanup", "export": "exchange", "import": "exchange",
        "adopt": "register", "init": "init", "sign": "sign",
    },
    "Operate": {
        "load": "load", "verify": "load", "demo": "demo", "backup": "backup",
        "restore": "backup", "repair": "repair", "snapshot": "snapshot",
        "serve": "serve", "monitor": "serve", "ab": "serve",
    },
    "Incidents": {
        "health": "health", "recover": "recover", "drill": "drill", "reproduce": "reproduce",
    },
}
SECTIONS = {section: list(commands) for section, commands in COMMANDS.items()}
_MODULE_OF = {name: module for commands in COMMANDS.values() for name, module in commands.items()}


class SectionedGroup(click.Group):
    """Help grouped into the sections of ``COMMANDS``; each command's module imported on first
    use (click's lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in dict.fromkeys(_MODULE_OF.values()):
            _load(module)
        return list(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _MODULE_OF:
            _load(_MODULE_OF[cmd_name])
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name and command is not None and not isinstance(command, click.Group):
            hint = seed_spelling_hint(name, command, rest)
            if hint:
                fail(_escape(hint), 2)
        return name, command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.list_commands(ctx)
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


# The seeds' scripts spell a version as --model NAME --version N, a stage move as --stage, an
# output file as --output. A command without such an option answers with its own spelling
# (one line, exit 2) instead of click's bare "No such option".
_SEED_OPTIONS = ("--model", "--version", "--stage", "--output")


def seed_spelling_hint(name: str, command: click.Command, args: list[str]) -> str | None:
    """``use `modelyard load churn@3 --to DIR` instead of --model churn --version 3``, or None
    when ``args`` hold none of the seeds' options that ``command`` lacks."""
    import shlex

    own = {opt for param in command.params for opt in getattr(param, "opts", [])}
    seed: dict[str, str] = {}
    kept: list[str] = []
    shown: list[str] = []
    items = iter(args)
    for arg in items:
        option, sep, value = arg.partition("=")
        if option in _SEED_OPTIONS and option not in own:
            value = value if sep else next(items, "")
            seed[option] = value
            shown += [option, value]
        else:
            kept.append(arg)
    if not seed:
        return None
    model = seed.get("--model")
    if model is None and kept and not kept[0].startswith("-"):
        model = kept.pop(0)
    rebuilt: list[str] = []
    if model is not None:
        version = seed.get("--version")
        rebuilt.append(f"{model}@{version}" if version else model)
    elif "--version" in seed:
        rebuilt.append(f"NAME@{seed['--version']}")
    rebuilt += kept
    if "--stage" in seed:
        stage = seed["--stage"].strip().lower()
        rebuilt += ["--to", "none" if stage == "development" else stage]
        if model is not None and "--version" not in seed and "@" not in model:
            rebuilt[0] = f"{model}@REF"
    if "--output" in seed:
        rebuilt += ["--out", seed["--output"]]
    if name == "load" and "--to" not in kept:
        rebuilt += ["--to", "DIR"]
    def join(words: list[str]) -> str:  # a newline or control character is shown escaped
        return " ".join(shlex.quote(w) if w.isprintable() else repr(w) for w in words)

    return f"use `modelyard {name} {join(rebuilt)}` instead of {join(shown)}"


def _load(module: str) -> None:
    """Import ``modelyard.cli.<module>``, which adds its commands to ``main``."""
    import importlib

    importlib.import_module(f"modelyard.cli.{module}")


class State:
    def __init__(self) -> None:
        self.json = False
        self.traceback = False
        self.overrides: dict[str, Any] = {}
        self._yard: Yard | None = None

    @property
    def yard(self) -> Yard:
        if self._yard is None:
            from modelyard.yard import Yard

            self._yard = Yard(**self.overrides)
            for note in self._yard.settings.notes:
                _console(stderr=True).print(f"[yellow]note:[/yellow] {_escape(note)}")
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
        except (OSError, ValueError, RecursionError) as exc:
            # Expected failures of the machine or of a user's file: one line, never a stack.
            if state.traceback:
                raise
            problem = _expected_problem(exc)
            if state.json:
                click.echo(json.dumps({"ok": False, "error": type(exc).__name__,
                                       "message": problem}), err=True)
                sys.exit(2)
            fail(_escape(problem), 2)

    return wrapper  # type: ignore[return-value]


def _expected_problem(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "input nested too deeply"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{where}{exc.strerror or exc}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {first[:300]}"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def plain(data: Any) -> Any:
    """A typed result (or a list of them) as JSON-ready data."""
    if hasattr(data, "to_dict"):
        return data.to_dict()
    if isinstance(data, list):
        return [plain(item) for item in data]
    return data


def emit(state: State, data: Any, render: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON with ``--json``, else let ``render`` draw it."""
    data = plain(data)
    if state.json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render(data)


@click.group(cls=SectionedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelyard")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output for every command.")
@click.option("--traceback", is_flag=True, hidden=True, help="Show the stack on errors.")
@click.option("--tracking-uri", envvar=None, default=None, help="MLflow tracking URI.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also show MLflow's own log lines (database creation, migrations).")
@click.pass_context
def main(ctx: click.Context, as_json: bool, traceback: bool, tracking_uri: str | None,
         verbose: bool) -> None:
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
    if verbose:
        import logging

        from modelyard.backend.connection import SCHEMA_LOGGERS

        for name in SCHEMA_LOGGERS:  # a level set: the backend leaves them as asked
            logging.getLogger(name).setLevel(logging.INFO)
    state = State()
    state.json = as_json
    state.traceback = traceback
    if tracking_uri:
        state.overrides["tracking_uri"] = tracking_uri
    ctx.obj = state


def _target(target: str, default_ref: str = "latest") -> tuple[str, str]:
    from modelyard.core.refs import split_target

    name, ref = split_target(target)
    return name, ref or default_ref


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
        number = float(value)
    except ValueError:
        raise YardError_(f"--metric {key}: {value!r} is not a number") from None
    if not math.isfinite(number):  # "nan", "inf", "1e999": floats, but no metric's value
        raise YardError_(f"--metric {key}: {value!r} is not a finite number")
    return number


def YardError_(message: str) -> YardError:
    from modelyard.errors import InvalidInput

    return InvalidInput(message)


