"""The command table: every command is in ``shell.COMMANDS`` under the module that defines it,
and running one command imports only its own module."""

from __future__ import annotations

import subprocess
import sys

import click

from modelyard.cli import main
from modelyard.cli.shell import COMMANDS, SECTIONS


def test_the_table_names_every_command_and_its_module() -> None:
    listed = main.list_commands(click.Context(main))
    in_table = {name: f"modelyard.cli.{module}"
                for commands in COMMANDS.values() for name, module in commands.items()}
    assert sorted(listed) == sorted(in_table)
    for name, module in in_table.items():
        callback = main.commands[name].callback
        defined_in = sys.modules[module]
        assert callback is not None and callback.__module__ == module, name
        assert defined_in is not None
    assert [name for names in SECTIONS.values() for name in names] == list(in_table)


def test_one_command_imports_only_its_module() -> None:
    code = ("import sys\nfrom modelyard.cli import main\n"
            "try:\n    main(['details', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('modelyard.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()[-1]
    assert out == str(["modelyard.cli.details", "modelyard.cli.render", "modelyard.cli.shell"])


def test_an_unknown_command_is_one_line_and_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "modelyard", "detials"], capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert "No such command 'detials'" in result.stderr and "Traceback" not in result.stderr
