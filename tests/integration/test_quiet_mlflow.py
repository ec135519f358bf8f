"""MLflow's own log lines (issue #24.12): creating and migrating a database is announced at
INFO on MLflow's stderr handler; modelyard keeps it off the user's terminal unless `-v`."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.helpers import run_cli, run_cli_subprocess

# What MLflow and Alembic say when a database is created, or opened and its schema checked
# (a new database made from the cached schema, backend/schema_cache.py, says only the latter).
_LINES = ("Creating initial MLflow database", "alembic.runtime.migration")


def _said(text: str) -> bool:
    return any(line in text for line in _LINES)


def test_mlflow_database_lines_only_with_verbose(isolated: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from modelyard import Yard
    from modelyard.backend.connection import SCHEMA_LOGGERS

    doctor = run_cli("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "no database yet" in doctor.stdout
    assert not (isolated / ".modelyard" / "mlflow.db").exists()  # doctor looks, never creates

    api = Yard(home=str(isolated / "api"))
    assert api.tracking.health()[0]  # the Python API creates its database quietly
    listed = run_cli("--tracking-uri", f"sqlite:///{isolated / 'cli.db'}", "health")
    assert (isolated / "cli.db").exists()
    seen = capsys.readouterr()
    assert not _said(seen.err + seen.out + listed.stderr + listed.stdout)

    try:
        loud = run_cli("-v", "--tracking-uri", f"sqlite:///{isolated / 'loud.db'}", "health")
        seen = capsys.readouterr()
        assert _said(seen.err + loud.stderr)
    finally:
        for name in SCHEMA_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)

    done = run_cli_subprocess("--tracking-uri", f"sqlite:///{isolated / 'sub.db'}", "health")
    assert (isolated / "sub.db").exists()
    assert "mlflow.store" not in done.stderr and "alembic" not in done.stderr, done.stderr
