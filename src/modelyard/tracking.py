"""The one module that talks to MLflow (tracking server or embedded SQLite store).

It normalises what MLflow returns (versions are int here, whatever the store) and translates
MLflow, SQLAlchemy and HTTP errors into modelyard's own at this edge.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.config import Settings
from modelyard.errors import BackendError, ModelNotFound, NotFound, UserError, YardError

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

_SECRET_IN_URL = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """Remove passwords embedded in URLs (``postgresql://user:secret@host``)."""
    return _SECRET_IN_URL.sub(r"\1***@", text)


@dataclass
class VersionRecord:
    """An MLflow model version, normalised."""

    name: str
    version: int
    run_id: str | None
    source: str
    status: str
    created_ms: int
    updated_ms: int
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    model_id: str | None = None
    user_id: str | None = None


@dataclass
class ModelRecord:
    name: str
    description: str
    created_ms: int
    updated_ms: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)


def _version_record(mv: Any) -> VersionRecord:
    source = mv.source or ""
    model_id = getattr(mv, "model_id", None)
    if not model_id and source.startswith("models:/m-"):
        model_id = source.removeprefix("models:/")  # REST answers omit it
    return VersionRecord(
        name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id or None,
        source=mv.source or "",
        status=str(mv.status or ""),
        created_ms=int(mv.creation_timestamp or 0),
        updated_ms=int(mv.last_updated_timestamp or 0),
        description=mv.description or "",
        tags=dict(mv.tags or {}),
        aliases=list(getattr(mv, "aliases", None) or []),
        model_id=model_id,
        user_id=getattr(mv, "user_id", None),
    )


class Tracking:
    """Thin, typed access to MLflow's tracking and registry APIs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tracking_uri = settings.resolved_tracking_uri
        self.registry_uri = settings.registry_uri or self.tracking_uri
        self._client: MlflowClient | None = None
        self._experiment_ids: dict[str, str] = {}

    # -- plumbing -------------------------------------------------------------------------
    @property
    def display_uri(self) -> str:
        """The tracking URI as it may be shown: passwords redacted."""
        return redact(self.tracking_uri)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            if self.settings.is_embedded:
                self.settings.home_path.mkdir(parents=True, exist_ok=True)
            # The library never prints: no download progress bars from MLflow.
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            with self.translate():
                import mlflow
                from mlflow import MlflowClient

                # Fluent helpers read the global URI; MLflow also exports it to the
                # environment, where the next Yard in this process would mistake it for
                # the user's setting: put the environment back as it was.
                saved = {v: os.environ.get(v) for v in ("MLFLOW_TRACKING_URI",
                                                        "MLFLOW_REGISTRY_URI")}
                mlflow.set_tracking_uri(self.tracking_uri)
                mlflow.set_registry_uri(self.registry_uri)
                for var, value in saved.items():
                    if value is None:
                        os.environ.pop(var, None)
                    else:
                        os.environ[var] = value
                self._client = MlflowClient(self.tracking_uri, self.registry_uri)
        return self._client

    @contextlib.contextmanager
    def translate(self, *, name: str | None = None) -> Iterator[None]:
        """Turn MLflow / SQLAlchemy / HTTP failures into YardErrors."""
        try:
            yield
        except YardError:
            raise
        except Exception as exc:
            raise self._translated(exc, name) from exc

    def _translated(self, exc: Exception, name: str | None) -> YardError:
        kind = type(exc).__name__
        module = type(exc).__module__
        text = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else kind
        if kind == "MlflowException" or kind.endswith("RestException"):
            code = getattr(exc, "error_code", "")
            if code == "RESOURCE_DOES_NOT_EXIST":
                if name is not None and "Registered Model" in str(exc):
                    return ModelNotFound(name=name)
                return NotFound(text)
            if code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST"):
                return UserError(text)
            if "Max retries exceeded" in text or "API request to" in text:
                return BackendError(detail=f"tracking server {redact(self.tracking_uri)} "
                                    f"unreachable ({text[:200]})")
            return BackendError(detail=text[:300])
        if module.startswith(("sqlalchemy", "requests", "urllib3")) or isinstance(
            exc, (ConnectionError, TimeoutError, OSError)
        ):
            return BackendError(detail=f"{kind}: {text[:300]}")
        return BackendError(detail=f"{kind}: {text[:300]}")

    def health(self, timeout: float = 5.0) -> tuple[bool, str]:
        """For a server: GET /health. For the embedded store: open the database."""
        if self.tracking_uri.startswith(("http://", "https://")):
            import urllib.error
            import urllib.request

            url = self.tracking_uri.rstrip("/") + "/health"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    body = response.read(100).decode(errors="replace").strip()
                    return response.status == 200, f"HTTP {response.status} {body}"
            except urllib.error.HTTPError as exc:
                return False, f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                return False, f"unreachable: {reason}"
        try:
            with self.translate():
                self.client.search_experiments(max_results=1)
            return True, "database opens"
        except YardError as exc:
            return False, exc.message

    # -- experiments and runs -------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        if name in self._experiment_ids:
            return self._experiment_ids[name]
        with self.translate():
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    exp_id = self.client.create_experiment(
                        name, artifact_location=self.settings.resolved_artifact_location
                    )
                except Exception:
                    experiment = self.client.get_experiment_by_name(name)
                    if experiment is None:
                        raise
                    exp_id = experiment.experiment_id
            else:
                exp_id = experiment.experiment_id
        self._experiment_ids[name] = exp_id
        return exp_id

    def create_run(self, experiment: str, run_name: str | None, tags: dict[str, str]) -> str:
        exp_id = self.experiment_id(experiment)
        with self.translate():
            run = self.client.create_run(exp_id, run_name=run_name, tags=tags)
        return str(run.info.run_id)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        with self.translate():
            self.client.set_terminated(run_id, status=status)

    def delete_run(self, run_id: str) -> None:
        with self.translate():
            self.client.delete_run(run_id)

    def log_batch(
        self,
        run_id: str,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        *,
        fresh_run: bool = False,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        existing = self.get_run(run_id)["params"] if params and not fresh_run else {}
        with self.translate():
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                params=[
                    Param(k, str(v))
                    for k, v in (params or {}).items()
                    if existing.get(k) is None  # MLflow params are write-once per run
                ],
                tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
            )

    def get_run(self, run_id: str) -> dict[str, Any]:
        with self.translate():
            run = self.client.get_run(run_id)
        return {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
            "artifact_uri": run.info.artifact_uri,
            "metrics": dict(run.data.metrics),
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
        }

    # -- logged models (MLflow 3) ---------------------------------------------------------
    def create_logged_model(
        self, experiment: str, run_id: str, flavor: str, params: dict[str, str]
    ) -> tuple[str, str]:
        """Create a LoggedModel; returns (model_id, artifact_location)."""
        exp_id = self.experiment_id(experiment)
        with self.translate():
            model = self.client.create_logged_model(
                exp_id, name="model", source_run_id=run_id, params=params, model_type=flavor
            )
        return str(model.model_id), str(model.artifact_location)

    def upload_logged_model(self, model_id: str, run_id: str, local_dir: Path) -> None:
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        with self.translate():
            self.client.log_model_artifacts(model_id, str(local_dir))
            self.client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
            self.client.finalize_logged_model(model_id, LoggedModelStatus.READY)

    def fail_logged_model(self, model_id: str) -> None:
        from mlflow.entities import LoggedModelStatus

        with contextlib.suppress(Exception):
            self.client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)

    def logged_model_of(self, uri: str) -> tuple[str | None, str | None]:
        """For a ``models:/m-...`` or ``runs:/RUN/path`` URI: (model_id, run_id)."""
        with self.translate():
            if uri.startswith("models:/m-"):
                model = self.client.get_logged_model(uri.removeprefix("models:/"))
                return str(model.model_id), model.source_run_id
            if uri.startswith("runs:/"):
                run_id = uri.removeprefix("runs:/").split("/", 1)[0]
                self.client.get_run(run_id)
                return None, run_id
        raise UserError(f"not an MLflow model URI: {uri!r} (expected models:/m-... or runs:/...)")

    # -- registry -------------------------------------------------------------------------
    def ensure_registered_model(self, name: str, description: str | None = None) -> bool:
        """Create the registered model unless it exists; True when this call created it."""
        with self.translate():
            try:
                self.client.get_registered_model(name)
                return False
            except Exception as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
            try:
                self.client.create_registered_model(name, description=description)
                return True
            except Exception as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
        return False

    def delete_model_if_empty(self, name: str) -> bool:
        """Delete a registered model that has no versions (debris of a failed attempt)."""
        escaped = name.replace("'", "\\'")
        with self.translate(name=name):
            if list(self.client.search_model_versions(f"name = '{escaped}'", max_results=1)):
                return False
            self.client.delete_registered_model(name)
        return True

    def get_model(self, name: str) -> ModelRecord:
        with self.translate(name=name):
            model = self.client.get_registered_model(name)
        return ModelRecord(
            name=model.name,
            description=model.description or "",
            created_ms=int(model.creation_timestamp or 0),
            updated_ms=int(model.last_updated_timestamp or 0),
            tags=dict(model.tags or {}),
            aliases={k: int(v) for k, v in (model.aliases or {}).items()},
        )

    def list_models(self) -> list[ModelRecord]:
        records: list[ModelRecord] = []
        token: str | None = None
        with self.translate():
            while True:
                page = self.client.search_registered_models(max_results=1000, page_token=token)
                for model in page:
                    records.append(
                        ModelRecord(
                            name=model.name,
                            description=model.description or "",
                            created_ms=int(model.creation_timestamp or 0),
                            updated_ms=int(model.last_updated_timestamp or 0),
                            tags=dict(model.tags or {}),
                            aliases={k: int(v) for k, v in (model.aliases or {}).items()},
                        )
                    )
                token = page.token
                if not token:
                    break
        return records

    def create_version(
        self,
        name: str,
        source: str,
        run_id: str | None,
        tags: dict[str, str],
        description: str | None,
        model_id: str | None,
    ) -> VersionRecord:
        with self.translate(name=name):
            mv = self.client.create_model_version(
                name, source, run_id=run_id, tags=tags, description=description,
                await_creation_for=0, model_id=model_id,
            )
        return _version_record(mv)

    def versions(self, name: str, *, with_aliases: bool = True) -> list[VersionRecord]:
        """Every version of a model, oldest first, with tags (and aliases unless not needed)."""
        records: list[VersionRecord] = []
        token: str | None = None
        escaped = name.replace("'", "\\'")
        with self.translate(name=name):
            while True:
                page = self.client.search_model_versions(
                    f"name = '{escaped}'", max_results=10000, page_token=token
                )
                records.extend(_version_record(mv) for mv in page)
                token = page.token
                if not token:
                    break
            if not records:
                self.client.get_registered_model(name)  # raises ModelNotFound if absent
        if not with_aliases:
            return sorted(records, key=lambda r: r.version)
        aliases = self._aliases(name, records)
        for record in records:
            record.aliases = sorted(a for a, v in aliases.items() if v == record.version)
        return sorted(records, key=lambda r: r.version)

    def _aliases(self, name: str, records: list[VersionRecord]) -> dict[str, int]:
        # search_model_versions omits aliases on some stores; the registered model has them.
        found = {alias: r.version for r in records for alias in r.aliases}
        if found or not records:
            return found
        return self.get_model(name).aliases

    def get_version(self, name: str, version: int) -> VersionRecord:
        with self.translate(name=name):
            mv = self.client.get_model_version(name, str(version))
        return _version_record(mv)

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        with self.translate(name=name):
            for key, value in tags.items():
                self.client.set_model_version_tag(name, str(version), key, str(value))

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        with self.translate(name=name):
            self.client.delete_model_version_tag(name, str(version), key)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        with self.translate(name=name):
            self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        with self.translate(name=name):
            self.client.delete_registered_model_alias(name, alias)

    def alias_holder(self, name: str, alias: str) -> int | None:
        with self.translate(name=name):
            try:
                return int(self.client.get_model_version_by_alias(name, alias).version)
            except Exception as exc:
                if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND",
                                                       "INVALID_PARAMETER_VALUE"):
                    return None
                raise

    def delete_version(self, name: str, version: int) -> None:
        with self.translate(name=name):
            self.client.delete_model_version(name, str(version))

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        with self.translate(name=name):
            self.client.set_registered_model_tag(name, key, value)

    # -- artifacts ------------------------------------------------------------------------
    def download(self, uri: str, dest: Path) -> Path:
        """Download a model's artifacts (models:/m-..., runs:/..., or a store URI) to dest."""
        with self.translate():
            from mlflow.artifacts import download_artifacts

            path = download_artifacts(
                artifact_uri=uri, dst_path=str(dest), tracking_uri=self.tracking_uri
            )
        return Path(path)

    def delete_artifacts(self, location: str) -> None:
        """Delete every file under an artifact location (a version's logged-model folder).

        MLflow's own garbage collection leaves a deleted version's files behind; retention
        (``cleanup --delete``) calls this. ``file://`` folders are removed directly, other
        schemes (``mlflow-artifacts:``, ``s3://``) through MLflow's artifact repository.
        """
        from urllib.parse import unquote, urlparse

        parsed = urlparse(location)
        if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a path (or C:\...)
            import shutil

            path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(location)
            with self.translate():
                if path.exists():
                    shutil.rmtree(path)
            return
        with self.translate():
            from mlflow.store.artifact.artifact_repository_registry import (
                get_artifact_repository,
            )

            repo = get_artifact_repository(
                location, tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
            )
            repo.delete_artifacts()

    def artifact_location(self, record: VersionRecord) -> str:
        """Where the version's files really live (s3://..., file://...)."""
        if record.model_id:
            with contextlib.suppress(YardError), self.translate():
                return str(self.client.get_logged_model(record.model_id).artifact_location)
        with contextlib.suppress(YardError), self.translate():
            return str(self.client.get_model_version_download_uri(record.name,
                                                                    str(record.version)))
        return record.source
