"""A new embedded registry starts from the cached empty schema, never from another's rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from modelyard import Yard
from modelyard.backend import schema_cache


def _rows(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute(sql).fetchall()


def test_second_registry_is_seeded_from_the_first_ones_empty_schema(
        tmp_path: Path, trained: dict[str, Any]) -> None:
    cache = tmp_path / "cache"
    first = Yard(home=str(tmp_path / "one"), cache_dir=str(cache))
    first.register(trained["model"], "churn", input_example=trained["X"].head(2))
    template = schema_cache.template_path(cache)
    assert template.is_file()
    # The copy keeps the schema and Alembic's revision, none of the first registry's rows.
    assert _rows(template, "SELECT count(*) FROM registered_models") == [(0,)]
    assert _rows(template, "SELECT count(*) FROM experiments") == [(0,)]
    assert _rows(template, "SELECT count(*) FROM alembic_version") == [(1,)]

    second = Yard(home=str(tmp_path / "two"), cache_dir=str(cache))
    assert [m.name for m in second.list_models()] == []
    version = second.register(trained["model"], "other", input_example=trained["X"].head(2))
    assert version.semver == "1.0.0"
    database = tmp_path / "two" / "mlflow.db"
    names = {row[0] for row in _rows(database, "SELECT name FROM registered_models")}
    assert names == {"other"}
    # MLflow added its default experiment, and modelyard's experiment points at this home.
    experiments = dict(_rows(database, "SELECT name, artifact_location FROM experiments"))
    assert "Default" in experiments
    assert all(str(tmp_path / "one") not in location for location in experiments.values())


def test_an_existing_database_is_never_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    schema_cache.template_path(cache).write_bytes(b"not the one to keep")
    database = tmp_path / "mlflow.db"
    database.write_bytes(b"kept")
    assert schema_cache.seed(database, cache) is False
    assert database.read_bytes() == b"kept"
    assert list(tmp_path.glob(".mlflow.db.*")) == []  # nothing staged is left behind


def test_no_template_means_mlflows_own_migration(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    assert schema_cache.seed(database, tmp_path / "empty-cache") is False
    assert not database.exists()
