"""A new embedded database starts from a copy of MLflow's migrated schema, not from migrations.

MLflow creates a SQLite database by running every Alembic migration it ships (over a hundred
files, 2-4 CPU-seconds), once per new registry: every ``init``, every drill's sandbox, every
import into a new folder. The schema depends only on the MLflow version, so the first database
made with a version leaves an empty copy of itself in the cache (``schema-mlflow-V.db``: tables
and Alembic's revision, no rows), and later new databases start as a copy of it. MLflow then
finds every table present and its revision current (``_verify_schema``), and adds its default
experiment with this registry's own artifact location, as it does for any database without one.

Only a database that does not exist yet is seeded, and atomically (``os.link`` never replaces a
file), under the caller's first-use lock; any failure falls back to MLflow's own migration.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import uuid
from pathlib import Path

_log = logging.getLogger(__name__)

# What a copy keeps of the first database: its schema and Alembic's revision, no rows.
_KEPT_TABLES = frozenset({"alembic_version"})


def template_path(cache_dir: Path) -> Path:
    from mlflow.version import VERSION

    return cache_dir / f"schema-mlflow-{VERSION}.db"


def seed(database: Path, cache_dir: Path) -> bool:
    """Create ``database`` as a copy of the cached empty schema; ``False`` if there is none
    (or ``database`` exists already): MLflow then creates it the usual way."""
    template = template_path(cache_dir)
    if database.exists() or not template.is_file():
        return False
    staged = database.with_name(f".{database.name}.{uuid.uuid4().hex[:8]}.seed")
    try:
        _copy(template, staged)
        os.link(staged, database)  # never replaces: a database made meanwhile is kept
    except FileExistsError:
        return False
    except (OSError, sqlite3.Error) as exc:
        _log.debug("schema cache not used for %s: %s", database, exc)
        return False
    finally:
        staged.unlink(missing_ok=True)
    return True


def remember(database: Path, cache_dir: Path) -> None:
    """Keep an empty copy of ``database`` (just migrated by MLflow) as the cached schema."""
    template = template_path(cache_dir)
    if template.exists() or not database.is_file():
        return
    staged = template.with_name(f".{template.name}.{uuid.uuid4().hex[:8]}")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _copy(database, staged)
        with contextlib.closing(sqlite3.connect(staged)) as copy, copy:
            tables = [row[0] for row in copy.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
            copy.execute("PRAGMA foreign_keys = OFF")
            for table in tables:
                if table not in _KEPT_TABLES:
                    copy.execute(f'DELETE FROM "{table}"')  # table names read from the schema
        with contextlib.closing(sqlite3.connect(staged)) as copy:
            copy.execute("VACUUM")
        os.replace(staged, template)
    except (OSError, sqlite3.Error) as exc:
        _log.debug("schema cache not written to %s: %s", template, exc)
    finally:
        staged.unlink(missing_ok=True)


def _copy(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database, through SQLite's own backup API."""
    read_only = f"{source.absolute().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(read_only, uri=True)) as src, \
            contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
