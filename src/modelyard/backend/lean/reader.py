"""The lean read path: registry look-ups at command-line speed, without importing MLflow.

Two readers answer the same questions with the same typed records as ``tracking.py``:

- ``RestReader`` (``rest.py``) speaks MLflow's documented REST API
  (``/api/2.0/mlflow/...``) to a tracking server. Its requests travel through
  ``transport.py`` (shared with ``writer.py``), which honours MLflow's own client
  settings (``MLFLOW_TRACKING_USERNAME`` / ``PASSWORD``, ``MLFLOW_TRACKING_TOKEN``, TLS
  settings, ``MLFLOW_WORKSPACE``, proxies), with capped retries and one time budget per
  call; ``counts.py`` counts versions without listing them.
- ``SqliteReader`` (``sqlite.py``) reads the embedded default's SQLite file
  read-only, for the MLflow schema revisions the contract suite
  (``tests/contracts/test_reader_contract.py``) has proved.

Both share ``base.py`` (names, the fallback log, message helpers).

``open_reader(settings)`` picks one, or returns ``None`` when neither applies (Databricks, a
direct database URI, an unknown schema revision, ...): callers then use MLflow's client.

>>> reader = open_reader(settings)                       # doctest: +SKIP
>>> reader.alias_holder("churn", "production") if reader else None  # doctest: +SKIP
3

Never imports mlflow, pandas, sklearn or boto3 (a test checks ``sys.modules``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote

from modelyard.backend.lean.absent import AbsentReader
from modelyard.backend.lean.base import _fallback, _truthy
from modelyard.backend.lean.rest import RestReader
from modelyard.backend.lean.sqlite import KNOWN_SCHEMA_REVISIONS, SqliteReader
from modelyard.core.records import ModelRecord, VersionRecord
from modelyard.errors import InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.core.settings import Settings

__all__ = [
    "KNOWN_SCHEMA_REVISIONS",
    "AbsentReader",
    "Reader",
    "RestReader",
    "SqliteReader",
    "open_reader",
]


@runtime_checkable
class Reader(Protocol):
    """Read-only registry look-ups; every answer equals what ``tracking.Tracking`` gives.

    Errors: a missing model raises ``ModelNotFound`` (``get_version``: ``NotFound``); an
    unreachable backend ``BackendError``; a refused request ``UserError``.
    """

    def list_models(self) -> list[ModelRecord]:
        """Every registered model (prompts excluded), by name, with tags and aliases."""
        ...

    def get_model(self, name: str) -> ModelRecord: ...

    def get_version(self, name: str, version: int) -> VersionRecord:
        """One version with tags and aliases; deleted or absent: ``NotFound``."""
        ...

    def alias_holder(self, name: str, alias: str) -> int | None:
        """The version an alias points at; ``None`` if the alias or the model is absent."""
        ...

    def version_by_tag(self, name: str, key: str, value: str) -> VersionRecord | None:
        """The newest visible (not pending) version with tag ``key == value``, with aliases."""
        ...

    def latest_visible(self, name: str) -> VersionRecord | None:
        """The newest version whose ``modelyard.status`` is not ``pending``, with aliases."""
        ...

    def versions(self, name: str) -> list[VersionRecord]:
        """Every version (pending ones too), oldest first, with tags and aliases."""
        ...

    def count_visible(self, name: str) -> int:
        """How many versions are not pending (deleted ones never count)."""
        ...

    def search_versions(self, name: str, *, tag: tuple[str, str] | None = None,
                        below: int | None = None, limit: int = 100) -> list[VersionRecord]:
        """At most ``limit`` versions, newest first, pending ones too (deleted never): those
        numbered below ``below`` and tagged ``key == value`` when given. One bounded, indexed
        search whatever the number of versions; aliases left out; an absent model: []."""
        ...

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run as ``Tracking.get_run`` gives it: ids, times, metrics, params, tags."""
        ...

    def get_runs(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Several runs by id, each as ``get_run`` gives it (in as few round trips as the
        backend allows); absent runs are left out."""
        ...

    def artifact_location(self, record: VersionRecord) -> str:
        """Where the version's files live (its logged model's artifact location)."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Choosing a reader
# --------------------------------------------------------------------------------------------


def open_reader(settings: Settings, *, environ: Mapping[str, str] | None = None,
                fallback: Callable[[], Any] | None = None) -> Reader | None:
    """The lean reader for these settings, or ``None`` when MLflow's client must answer.

    ``http(s)://`` -> ``RestReader``; the embedded ``sqlite:///...`` file -> ``SqliteReader``
    when it exists and its schema revision is known; anything else -> ``None`` (the reason is
    logged at debug level). With ``fallback`` (what answers when the lean path cannot: MLflow's
    client), an embedded file that does not exist yet -> ``AbsentReader`` (an empty registry,
    read without creating it; then the reader picked once the file appears). Anything at
    that path that is not a readable database (a folder, a dangling link) is not "absent":
    MLflow's client then names what is wrong.
    """
    env = os.environ if environ is None else environ
    uri = settings.resolved_tracking_uri
    registry = settings.registry_uri or uri
    if registry != uri:
        return _fallback("the registry URI differs from the tracking URI")
    scheme = uri.partition(":")[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        if env.get("MLFLOW_TRACKING_AUTH") or _truthy(env.get("MLFLOW_TRACKING_AWS_SIGV4")):
            return _fallback("MLFLOW_TRACKING_AUTH / MLFLOW_TRACKING_AWS_SIGV4 need MLflow's "
                             "auth plugins")
        return RestReader(uri, environ=env, count_hints=count_hints_path(settings),
                          timeout=settings.http_timeout, retries=settings.http_retries)
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is None:
            return _fallback("not a plain sqlite file URI")
        if settings.tracking_uri and not path.parent.is_dir():
            # A URI given by hand that names a folder that is not there is a typo, not an
            # empty registry (the embedded default's own folder appears on first write).
            raise InvalidInput(f"no folder {path.parent} for the registry database named by "
                               f"{uri} (check --tracking-uri / MLFLOW_TRACKING_URI)")
        if fallback is not None and not os.path.lexists(path):
            found = path
            return AbsentReader(path, then=lambda: SqliteReader.open(found) or fallback())
        return SqliteReader.open(path)
    return _fallback(f"no lean reader for {scheme or 'this'} tracking URIs")


def count_hints_path(settings: Settings) -> Path:
    """Where the REST reader remembers the counts it found for this tracking server (hints
    it confirms in one round: ``counts.VersionCounts.near``), keyed by the URI's hash."""
    import hashlib

    key = hashlib.sha256(settings.resolved_tracking_uri.encode()).hexdigest()[:24]
    return settings.resolved_cache_dir / "counts" / f"{key}.json"


def sqlite_path(uri: str) -> Path | None:
    """``sqlite:////abs/mlflow.db`` -> ``/abs/mlflow.db``; in-memory or ``?...`` URIs -> None."""
    if not uri.startswith("sqlite:///") or "?" in uri:
        return None
    rest = uri[len("sqlite:///"):]
    if not rest or rest == ":memory:" or rest.startswith("file:"):
        return None
    return Path(unquote(rest))
