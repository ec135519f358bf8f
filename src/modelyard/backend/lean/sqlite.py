"""The lean reader for the embedded default: MLflow's SQLite file, read-only (``mode=ro``).

Guarded by the schema revision MLflow records (``alembic_version``): only the revisions the
contract suite (``tests/contracts/test_reader_contract.py``) has proved are read; any other
one makes ``SqliteReader.open`` return None, and MLflow's client answers. Never imports mlflow.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from modelyard.backend.lean.base import PROMPT_TAG, WORKSPACE, T, _fallback, _first_line
from modelyard.core.names import STATUS_PENDING, T_STATUS
from modelyard.core.records import (
    SEARCH_PAGE_MAX,
    ModelRecord,
    VersionRecord,
    model_id_from,
    stage_fields_of,
)
from modelyard.errors import BackendError, ModelNotFound, NotFound

__all__ = ["KNOWN_SCHEMA_REVISIONS", "SqliteReader", "run_missing", "version_missing"]

# Alembic revisions of MLflow's schema that tests/contracts/test_reader_contract.py has proved this
# module reads correctly. Any other revision: open_reader returns None (MLflow's client).
KNOWN_SCHEMA_REVISIONS: frozenset[str] = frozenset({
    "dc11669786a5",  # MLflow 3.17 (add_job_executor_persistence_model)
})

_VERSION_COLUMNS = ("mv.name, mv.version, mv.run_id, mv.source, mv.status, mv.creation_time, "
                    "mv.last_updated_time, mv.description, mv.user_id, mv.current_stage")
# The newest version of each held stage's MLflow field, per model (MLflow's latest_versions).
_STAGE_FIELDS = ("SELECT mv.name, mv.current_stage, MAX(mv.version) FROM model_versions mv "
                 "WHERE mv.workspace = ? AND mv.current_stage IN ('Staging', 'Production')")
_NOT_DELETED = "mv.current_stage != 'Deleted_Internal'"  # NULL stages excluded, as MLflow
_NOT_PENDING = (
    "NOT EXISTS (SELECT 1 FROM model_version_tags p WHERE p.workspace = mv.workspace "
    f"AND p.name = mv.name AND p.version = mv.version AND p.key = '{T_STATUS}' "
    f"AND p.value = '{STATUS_PENDING}')"
)


class SqliteReader:
    """Reads the embedded default's MLflow database read-only (``mode=ro``).

    Mirrors MLflow's SQL store: deleted versions (stage ``Deleted_Internal``) are invisible,
    prompts are left out of searches, only the default workspace is read. Build it with
    ``SqliteReader.open(path)`` to get the schema-revision guard.
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.path = Path(db_path)
        uri = f"{self.path.absolute().as_uri()}?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True, timeout=10.0, check_same_thread=False,
                                       isolation_level=None)  # explicit BEGIN in _read
        except sqlite3.Error as exc:
            raise BackendError(detail=f"cannot open {self.path} read-only: {exc}") from None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, db_path: str | os.PathLike[str]) -> SqliteReader | None:
        """A reader for a database whose schema revision is proved, else None (logged)."""
        path = Path(db_path)
        if not path.is_file():
            return _fallback(f"{path} does not exist yet")
        try:
            reader = cls(path)
        except BackendError as exc:
            return _fallback(exc.message)
        try:
            revision = reader.schema_revision()
        except BackendError as exc:
            reader.close()
            return _fallback(exc.message)
        if revision not in KNOWN_SCHEMA_REVISIONS:
            reader.close()
            proved = ", ".join(sorted(KNOWN_SCHEMA_REVISIONS))
            return _fallback(f"{path}: MLflow schema revision {revision!r} is not one the "
                             f"lean reader has proved ({proved})")
        return reader

    def schema_revision(self) -> str | None:
        """The alembic revision MLflow recorded (None if the table is empty)."""
        rows = self._all("SELECT version_num FROM alembic_version")
        return str(rows[0][0]) if len(rows) == 1 else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise BackendError(detail=f"reading {self.path}: {type(exc).__name__}: "
                                   f"{_first_line(str(exc), 200)}") from None

    def _read(self, work: Callable[[], T]) -> T:
        """Several queries seen as one snapshot (a read transaction)."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                try:
                    return work()
                finally:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BackendError(detail=f"reading {self.path}: {type(exc).__name__}: "
                                   f"{_first_line(str(exc), 200)}") from None

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()  # inside _read: lock held

    def _model_exists(self, name: str) -> bool:
        return bool(self._q("SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?",
                            (WORKSPACE, name)))

    def _is_prompt(self, name: str) -> bool:
        # MLflow's version searches leave out every version of a name with a prompt tag.
        return bool(self._q(
            "SELECT 1 FROM model_version_tags WHERE workspace = ? AND key = ? AND name = ? "
            "AND value = 'true' LIMIT 1", (WORKSPACE, PROMPT_TAG, name)))

    def _version_tags(self, name: str, versions: Sequence[int] | None
                      ) -> dict[int, dict[str, str]]:
        sql = "SELECT version, key, value FROM model_version_tags WHERE workspace = ? AND name = ?"
        params: list[Any] = [WORKSPACE, name]
        if versions is not None:
            if not versions:
                return {}
            sql += f" AND version IN ({', '.join('?' * len(versions))})"
            params.extend(versions)
        tags: dict[int, dict[str, str]] = {}
        for version, key, value in self._q(sql, params):
            tags.setdefault(int(version), {})[key] = value
        return tags

    def _aliases(self, name: str) -> dict[str, int]:
        return {alias: int(version) for alias, version in self._q(
            "SELECT alias, version FROM registered_model_aliases WHERE workspace = ? AND name = ?",
            (WORKSPACE, name))}

    def _records(self, name: str, rows: list[tuple[Any, ...]]) -> list[VersionRecord]:
        numbers = [int(row[1]) for row in rows]
        tags = self._version_tags(name, numbers if len(numbers) <= 500 else None)
        aliases = self._aliases(name)
        return [_version_row(row, tags.get(int(row[1]), {}),
                             sorted(a for a, v in aliases.items() if v == int(row[1])))
                for row in rows]

    def _model(self, name: str) -> ModelRecord:
        rows = self._q("SELECT name, description, creation_time, last_updated_time "
                       "FROM registered_models WHERE workspace = ? AND name = ?",
                       (WORKSPACE, name))
        if not rows:
            raise ModelNotFound(name=name)
        tags = dict(self._q("SELECT key, value FROM registered_model_tags "
                            "WHERE workspace = ? AND name = ?", (WORKSPACE, name)))
        fields = [(stage, int(version)) for _, stage, version in self._q(
            f"{_STAGE_FIELDS} AND mv.name = ? GROUP BY mv.name, mv.current_stage",
            (WORKSPACE, name))]
        return _model_row(rows[0], tags, self._aliases(name), fields)

    # -- registry calls -------------------------------------------------------------------
    def list_models(self) -> list[ModelRecord]:
        def work() -> list[ModelRecord]:
            rows = self._q(
                "SELECT name, description, creation_time, last_updated_time "
                "FROM registered_models rm WHERE workspace = ? AND NOT EXISTS ("
                "SELECT 1 FROM registered_model_tags t WHERE t.workspace = rm.workspace "
                "AND t.name = rm.name AND t.key = ? AND t.value = 'true') ORDER BY name",
                (WORKSPACE, PROMPT_TAG))
            tags: dict[str, dict[str, str]] = {}
            for name, key, value in self._q(
                    "SELECT name, key, value FROM registered_model_tags WHERE workspace = ?",
                    (WORKSPACE,)):
                tags.setdefault(name, {})[key] = value
            aliases: dict[str, dict[str, int]] = {}
            for name, alias, version in self._q(
                    "SELECT name, alias, version FROM registered_model_aliases "
                    "WHERE workspace = ?", (WORKSPACE,)):
                aliases.setdefault(name, {})[alias] = int(version)
            fields: dict[str, list[tuple[str, int]]] = {}
            for name, stage, version in self._q(
                    f"{_STAGE_FIELDS} GROUP BY mv.name, mv.current_stage", (WORKSPACE,)):
                fields.setdefault(name, []).append((stage, int(version)))
            return [_model_row(row, tags.get(row[0], {}), aliases.get(row[0], {}),
                               fields.get(row[0], []))
                    for row in rows]

        return self._read(work)

    def get_model(self, name: str) -> ModelRecord:
        return self._read(lambda: self._model(name))

    def get_version(self, name: str, version: int) -> VersionRecord:
        def work() -> VersionRecord:
            rows = self._q(f"SELECT {_VERSION_COLUMNS} FROM model_versions mv WHERE "
                           f"mv.workspace = ? AND mv.name = ? AND mv.version = ? AND "
                           f"{_NOT_DELETED}", (WORKSPACE, name, int(version)))
            if not rows:
                raise version_missing(name, version)
            return self._records(name, rows)[0]

        return self._read(work)

    def alias_holder(self, name: str, alias: str) -> int | None:
        def work() -> int | None:
            if alias.lower() == "latest":  # MLflow answers its reserved alias itself
                rows = self._q(f"SELECT MAX(mv.version) FROM model_versions mv WHERE "
                               f"mv.workspace = ? AND mv.name = ? AND {_NOT_DELETED}",
                               (WORKSPACE, name))
                return int(rows[0][0]) if rows and rows[0][0] is not None else None
            rows = self._q(
                f"SELECT a.version FROM registered_model_aliases a JOIN model_versions mv ON "
                f"mv.workspace = a.workspace AND mv.name = a.name AND mv.version = a.version "
                f"WHERE a.workspace = ? AND a.name = ? AND a.alias = ? AND {_NOT_DELETED}",
                (WORKSPACE, name, alias))
            return int(rows[0][0]) if rows else None

        return self._read(work)

    def _newest_visible(self, name: str, tag: tuple[str, str] | None
                        ) -> VersionRecord | None:
        def work() -> VersionRecord | None:
            if self._is_prompt(name):
                rows: list[tuple[Any, ...]] = []
            else:
                source, params = _versions_from(name, tag)
                rows = self._q(
                    f"SELECT {_VERSION_COLUMNS} FROM {source} AND {_NOT_DELETED} AND "
                    f"{_NOT_PENDING} ORDER BY mv.version DESC LIMIT 1", params)
            if not rows:
                if not self._model_exists(name):
                    raise ModelNotFound(name=name)
                return None
            return self._records(name, rows)[0]

        return self._read(work)

    def version_by_tag(self, name: str, key: str, value: str) -> VersionRecord | None:
        return self._newest_visible(name, (key, value))

    def latest_visible(self, name: str) -> VersionRecord | None:
        return self._newest_visible(name, None)

    def versions(self, name: str) -> list[VersionRecord]:
        def work() -> list[VersionRecord]:
            if not self._model_exists(name):
                raise ModelNotFound(name=name)
            if self._is_prompt(name):
                return []
            rows = self._q(f"SELECT {_VERSION_COLUMNS} FROM model_versions mv WHERE "
                           f"mv.workspace = ? AND mv.name = ? AND {_NOT_DELETED} "
                           "ORDER BY mv.version", (WORKSPACE, name))
            return self._records(name, rows)

        return self._read(work)

    def count_visible(self, name: str) -> int:
        def work() -> int:
            if not self._model_exists(name):
                raise ModelNotFound(name=name)
            if self._is_prompt(name):
                return 0
            rows = self._q(f"SELECT COUNT(*) FROM model_versions mv WHERE mv.workspace = ? "
                           f"AND mv.name = ? AND {_NOT_DELETED} AND {_NOT_PENDING}",
                           (WORKSPACE, name))
            return int(rows[0][0])

        return self._read(work)

    def search_versions(self, name: str, *, tag: tuple[str, str] | None = None,
                        below: int | None = None, limit: int = 100) -> list[VersionRecord]:
        def work() -> list[VersionRecord]:
            if self._is_prompt(name):
                return []
            source, params = _versions_from(name, tag)
            extra = "" if below is None else "AND mv.version < ? "
            rows = self._q(
                f"SELECT {_VERSION_COLUMNS} FROM {source} AND {_NOT_DELETED} {extra}"
                "ORDER BY mv.version DESC LIMIT ?",
                (*params, *([] if below is None else [int(below)]),
                 max(1, min(int(limit), SEARCH_PAGE_MAX))))
            numbers = [int(row[1]) for row in rows]
            tags = self._version_tags(name, numbers)
            return [_version_row(row, tags.get(int(row[1]), {}), []) for row in rows]

        return self._read(work)

    def artifact_location(self, record: VersionRecord) -> str:
        model_id = record.model_id
        if not model_id:
            return record.source

        def work() -> str:
            rows = self._q("SELECT artifact_location FROM logged_models WHERE model_id = ?",
                           (model_id,))
            return str(rows[0][0]) if rows and rows[0][0] else record.source

        return self._read(work)

    def get_run(self, run_id: str) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            rows = self._q("SELECT run_uuid, experiment_id, status, start_time, end_time, "
                           "artifact_uri FROM runs WHERE run_uuid = ?", (run_id,))
            if not rows:
                raise run_missing(run_id)
            run_uuid, experiment_id, status, start, end, artifact_uri = rows[0]
            metrics = {key: float("nan") if is_nan else float(value)
                       for key, value, is_nan in self._q(
                           "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?",
                           (run_id,))}
            params = dict(self._q("SELECT key, value FROM params WHERE run_uuid = ?",
                                  (run_id,)))
            tags = dict(self._q("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))
            return {
                "run_id": run_uuid,
                "experiment_id": str(experiment_id),
                "status": status,
                "start_time": start,
                "end_time": end,
                "artifact_uri": artifact_uri,
                "metrics": metrics,
                "params": params,
                "tags": tags,
            }

        return self._read(work)

    def get_runs(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Several runs, each as ``get_run`` gives it, by id; an absent run is left out (the
        file is local: one look-up after another costs no round trips)."""
        found: dict[str, dict[str, Any]] = {}
        for run_id in dict.fromkeys(r for r in run_ids if r):
            with contextlib.suppress(NotFound):
                found[run_id] = self.get_run(run_id)
        return found


def version_missing(name: str, version: int) -> NotFound:
    return NotFound(f"Model Version (name={name}, version={version}) not found")  # as MLflow


def run_missing(run_id: str) -> NotFound:
    return NotFound(f"Run with id={run_id} not found")  # as MLflow


def _versions_from(name: str, tag: tuple[str, str] | None) -> tuple[str, list[Any]]:
    """The ``FROM ... WHERE`` start of a search over one model's versions, newest first, and
    its parameters; the caller appends ``AND ...`` conditions and the order.

    With a tag, the walk starts from the tag table's primary key (workspace, key, name,
    version), newest first, and looks each match's version up by its key (``CROSS JOIN``
    fixes that order in SQLite): MLflow indexes no tag value, and starting from the versions
    would join every one of them to its tag (v1.0.0 among 10,000: 40 ms, not 10)."""
    if tag is None:
        return "model_versions mv WHERE mv.workspace = ? AND mv.name = ?", [WORKSPACE, name]
    return ("model_version_tags t CROSS JOIN model_versions mv ON mv.workspace = t.workspace "
            "AND mv.name = t.name AND mv.version = t.version WHERE t.workspace = ? AND "
            "t.key = ? AND t.name = ? AND t.value = ?", [WORKSPACE, tag[0], name, tag[1]])


def _version_row(row: tuple[Any, ...], tags: dict[str, str], aliases: list[str]
                 ) -> VersionRecord:
    (name, version, run_id, source, status, created, updated, description, user_id,
     current_stage) = row
    source = source or ""
    return VersionRecord(
        name=name,
        version=int(version),
        run_id=run_id or None,
        source=source,
        status=str(status or ""),
        created_ms=int(created or 0),
        updated_ms=int(updated or 0),
        description=description or "",
        tags=tags,
        aliases=aliases,
        model_id=model_id_from(source),
        user_id=user_id or None,
        current_stage=str(current_stage or "None"),
    )


def _model_row(row: tuple[Any, ...], tags: dict[str, str], aliases: dict[str, int],
               fields: list[tuple[str, int]]) -> ModelRecord:
    name, description, created, updated = row
    return ModelRecord(
        name=name,
        description=description or "",
        created_ms=int(created or 0),
        updated_ms=int(updated or 0),
        tags=tags,
        aliases=aliases,
        stage_fields=stage_fields_of(
            [{"current_stage": stage, "version": version} for stage, version in fields]),
    )
