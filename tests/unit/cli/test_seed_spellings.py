"""The seeds' CLI spellings (``--model X --version 3``, ``--stage``, ``--output``) are answered
with modelyard's own, in one line and exit 2, before anything is opened or changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.helpers import run_cli


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (["details", "--model", "churn"],
         "use `modelyard details churn` instead of --model churn"),
        (["load", "--model", "churn", "--version", "3"],
         "use `modelyard load churn@3 --to DIR` instead of --model churn --version 3"),
        (["promote", "churn", "--stage", "Production"],
         "use `modelyard promote churn@REF --to production` instead of --stage Production"),
        (["promote", "--model", "churn", "--version", "3", "--stage", "Production"],
         "use `modelyard promote churn@3 --to production` instead of --model churn "
         "--version 3 --stage Production"),
        (["promote", "churn@3", "--stage", "Development"],
         "use `modelyard promote churn@3 --to none` instead of --stage Development"),
        (["export", "--output", "models.json"],
         "use `modelyard export --out models.json` instead of --output models.json"),
        (["export", "--output=models.json"],
         "use `modelyard export --out models.json` instead of --output models.json"),
        (["cleanup", "--model", "churn", "--keep", "5"],
         "use `modelyard cleanup churn --keep 5` instead of --model churn"),
        (["compare", "--model", "churn"],
         "use `modelyard compare churn` instead of --model churn"),
    ],
)
def test_each_seed_spelling_names_the_modelyard_form(tmp_path: Path, args: list[str],
                                                     wanted: str) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    result = run_cli(*args, cwd=folder)
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: {wanted}"
    assert result.stdout == ""
    assert list(folder.iterdir()) == []  # nothing opened, nothing written


def test_help_and_the_commands_own_options_are_not_hinted(tmp_path: Path) -> None:
    assert run_cli("load", "--help", cwd=tmp_path).returncode == 0
    # `load --to` is load's own option: no hint, click's own check of the missing target
    result = run_cli("load", "--to", "x", cwd=tmp_path)
    assert result.returncode == 2 and "instead of" not in result.stderr
    # a group's subcommands have their own --model (snapshot create, drill run): not hinted
    result = run_cli("snapshot", "create", "--help", "--model", "x", cwd=tmp_path)
    assert result.returncode == 0 and "instead of" not in result.stderr


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["details", "load", "promote", "export", "cleanup"]),
       option=st.sampled_from(["--model", "--version", "--stage", "--output"]),
       value=st.text(max_size=20))
def test_any_seed_option_value_gives_one_line(tmp_path: Path, command: str, option: str,
                                              value: str) -> None:
    result = run_cli(command, option, value, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"instead of {option}" in lines[0] or "instead of --model" in lines[0]
