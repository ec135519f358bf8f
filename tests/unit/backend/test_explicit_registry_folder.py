"""A tracking URI given by hand that names a folder that is not there is one line and exit 2,
not an empty registry; the embedded default's own folder may be missing (empty, unchanged)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from modelyard.cli import main


def test_a_sqlite_uri_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    result = CliRunner().invoke(main, ["--tracking-uri", f"sqlite:///{missing}", "list"])
    assert result.exit_code == 2, result.output
    assert f"no folder {missing.parent}" in result.output
    assert "Traceback" not in result.output
    assert not missing.parent.exists()


def test_the_embedded_default_without_its_folder_is_an_empty_registry(isolated: Path) -> None:
    result = CliRunner().invoke(main, ["list"])  # in the test's own empty working folder
    assert result.exit_code == 0 and "No models registered yet." in result.output
    assert list(isolated.iterdir()) == []
