"""Many versions fast, for scale tests and benchmarks: version 1 copied by SQL.

MLflow's ``create_model_version`` costs O(n) per call (hours for 10,000 versions), so the bulk
of a big model is copied from a version registered through modelyard, in three statements on
MLflow's own tables (SQLite for the embedded default, PostgreSQL for the team stack):
versions ``2 .. last`` get version 1's columns and tags, semver ``1.0.<k-1>``, stage ``none``,
created a day ago (so the pending ones read as left over from crashed registrations, not in
flight); 1 in 89 is pending, 1 in 97 deleted. Versions a test or benchmark reads by reference
come through modelyard's own write path.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

_VERSIONS = """
INSERT INTO model_versions ({columns})
WITH RECURSIVE seq(k) AS (SELECT 2 UNION ALL SELECT k + 1 FROM seq WHERE k < {last})
SELECT {picked} FROM model_versions mv, seq WHERE mv.name = {p} AND mv.version = 1
"""
_TAGS = """
INSERT INTO model_version_tags (key, value, name, version, workspace)
WITH RECURSIVE seq(k) AS (SELECT 2 UNION ALL SELECT k + 1 FROM seq WHERE k < {last})
SELECT t.key, CASE t.key WHEN 'modelyard.semver' THEN '1.0.' || CAST(k - 1 AS TEXT)
                         WHEN 'modelyard.stage' THEN 'none'
                         WHEN 'modelyard.status' THEN
                              CASE WHEN k {mod} 89 = 0 THEN 'pending' ELSE 'ready' END
                         ELSE t.value END,
       t.name, k, t.workspace
FROM model_version_tags t, seq WHERE t.name = {p} AND t.version = 1
"""
_DELETE = """
UPDATE model_versions SET current_stage = 'Deleted_Internal', source = 'REDACTED-SOURCE-PATH',
       run_id = 'REDACTED-RUN-ID'
WHERE name = {p} AND version > 1 AND version <= {last} AND version {mod} 97 = 0
"""


def version_columns() -> list[str]:
    """MLflow's ``model_versions`` columns, read from MLflow's own table definition."""
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

    return [column.name for column in SqlModelVersion.__table__.columns]


def copy_versions(connection: Any, name: str, last: int, mark: str = "?") -> None:
    """Copy version 1 of ``name`` (and its tags) into versions 2..``last``.

    ``mark``: the driver's parameter mark (``?`` for sqlite3, ``%s`` for psycopg2)."""
    if last < 2:
        return
    columns = version_columns()
    picked = ", ".join("seq.k" if c == "version" else
                       ("mv.creation_time + seq.k - 86400000" if c == "creation_time"
                        else f"mv.{c}")
                       for c in columns)
    mod = "%%" if mark == "%s" else "%"  # psycopg2 wants a literal % doubled
    cursor = connection.cursor()
    cursor.execute(_VERSIONS.format(columns=", ".join(columns), last=last, picked=picked,
                                    p=mark), (name,))
    cursor.execute(_TAGS.format(last=last, p=mark, mod=mod), (name,))
    cursor.execute(_DELETE.format(p=mark, last=last, mod=mod), (name,))
    connection.commit()
    # The planner's statistics, as autovacuum would have them for a model that grew over
    # time: right after a bulk insert PostgreSQL plans MLflow's searches over stale ones
    # (a 50-row search took 10 s until autovacuum's ANALYZE ran, then 0.1 s).
    cursor.execute("ANALYZE model_versions")
    cursor.execute("ANALYZE model_version_tags")
    connection.commit()


def copy_embedded(db_path: Path, name: str, last: int) -> None:
    import sqlite3

    with closing(sqlite3.connect(db_path)) as connection:
        copy_versions(connection, name, last, "?")


def copy_server(pg_port: int, name: str, last: int) -> None:
    import psycopg2

    from tests.support.devstack import PG_DATABASE, PG_USER

    connection = psycopg2.connect(host="127.0.0.1", port=pg_port, user=PG_USER,
                                  dbname=PG_DATABASE)
    try:
        copy_versions(connection, name, last, "%s")
    finally:
        connection.close()


def drop_server(pg_port: int, name: str) -> None:
    """Remove a bulk-built model from the team stack's database at once (the session's server
    is shared: later tests that read every model should not walk its thousands of versions)."""
    import psycopg2

    from tests.support.devstack import PG_DATABASE, PG_USER

    connection = psycopg2.connect(host="127.0.0.1", port=pg_port, user=PG_USER,
                                  dbname=PG_DATABASE)
    try:
        with connection, connection.cursor() as cursor:
            for table in ("model_version_tags", "registered_model_aliases",
                          "registered_model_tags", "model_versions", "registered_models"):
                cursor.execute(f"DELETE FROM {table} WHERE name = %s", (name,))
    finally:
        connection.close()


def pending_and_deleted(last: int) -> tuple[int, int]:
    """How many of versions 2..``last`` ``copy_versions`` made pending, and deleted."""
    deleted = {k for k in range(2, last + 1) if k % 97 == 0}
    pending = {k for k in range(2, last + 1) if k % 89 == 0} - deleted
    return len(pending), len(deleted)
