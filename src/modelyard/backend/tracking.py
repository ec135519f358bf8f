"""MLflow's tracking and registry calls for one yard: experiments and runs, logged models,
registered models and their versions, tags, aliases and the stage field.

It normalises what MLflow returns (versions are int here, whatever the store). Every call
runs through the ``Connection`` it is built on (``connection.py``: the bound client, capped
retries and timeouts, errors translated at this edge); a version's files go through
``Tracking.artifacts`` (``artifacts.py``).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelyard.backend.artifacts import Artifacts
from modelyard.backend.connection import Connection
from modelyard.core.names import STATUS_PENDING, T_STATUS, mlflow_stage
from modelyard.core.records import (
    SEARCH_PAGE_MAX,
    ModelRecord,
    VersionRecord,
    search_filter,
    stage_fields_of,
    version_from_mlflow,
)
from modelyard.core.settings import Settings
from modelyard.errors import NotFound, UserError, YardError

__all__ = ["Tracking"]


def _version_record(mv: Any) -> VersionRecord:
    return version_from_mlflow(mv)


class Tracking(Connection):
    """Thin, typed access to MLflow's tracking and registry APIs (``timeout`` and
    ``max_retries`` bound every call: see ``Connection``)."""

    def __init__(self, settings: Settings, *, timeout: float | None = None,
                 max_retries: int | None = None) -> None:
        super().__init__(settings, timeout=timeout, max_retries=max_retries)
        self._experiment_ids: dict[str, str] = {}
        self._model_locations: dict[str, str] = {}
        self.artifacts = Artifacts(self)

    # -- experiments and runs -------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        if name in self._experiment_ids:
            return self._experiment_ids[name]

        def find_or_create() -> str:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None:
                return str(experiment.experiment_id)
            try:
                return str(self.client.create_experiment(
                    name, artifact_location=self.settings.resolved_artifact_location))
            except Exception:
                experiment = self.client.get_experiment_by_name(name)  # created meanwhile
                if experiment is None:
                    raise
                return str(experiment.experiment_id)

        exp_id = self.call(find_or_create, op=f"open experiment '{name}'")
        self._experiment_ids[name] = exp_id
        return exp_id

    def create_run(self, experiment: str, run_name: str | None, tags: dict[str, str]) -> str:
        exp_id = self.experiment_id(experiment)
        run = self.call(lambda: self.client.create_run(exp_id, run_name=run_name, tags=tags),
                        op="create a run")
        return str(run.info.run_id)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.call(lambda: self.client.set_terminated(run_id, status=status), op="end a run")

    def delete_run(self, run_id: str) -> None:
        self.call(lambda: self.client.delete_run(run_id), op="delete a run")

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
        self.call(lambda: self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[
                Param(k, str(v))
                for k, v in (params or {}).items()
                if existing.get(k) is None  # MLflow params are write-once per run
            ],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        ), op="log to a run")

    def get_run(self, run_id: str) -> dict[str, Any]:
        run = self.call(lambda: self.client.get_run(run_id), op="read a run")
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

    def get_runs(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Several runs by id (as ``get_run``); an absent run is left out."""
        found: dict[str, dict[str, Any]] = {}
        for run_id in dict.fromkeys(r for r in run_ids if r):
            with contextlib.suppress(NotFound):
                found[run_id] = self.get_run(run_id)
        return found

    def open_runs(self, experiment: str, tag: str, started_before_ms: int,
                  limit: int = 1000) -> list[dict[str, Any]]:
        """Runs of ``experiment`` still RUNNING, started before ``started_before_ms``, that
        carry tag ``tag`` (at most ``limit``, oldest first): ``run_id``, ``start_time``,
        ``tags``, and ``versions``, how many model versions name the run. An experiment
        that does not exist has none (it is not created)."""
        def search() -> list[dict[str, Any]]:
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                return []
            runs = self.client.search_runs(
                [found.experiment_id],
                filter_string=("attributes.status = 'RUNNING' and attributes.start_time < "
                               f"{int(started_before_ms)}"),
                max_results=limit, order_by=["attributes.start_time ASC"])
            out = []
            for run in runs:
                if tag not in run.data.tags:
                    continue
                run_id = run.info.run_id
                named = self.client.search_model_versions(f"run_id = '{run_id}'",
                                                          max_results=10)
                out.append({"run_id": run_id, "start_time": run.info.start_time,
                            "experiment_id": found.experiment_id,
                            "tags": dict(run.data.tags), "versions": len(named)})
            return out

        return self.call(search, op="search open runs")

    def logged_models_of_run(self, experiment_id: str, run_id: str) -> list[tuple[str, str]]:
        """(model_id, artifact_location) of every logged model run ``run_id`` made."""
        def search() -> list[tuple[str, str]]:
            found = self.client.search_logged_models(
                [experiment_id], filter_string=f"source_run_id = '{run_id}'", max_results=100)
            return [(str(m.model_id), str(m.artifact_location)) for m in found]

        return self.call(search, op="search a run's logged models")

    # -- logged models (MLflow 3) ---------------------------------------------------------
    def create_logged_model(
        self, experiment: str, run_id: str, flavor: str, params: dict[str, str]
    ) -> tuple[str, str]:
        """Create a LoggedModel; returns (model_id, artifact_location)."""
        exp_id = self.experiment_id(experiment)
        model = self.call(lambda: self.client.create_logged_model(
            exp_id, name="model", source_run_id=run_id, params=params, model_type=flavor
        ), op="create a logged model")
        model_id, location = str(model.model_id), str(model.artifact_location)
        self._model_locations[model_id] = location
        return model_id, location

    def upload_logged_model(self, model_id: str, run_id: str, local_dir: Path) -> None:
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        location = self._model_locations.get(model_id) or self.call(
            lambda: str(self.client.get_logged_model(model_id).artifact_location),
            op="read a logged model")
        self.artifacts.put_artifacts(location, local_dir, op="upload the model's files")
        self.call(lambda: self.client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)]),
                  op="link the model to its run")
        self.call(lambda: self.client.finalize_logged_model(model_id, LoggedModelStatus.READY),
                  op="finalize a logged model")

    def fail_logged_model(self, model_id: str) -> None:
        from mlflow.entities import LoggedModelStatus

        with contextlib.suppress(Exception):
            self.client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)

    def logged_model_of(self, uri: str) -> tuple[str | None, str | None]:
        """For a ``models:/m-...`` or ``runs:/RUN/path`` URI: (model_id, run_id)."""
        if uri.startswith("models:/m-"):
            model = self.call(lambda: self.client.get_logged_model(uri.removeprefix("models:/")),
                              op="read a logged model")
            return str(model.model_id), model.source_run_id
        if uri.startswith("runs:/"):
            run_id = uri.removeprefix("runs:/").split("/", 1)[0]
            self.call(lambda: self.client.get_run(run_id), op="read a run")
            return None, run_id
        raise UserError(f"not an MLflow model URI: {uri!r} (expected models:/m-... or runs:/...)")

    # -- registry -------------------------------------------------------------------------
    def ensure_registered_model(self, name: str, description: str | None = None) -> bool:
        """Create the registered model unless it exists; True when this call created it."""
        def ensure() -> bool:
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

        return bool(self.call(ensure, name=name, op="create the registered model"))

    def delete_model_if_empty(self, name: str) -> bool:
        """Delete a registered model that has no versions (debris of a failed attempt)."""
        escaped = name.replace("'", "\\'")

        def delete() -> bool:
            if list(self.client.search_model_versions(f"name = '{escaped}'", max_results=1)):
                return False
            self.client.delete_registered_model(name)
            return True

        return bool(self.call(delete, name=name, op="delete the empty model"))

    @staticmethod
    def _model_record(model: Any) -> ModelRecord:
        return ModelRecord(
            name=model.name,
            description=model.description or "",
            created_ms=int(model.creation_timestamp or 0),
            updated_ms=int(model.last_updated_timestamp or 0),
            tags=dict(model.tags or {}),
            aliases={k: int(v) for k, v in (model.aliases or {}).items()},
            stage_fields=stage_fields_of(getattr(model, "latest_versions", None)),
        )

    def get_model(self, name: str) -> ModelRecord:
        model = self.call(lambda: self.client.get_registered_model(name), name=name,
                          op="read the model")
        return self._model_record(model)

    def list_models(self) -> list[ModelRecord]:
        def every() -> list[ModelRecord]:
            records: list[ModelRecord] = []
            token: str | None = None
            while True:
                page = self.client.search_registered_models(max_results=1000, page_token=token)
                records.extend(self._model_record(model) for model in page)
                token = page.token
                if not token:
                    return records

        return self.call(every, op="list models")

    def create_version(
        self,
        name: str,
        source: str,
        run_id: str | None,
        tags: dict[str, str],
        description: str | None,
        model_id: str | None,
    ) -> VersionRecord:
        mv = self.call(lambda: self.client.create_model_version(
            name, source, run_id=run_id, tags=tags, description=description,
            await_creation_for=0, model_id=model_id,
        ), name=name, op="create a version")
        return _version_record(mv)

    def versions(self, name: str, *, with_aliases: bool = True) -> list[VersionRecord]:
        """Every version of a model, oldest first, with tags (and aliases unless not needed)."""
        escaped = name.replace("'", "\\'")

        def every() -> list[VersionRecord]:
            records: list[VersionRecord] = []
            token: str | None = None
            while True:
                page = self.client.search_model_versions(
                    f"name = '{escaped}'", max_results=SEARCH_PAGE_MAX, page_token=token,
                    order_by=["version_number ASC"],  # pages stay put while tags change
                )
                records.extend(_version_record(mv) for mv in page)
                token = page.token
                if not token:
                    break
            if not records:
                self.client.get_registered_model(name)  # raises ModelNotFound if absent
            return records

        records = self.call(every, name=name, op="list versions")
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

    # -- bounded searches (the write paths' look-ups; O(1) in the number of versions) -------
    def search_versions(self, name: str, *, tag: tuple[str, str] | None = None,
                        below: int | None = None, limit: int = 100) -> list[VersionRecord]:
        """At most ``limit`` versions, newest first, pending ones too: those numbered below
        ``below`` and tagged ``key == value`` when given (one indexed search, aliases left
        out; an absent model: [])."""
        text = search_filter(name, tag=tag, below=below)
        size = max(1, min(int(limit), SEARCH_PAGE_MAX))
        page = self.call(lambda: self.client.search_model_versions(
            text, max_results=size, order_by=["version_number DESC"]), name=name,
            op="search versions")
        records = [_version_record(mv) for mv in page]
        for record in records:
            record.aliases = []
        return records

    def _newest_visible(self, name: str, tag: tuple[str, str] | None) -> VersionRecord | None:
        below: int | None = None
        size = 4
        while True:
            page = self.search_versions(name, tag=tag, below=below, limit=size)
            found = next((r for r in page if r.tags.get(T_STATUS) != STATUS_PENDING), None)
            if found is not None:
                return self.get_version(name, found.version)  # with its aliases
            if len(page) < size:
                self.get_model(name)  # ModelNotFound if the model itself is absent
                return None
            below, size = page[-1].version, min(size * 4, SEARCH_PAGE_MAX)

    def version_by_tag(self, name: str, key: str, value: str) -> VersionRecord | None:
        """The newest visible (not pending) version with tag ``key == value``, with aliases."""
        return self._newest_visible(name, (key, value))

    def latest_visible(self, name: str) -> VersionRecord | None:
        """The newest version whose ``modelyard.status`` is not ``pending``, with aliases."""
        return self._newest_visible(name, None)

    def count_visible(self, name: str) -> int:
        """How many versions are not pending. MLflow's client has no count: it pages through
        the versions (the lean reader counts with a few probes when it answers instead)."""
        return sum(1 for v in self.versions(name, with_aliases=False)
                   if v.tags.get(T_STATUS) != STATUS_PENDING)

    def get_version(self, name: str, version: int) -> VersionRecord:
        mv = self.call(lambda: self.client.get_model_version(name, str(version)), name=name,
                       op=f"read version {version}")
        return _version_record(mv)

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        def tag(key: str, value: str) -> Callable[[], None]:
            return lambda: self.client.set_model_version_tag(name, str(version), key, str(value))

        for key, value in tags.items():
            self.call(tag(key, value), name=name, op=f"tag version {version}")

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        self.call(lambda: self.client.delete_model_version_tag(name, str(version), key),
                  name=name, op=f"untag version {version}")

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.call(lambda: self.client.set_registered_model_alias(name, alias, str(version)),
                  name=name, op=f"set alias '{alias}'")

    def delete_alias(self, name: str, alias: str) -> None:
        self.call(lambda: self.client.delete_registered_model_alias(name, alias), name=name,
                  op=f"delete alias '{alias}'")

    def alias_holder(self, name: str, alias: str) -> int | None:
        def holder() -> int | None:
            try:
                return int(self.client.get_model_version_by_alias(name, alias).version)
            except Exception as exc:
                if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND",
                                                       "INVALID_PARAMETER_VALUE"):
                    return None
                raise

        return self.call(holder, name=name, op=f"read alias '{alias}'")

    def set_stage_field(self, name: str, version: int, stage: str) -> None:
        """Mirror modelyard's stage into MLflow's (deprecated) stage field.

        ``models:/NAME/Production`` URIs and the MLflow UI's "Stage" column read that field.
        Other versions keep theirs (modelyard moves them itself).
        """
        value = mlflow_stage(stage)

        def transition() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # the stage API is deprecated
                self.client.transition_model_version_stage(
                    name, str(version), value, archive_existing_versions=False)

        self.call(transition, name=name, op=f"set the stage field of version {version}")

    def delete_version(self, name: str, version: int) -> None:
        self.call(lambda: self.client.delete_model_version(name, str(version)), name=name,
                  op=f"delete version {version}")

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self.call(lambda: self.client.set_registered_model_tag(name, key, value), name=name,
                  op="tag the model")

    # -- where a version's files live (a registry read, as the lean readers answer it) --------
    def artifact_location(self, record: VersionRecord) -> str:
        """Where the version's files really live (s3://..., file://...)."""
        if record.model_id:
            model_id = record.model_id
            with contextlib.suppress(YardError):
                return self.call(
                    lambda: str(self.client.get_logged_model(model_id).artifact_location))
        with contextlib.suppress(YardError):
            return self.call(lambda: str(self.client.get_model_version_download_uri(
                record.name, str(record.version))))
        return record.source
