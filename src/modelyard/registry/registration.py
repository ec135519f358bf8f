"""The register verbs: a model object, a folder saved with MLflow, a model MLflow already holds.

Each request is checked before anything is created, its lineage captured (git state, data
hashes, the active run), and it becomes a ``Draft`` that the one registration pipeline turns
into a version (``pipeline.py``: pending -> semver -> manifest -> ready, or nothing at all).
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard.core.entities import ModelVersion
from modelyard.core.lineage import parent_run_of
from modelyard.core.names import BUMPS, check_name, check_user_tags, parse_semver
from modelyard.errors import InvalidInput, YardError
from modelyard.project import capture
from modelyard.registry.pipeline import Draft, Pipeline
from modelyard.registry.semver_plan import SemverPlan


def check_request(name: str, bump: str | None, version: str | None,
                  metrics: dict[str, Any] | None) -> dict[str, float]:
    """Validate a registration request before anything is created; the metrics as floats."""
    check_name(name)
    if bump is not None and bump not in BUMPS:
        raise InvalidInput(f"bump must be one of {', '.join(BUMPS)}, not {bump!r:.40}")
    if bump and version:
        raise InvalidInput("give either bump= or version=, not both")
    if version is not None:
        parse_semver(version)
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInput(f"metric {key!r:.60} is not a number: {value!r:.60}") from None
        if not math.isfinite(out[str(key)]):  # NaN sorts nowhere; gates would compare nothing
            raise InvalidInput(f"metric {key!r:.60} must be a finite number, not "
                               f"{value!r:.60}")
    return out


class Registrar(Pipeline):
    """The register verbs. Each request becomes a ``Draft`` for ``Pipeline.create``; a
    Registrar is the pipeline too, so import, restore and adopt reach ``create`` and
    ``manage`` through the one the yard built."""

    def register(
        self,
        model: Any,
        name: str,
        *,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        input_example: Any = None,
        signature: Any = None,
        data: list[str | Path] | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        seed: int | str | None = None,
        bump: str | None = None,
        version: str | None = None,
        flavor: Any = None,
        started_at: datetime | None = None,
        duration_s: float | None = None,
        pip_requirements: list[str] | None = None,
        training_data: Any = None,
    ) -> ModelVersion:
        """Save a model object with its MLflow flavor and register it."""
        from modelyard.backend import mlmodel

        floats = check_request(name, bump, version, metrics)
        chosen = mlmodel.detect(model, flavor)
        cache = self.ctx.cache_dir

        def save(local: Path, run_id: str, model_id: str, location: str) -> None:
            mlmodel.save(chosen, model, local, run_id=run_id, model_id=model_id,
                         artifact_location=location, input_example=input_example,
                         signature=signature, requirements=pip_requirements, cache_dir=cache)

        draft = self._draft(
            name, chosen.name, f"{type(model).__module__}.{type(model).__qualname__}",
            metrics=floats, params=params, data=data, description=description, tags=tags,
            seed=seed, bump=bump, version=version, started_at=started_at,
            duration_s=duration_s, trained_here=True,
        )
        draft.save = save
        draft.training_data = training_data
        return self.create(draft)

    def register_directory(
        self,
        path: Path,
        name: str,
        *,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        data: list[str | Path] | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        seed: int | str | None = None,
        bump: str | None = None,
        version: str | None = None,
        follow_links: bool = False,
    ) -> ModelVersion:
        """Register a folder saved with ``mlflow.<flavor>.save_model`` (it has an MLmodel).

        A symlink pointing outside the folder is refused; with ``follow_links`` its target's
        content is copied instead (never the link).
        """
        from modelyard.backend import mlmodel
        from modelyard.registry.pickles import check_pickles
        from modelyard.store.files import copy_tree_safely

        floats = check_request(name, bump, version, metrics)
        info = mlmodel.read_mlmodel(path)  # the MLmodel file only (YAML, read capped)
        copy_tree_safely(path, None, follow_links=follow_links)  # refuse before creating
        # A folder from elsewhere: its pickles are checked before anything reads them.
        check_pickles(path, str(path), extra=self.ctx.settings.trusted_pickle_types)

        def save(local: Path, run_id: str, model_id: str, location: str) -> None:
            # The vault's copy taken while hashing (one read); ``local`` only lays it out.
            draft.manifest = self.ctx.vault.stage(path, local, follow_links=follow_links)

        draft = self._draft(
            name, info.flavor, "", metrics=floats, params=params, data=data,
            description=description, tags=tags, seed=seed, bump=bump, version=version,
            started_at=None, duration_s=None,
        )
        draft.save = save
        return self.create(draft)

    def register_uri(
        self,
        uri: str,
        name: str,
        *,
        data: list[str | Path] | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        seed: int | str | None = None,
        bump: str | None = None,
        version: str | None = None,
    ) -> ModelVersion:
        """Register a model MLflow already holds (``models:/m-...`` or ``runs:/RUN/path``)
        without uploading it again; its files are hashed into the manifest."""
        check_request(name, bump, version, None)
        if not uri.startswith(("models:/m-", "runs:/")):
            raise InvalidInput(
                f"not an MLflow model URI: {uri!r:.120} (expected models:/m-... or runs:/...)")
        draft = self._draft(name, "", "", metrics={}, params=None, data=data,
                            description=description, tags=tags, seed=seed, bump=bump,
                            version=version, started_at=None, duration_s=None)
        draft.uri = uri
        return self.create(draft)

    # -- drafts -------------------------------------------------------------------------
    def _draft(self, name: str, flavor: str, model_class: str, *, metrics: dict[str, float],
               params: dict[str, Any] | None, data: list[str | Path] | None,
               description: str | None, tags: dict[str, str] | None,
               seed: int | str | None, bump: str | None, version: str | None,
               started_at: datetime | None, duration_s: float | None,
               trained_here: bool = False) -> Draft:
        """``trained_here``: the model object was trained in this process (``register``), so
        the process's CPU time, peak memory and, in a DVC stage, its age are the training's.
        A saved folder or an MLflow URI was trained elsewhere: only the caller or the active
        run can say how long."""
        user_tags = check_user_tags(tags)
        run_id, run_start, run_parent = self._active_run()
        lineage = capture.capture(
            cwd=Path.cwd(), data=data, seed=seed, user=self.ctx.user,
            started_at=started_at, duration_s=duration_s, run_start=run_start,
            parent_run=parent_run_of(os.environ, run_id, run_parent), environ=os.environ,
            trained_here=trained_here,
        )
        return Draft(name=name, flavor=flavor, model_class=model_class, metrics=metrics,
                     params={str(k): str(v) for k, v in (params or {}).items()},
                     tags=user_tags, description=description, lineage=lineage,
                     semver=SemverPlan(bump=bump, explicit=version))

    def _active_same_uri(self) -> str | None:
        from modelyard.backend import mlmodel

        active = mlmodel.active_run()
        if active and self._on_this_uri(active[1]):
            return active[0]
        return None

    def _active_run(self) -> tuple[str | None, datetime | None, str | None]:
        """``(id, start, parent run)`` of the caller's active run on this tracking URI (the
        run the version is logged into), read once; Nones without one."""
        run_id = self._active_same_uri()
        if not run_id:
            return None, None, None
        try:
            run = self.tracking.get_run(run_id)
        except YardError:
            return run_id, None, None
        start = run.get("start_time")
        when = datetime.fromtimestamp(start / 1000, tz=timezone.utc) if start else None
        return run_id, when, (run.get("tags") or {}).get("mlflow.parentRunId")
