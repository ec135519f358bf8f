"""The embedded default before its database exists: an empty registry, read without creating
it. Never imports mlflow."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelyard.backend.lean.sqlite import run_missing, version_missing
from modelyard.core.records import ModelRecord, VersionRecord
from modelyard.errors import ModelNotFound

__all__ = ["AbsentReader"]


class AbsentReader:
    """The embedded default before its database exists: an empty registry, read without
    creating it (MLflow's client would make ``.modelyard/mlflow.db`` and migrate its schema,
    logging at INFO, just to say "not found").

    Each call first looks for the file again: once a write (in this process or another) has
    made it (or anything else appeared at its path), every call goes to ``then()``, the
    reader ``open_reader`` would pick for it (made once). Answers as ``SqliteReader`` does
    on a registry with no models.
    """

    concurrent = False

    def __init__(self, db_path: str | os.PathLike[str], then: Callable[[], Any]) -> None:
        self.path = Path(db_path)
        self._then = then
        self._live: Any = None

    def current(self) -> Any:
        """What answers now: the reader picked once the database appeared, else None."""
        if self._live is None and os.path.lexists(self.path):
            self._live = self._then()
        return self._live

    def list_models(self) -> list[ModelRecord]:
        live = self.current()
        return [] if live is None else list(live.list_models())

    def get_model(self, name: str) -> ModelRecord:
        live = self.current()
        if live is None:
            raise ModelNotFound(name=name)
        return live.get_model(name)  # type: ignore[no-any-return]

    def get_version(self, name: str, version: int) -> VersionRecord:
        live = self.current()
        if live is None:
            raise version_missing(name, version)
        return live.get_version(name, version)  # type: ignore[no-any-return]

    def alias_holder(self, name: str, alias: str) -> int | None:
        live = self.current()
        return None if live is None else live.alias_holder(name, alias)  # type: ignore[no-any-return]

    def version_by_tag(self, name: str, key: str, value: str) -> VersionRecord | None:
        live = self.current()
        if live is None:
            raise ModelNotFound(name=name)
        return live.version_by_tag(name, key, value)  # type: ignore[no-any-return]

    def latest_visible(self, name: str) -> VersionRecord | None:
        live = self.current()
        if live is None:
            raise ModelNotFound(name=name)
        return live.latest_visible(name)  # type: ignore[no-any-return]

    def versions(self, name: str) -> list[VersionRecord]:
        live = self.current()
        if live is None:
            raise ModelNotFound(name=name)
        return live.versions(name)  # type: ignore[no-any-return]

    def count_visible(self, name: str) -> int:
        live = self.current()
        if live is None:
            raise ModelNotFound(name=name)
        return live.count_visible(name)  # type: ignore[no-any-return]

    def search_versions(self, name: str, *, tag: tuple[str, str] | None = None,
                        below: int | None = None, limit: int = 100) -> list[VersionRecord]:
        live = self.current()
        return [] if live is None else live.search_versions(  # type: ignore[no-any-return]
            name, tag=tag, below=below, limit=limit)

    def artifact_location(self, record: VersionRecord) -> str:
        live = self.current()
        return record.source if live is None else live.artifact_location(record)  # type: ignore[no-any-return]

    def get_run(self, run_id: str) -> dict[str, Any]:
        live = self.current()
        if live is None:
            raise run_missing(run_id)
        return live.get_run(run_id)  # type: ignore[no-any-return]

    def get_runs(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        live = self.current()
        return {} if live is None else live.get_runs(run_ids)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._live is not None and hasattr(self._live, "close"):
            self._live.close()
