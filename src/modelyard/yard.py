"""``Yard``: the one facade. The CLI and the serving app call only this.

>>> yard = Yard()                                   # embedded default, or MLFLOW_TRACKING_URI
>>> mv = yard.register(model, "churn", metrics={"accuracy": 0.91}, data=["data/train.csv"])
>>> mv.semver, mv.bump_reason
('1.0.0', 'first version')
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard import lineage as lineage_mod
from modelyard.config import Settings, load_settings
from modelyard.entities import (
    STATUS_PENDING,
    STATUS_READY,
    T_BUMP,
    T_CLASS,
    T_FLAVOR,
    T_MANIFEST,
    T_PARAMS,
    T_REASON,
    T_SCHEMA,
    T_SEMVER,
    T_STAGE,
    T_STATUS,
    LoadedModel,
    ModelVersion,
)
from modelyard.errors import (
    BackendError,
    IntegrityError,
    InvalidInput,
    ModelNotFound,
    RegistrationFailed,
    StorageError,
    UserError,
    VersionConflict,
    YardError,
)
from modelyard.exchange import ExchangeMixin
from modelyard.lifecycle import LifecycleMixin
from modelyard.lineage import Lineage
from modelyard.refs import VersionRef, resolve
from modelyard.storage import ObjectStore, open_store
from modelyard.tracking import ModelRecord, Tracking, VersionRecord, redact
from modelyard.vault import Manifest, Vault
from modelyard.versioning import (
    Fingerprint,
    apply_bump,
    check_explicit,
    decide_bump,
    highest_semver,
    parse_semver,
)

log = logging.getLogger("modelyard")

_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]{0,199}$")
BUMPS = ("major", "minor", "patch")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' "
            "(no '/', '@' or spaces)"
        )
    return name


def is_visible(record: VersionRecord) -> bool:
    """A version is registered once its last tag (status=ready) is written."""
    return record.tags.get(T_STATUS) != STATUS_PENDING


class Yard(LifecycleMixin, ExchangeMixin):
    """modelyard's facade over MLflow, the object store and the vault."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings or load_settings(overrides)
        if self.settings.s3_endpoint_url and not os.environ.get("MLFLOW_S3_ENDPOINT_URL"):
            os.environ["MLFLOW_S3_ENDPOINT_URL"] = self.settings.s3_endpoint_url
        self.tracking = Tracking(self.settings)
        self._vault: Vault | None = None
        self._backup: ObjectStore | None = None

    # -- wiring ---------------------------------------------------------------------------
    @property
    def vault(self) -> Vault:
        if self._vault is None:
            self._vault = Vault(
                open_store(self.settings.resolved_vault, endpoint_url=self._s3_endpoint())
            )
        return self._vault

    def _s3_endpoint(self) -> str | None:
        return self.settings.s3_endpoint_url or os.environ.get("MLFLOW_S3_ENDPOINT_URL")

    @property
    def user(self) -> str:
        return lineage_mod.current_user(self.settings.user)

    # -- reading --------------------------------------------------------------------------
    def versions(self, name: str) -> list[VersionRecord]:
        """Visible versions of a model, oldest first."""
        check_name(name)
        return [v for v in self.tracking.versions(name) if is_visible(v)]

    def resolve(self, name: str, ref: str | int | None = "latest") -> VersionRecord:
        return resolve(name, VersionRef.parse(ref or "latest"), self.versions(name))

    def get(
        self, name: str, ref: str | int | None = "latest", *, full: bool = True
    ) -> ModelVersion:
        """One version with its metrics, params, lineage and artifact location."""
        record = self.resolve(name, ref)
        return self._model_version(record, full=full)

    details = get

    def _model_version(self, record: VersionRecord, *, full: bool) -> ModelVersion:
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        location = None
        if full:
            if record.run_id:
                with contextlib.suppress(YardError):
                    run = self.tracking.get_run(record.run_id)
                    metrics, params = run["metrics"], run["params"]
            location = self.tracking.artifact_location(record)
        return ModelVersion.from_record(
            record, metrics=metrics, params=params, artifact_location=location
        )

    def list_models(self) -> list[dict[str, Any]]:
        """Every model: version count, latest semver, who holds staging / production."""
        rows = []
        for model in self.tracking.list_models():
            rows.append(self._model_row(model))
        return rows

    def _model_row(self, model: ModelRecord) -> dict[str, Any]:
        # The registered model already carries its aliases: no second look-up per model.
        versions = [v for v in self.tracking.versions(model.name, with_aliases=False)
                    if is_visible(v)]
        by_number = {v.version: v for v in versions}
        latest = max(versions, key=lambda v: v.version, default=None)

        def holder(alias: str) -> str | None:
            number = model.aliases.get(alias)
            if number is None or number not in by_number:
                return None
            semver = by_number[number].tags.get(T_SEMVER)
            return self.settings.format_version(semver) if semver else f"#{number}"

        return {
            "name": model.name,
            "versions": len(versions),
            "latest": latest.tags.get(T_SEMVER) if latest else None,
            "latest_version": latest.version if latest else None,
            "highest_semver": highest_semver([v.tags.get(T_SEMVER, "") for v in versions]),
            "staging": holder("staging"),
            "production": holder("production"),
            "description": model.description,
            "updated_at": model.updated_ms,
        }

    def lineage(self, name: str, ref: str | int | None = "latest") -> dict[str, Any]:
        """Code, data, params and environment of a version; DVC data refs get the git commit
        that recorded them when it exists by now."""
        from modelyard import dvc_support

        mv = self.get(name, ref)
        for data in mv.lineage.data:
            if data.source == "dvc" and not data.git_commit:
                data.git_commit = dvc_support.commit_recording(Path.cwd(), data.hash)
        return {
            "name": mv.name,
            "version": mv.version,
            "semver": mv.semver,
            "run_id": mv.run_id,
            "params": mv.params,
            "lineage": mv.lineage.to_dict(),
        }

    def checkout_data(self, name: str, ref: str | int | None, root: Path) -> list[dict[str, str]]:
        """Restore, through DVC, the exact training data a version was trained on."""
        from modelyard import dvc_support

        mv = self.get(name, ref, full=False)
        restored = []
        for data in mv.lineage.data:
            if data.source != "dvc":
                continue
            path = Path(data.path)
            dvc_support.checkout(path if path.is_absolute() else root / path, data.hash)
            restored.append({"path": data.path, "md5": data.hash})
        if not restored:
            raise UserError(f"{mv.label} has no DVC-tracked data in its lineage")
        return restored

    # -- registration ---------------------------------------------------------------------
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
    ) -> ModelVersion:
        """Log and register a model in one call; returns the new, fully registered version.

        >>> yard.register(clf, "churn", metrics={"accuracy": 0.9}, params={"depth": 5},
        ...               input_example=X.head(), data=["data/train.csv"], seed=42)
        """
        from modelyard import flavors

        self._check_request(name, bump, version, metrics)
        chosen = flavors.detect(model, flavor)
        kwargs = flavors.save_kwargs(chosen, model)

        def save(local: Path, run_id: str, model_id: str, artifact_location: str) -> None:
            self._save_local(
                chosen, model, local, run_id, model_id, artifact_location, input_example,
                signature, pip_requirements, kwargs,
            )

        model_class = f"{type(model).__module__}.{type(model).__qualname__}"
        return self._register(
            save, name, chosen.name, model_class, metrics=metrics, params=params, data=data,
            description=description, tags=tags, seed=seed, bump=bump, version=version,
            started_at=started_at, duration_s=duration_s,
        )

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
    ) -> ModelVersion:
        """Register a model saved with ``mlflow.<flavor>.save_model`` (a folder with MLmodel)."""
        self._check_request(name, bump, version, metrics)
        if not (path / "MLmodel").is_file():
            raise InvalidInput(f"{path} is not a saved MLflow model (no MLmodel file in it)")
        from mlflow.models import Model

        try:
            flavors_found = list(Model.load(str(path / "MLmodel")).flavors)
        except Exception as exc:  # noqa: BLE001 - a user's malformed file
            raise InvalidInput(f"{path}/MLmodel is not readable: {exc}") from None
        flavor = next((f for f in flavors_found if f != "python_function"), "python_function")

        def save(local: Path, run_id: str, model_id: str, artifact_location: str) -> None:
            shutil.copytree(path, local)

        return self._register(
            save, name, flavor, "", metrics=metrics, params=params, data=data,
            description=description, tags=tags, seed=seed, bump=bump, version=version,
            started_at=None, duration_s=None,
        )

    def _register(
        self,
        save: Callable[[Path, str, str, str], None],
        name: str,
        flavor: str,
        model_class: str,
        *,
        metrics: dict[str, float] | None,
        params: dict[str, Any] | None,
        data: list[str | Path] | None,
        description: str | None,
        tags: dict[str, str] | None,
        seed: int | str | None,
        bump: str | None,
        version: str | None,
        started_at: datetime | None,
        duration_s: float | None,
    ) -> ModelVersion:
        active = self._active_run_id()
        lineage = lineage_mod.capture(
            cwd=Path.cwd(), data=data, seed=seed, user=self.settings.user,
            started_at=started_at or self._run_start(active), duration_s=duration_s,
            parent_run=self._parent_run(active),
        )
        str_params = {k: str(v) for k, v in (params or {}).items()}
        run_id = active or self.tracking.create_run(
            self.settings.experiment, run_name=f"{name}-register",
            tags={"mlflow.user": self.user, "modelyard.model": name},
        )
        owns_run = active is None
        model_id: str | None = None
        try:
            self.tracking.log_batch(run_id, metrics=metrics, params=params, fresh_run=owns_run)
            model_id, artifact_location = self.tracking.create_logged_model(
                self.settings.experiment, run_id, flavor, str_params
            )
            with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
                local = Path(tmp) / "model"
                save(local, run_id, model_id, artifact_location)
                manifest = Manifest.of_directory(local)
                fingerprint = self._fingerprint_of_dir(local, lineage, flavor, model_class,
                                                       str_params)
                self.tracking.upload_logged_model(model_id, run_id, local)
                self.vault.store_objects(local, manifest)
            tags_out = self._version_tags(fingerprint, lineage, manifest, tags)
            mv = self._create_and_finalize(
                name, f"models:/{model_id}", run_id, model_id, tags_out, description,
                fingerprint, manifest, bump, version,
            )
        except BaseException as exc:
            if model_id:
                self.tracking.fail_logged_model(model_id)
            if owns_run:
                with contextlib.suppress(Exception):
                    self.tracking.end_run(run_id, "FAILED")
            if isinstance(exc, (UserError, RegistrationFailed)):
                raise
            if isinstance(exc, YardError):
                raise RegistrationFailed(name=name, detail=exc.message) from exc
            raise
        if owns_run:
            with contextlib.suppress(YardError):
                self.tracking.end_run(run_id)
        mv.artifact_location = artifact_location
        mv.metrics = {k: float(v) for k, v in (metrics or {}).items()}
        mv.params = str_params
        self._after_register(mv)
        return mv

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
        """Register a model already logged by MLflow (``models:/m-...`` or ``runs:/RUN/path``)
        without uploading it again."""
        self._check_request(name, bump, version, None)
        model_id, run_id = self.tracking.logged_model_of(uri)
        source = f"models:/{model_id}" if model_id else uri
        lineage = lineage_mod.capture(
            cwd=Path.cwd(), data=data, seed=seed, user=self.settings.user, started_at=None,
            duration_s=None, parent_run=None,
        )
        try:
            with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
                local = self.tracking.download(source, Path(tmp))
                if (local / "MLmodel").is_file() is False:
                    raise InvalidInput(f"{uri} is not an MLflow model (no MLmodel file)")
                manifest = Manifest.of_directory(local)
                params = self.tracking.get_run(run_id)["params"] if run_id else {}
                fingerprint = self._fingerprint_of_dir(local, lineage, None, "", params)
                self.vault.store_objects(local, manifest)
            tags_out = self._version_tags(fingerprint, lineage, manifest, tags)
            mv = self._create_and_finalize(
                name, source, run_id, model_id, tags_out, description, fingerprint, manifest,
                bump, version,
            )
        except (UserError, RegistrationFailed):
            raise
        except YardError as exc:
            raise RegistrationFailed(name=name, detail=exc.message) from exc
        self._after_register(mv)
        return mv

    def _check_request(
        self, name: str, bump: str | None, version: str | None, metrics: dict[str, Any] | None
    ) -> None:
        check_name(name)
        if bump is not None and bump not in BUMPS:
            raise InvalidInput(f"bump must be one of {', '.join(BUMPS)}, not {bump!r}")
        if bump and version:
            raise InvalidInput("give either bump= or version=, not both")
        if version is not None:
            parse_semver(version)
        for key, value in (metrics or {}).items():
            try:
                float(value)
            except (TypeError, ValueError):
                raise InvalidInput(f"metric {key!r} is not a number: {value!r}") from None

    def _active_run_id(self) -> str | None:
        import mlflow

        run = mlflow.active_run()
        return run.info.run_id if run else None

    def _run_start(self, run_id: str | None) -> datetime | None:
        if not run_id:
            return None
        with contextlib.suppress(YardError):
            start = self.tracking.get_run(run_id)["start_time"]
            if start:
                return datetime.fromtimestamp(start / 1000, tz=timezone.utc)
        return None

    def _parent_run(self, run_id: str | None) -> str | None:
        if not run_id:
            return None
        with contextlib.suppress(YardError):
            return self.tracking.get_run(run_id)["tags"].get("mlflow.parentRunId")
        return None

    def _save_local(
        self,
        chosen: Any,
        model: Any,
        local: Path,
        run_id: str,
        model_id: str,
        artifact_location: str,
        input_example: Any,
        signature: Any,
        pip_requirements: list[str] | None,
        kwargs: dict[str, Any],
    ) -> None:
        from mlflow.models import Model

        from modelyard import flavors

        cache = self.settings.resolved_cache_dir
        requirements = pip_requirements or flavors.pip_requirements(chosen, None, cache)
        mlflow_model = Model(
            artifact_path=artifact_location, model_uuid=model_id, run_id=run_id,
            model_id=model_id,
        )
        def attempt(options: dict[str, Any]) -> None:
            shutil.rmtree(local, ignore_errors=True)
            chosen.save(
                model, local, mlflow_model, input_example=input_example, signature=signature,
                pip_requirements=requirements, **options,
            )

        try:
            try:
                attempt(kwargs)
            except Exception as exc:
                if not flavors.is_untrusted_types_error(exc):
                    raise
                # This object holds types its class's earlier objects did not: work them out.
                attempt(flavors.save_kwargs(chosen, model, refresh=True))
        except YardError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInput(f"the model could not be saved by MLflow: {first}") from exc
        if requirements is None:
            # First registration in this environment: MLflow inferred them; keep the answer.
            flavors.pip_requirements(chosen, local, cache)

    def _fingerprint_of_dir(
        self, local: Path, lineage: Lineage, flavor: str | None, model_class: str,
        params: dict[str, str],
    ) -> Fingerprint:
        from mlflow.models import Model

        mlmodel = Model.load(str(local / "MLmodel"))
        sig = mlmodel.signature
        flavor_name = flavor or next(
            (f for f in mlmodel.flavors if f != "python_function"), "python_function"
        )
        return Fingerprint(
            inputs=Fingerprint.columns_from_schema(sig.inputs) if sig else None,
            outputs=Fingerprint.columns_from_schema(sig.outputs) if sig else None,
            data=lineage.data_hashes(),
            model_class=model_class,
            flavor=flavor_name,
            params=params,
            code=lineage.git_commit,
            seed=lineage.seed,
        )

    @staticmethod
    def _version_tags(
        fp: Fingerprint, lineage: Lineage, manifest: Manifest, user_tags: dict[str, str] | None
    ) -> dict[str, str]:
        tags = {str(k): str(v) for k, v in (user_tags or {}).items()}
        bad = [k for k in tags if k.startswith("modelyard.")]
        if bad:
            raise InvalidInput(f"tags in the 'modelyard.' namespace are reserved: {bad[0]}")
        tags.update(lineage.to_tags())
        tags.update({
            T_STATUS: STATUS_PENDING,
            T_MANIFEST: manifest.sha256,
            T_SCHEMA: fp.schema_json(),
            T_FLAVOR: fp.flavor,
            T_CLASS: fp.model_class,
            T_PARAMS: json.dumps(fp.params, sort_keys=True),
        })
        return tags

    def _create_and_finalize(
        self,
        name: str,
        source: str,
        run_id: str | None,
        model_id: str | None,
        tags: dict[str, str],
        description: str | None,
        fingerprint: Fingerprint,
        manifest: Manifest,
        bump: str | None,
        version: str | None,
    ) -> ModelVersion:
        """Create the version as pending, confirm its semver, write its manifest, mark ready.

        The semver is worked out before the version exists and written with it; after
        creation it is confirmed against what other writers did meanwhile. Any failure after
        creation deletes the version again: nothing half-registered stays visible (pending
        versions are invisible to modelyard's readers).
        """
        try:
            before = self.tracking.versions(name, with_aliases=False)
        except ModelNotFound:
            self.tracking.ensure_registered_model(name)
            before = []
        planned = self._semver_after(name, before, fingerprint, bump, version)
        record = self.tracking.create_version(
            name, source, run_id,
            {**tags, T_SEMVER: planned[0], T_BUMP: planned[1], T_REASON: planned[2],
             T_STAGE: "none", T_STATUS: STATUS_PENDING},
            description, model_id,
        )
        try:
            semver, bump_kind, reason = self._confirm_semver(
                name, record.version, before, planned, fingerprint, bump, version
            )
            self.vault.write_manifest(
                name, record.version, manifest,
                {"semver": semver, "source": source, "run_id": run_id,
                 "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            )
            final = {T_SEMVER: semver, T_BUMP: bump_kind, T_REASON: reason}
            changed = {k: v for k, v in final.items() if v != record.tags.get(k)}
            # Status last: it is what makes the version visible.
            self.tracking.set_version_tags(name, record.version, {**changed,
                                                                  T_STATUS: STATUS_READY})
        except BaseException as exc:
            self._discard_version(name, record.version)
            if isinstance(exc, YardError) and not isinstance(exc, (BackendError, StorageError)):
                raise
            if isinstance(exc, YardError):
                raise RegistrationFailed(name=name, detail=exc.message) from exc
            raise
        record.tags.update(final)
        record.tags[T_STATUS] = STATUS_READY
        return ModelVersion.from_record(record)

    def _discard_version(self, name: str, version: int) -> None:
        with contextlib.suppress(Exception):
            self.vault.delete_manifest(name, version)
        with contextlib.suppress(Exception):
            self.tracking.delete_version(name, version)

    def _semver_after(
        self, name: str, earlier: list[VersionRecord], fp: Fingerprint, bump: str | None,
        explicit: str | None,
    ) -> tuple[str, str, str]:
        """The semver a new version gets after the given (registered) versions."""
        managed = [v for v in earlier if is_visible(v) and v.tags.get(T_SEMVER)]
        highest = highest_semver([v.tags[T_SEMVER] for v in managed])
        if explicit:
            return (check_explicit(name, explicit, highest), "explicit",
                    f"version {explicit} set explicitly")
        base = next((v for v in managed if v.tags[T_SEMVER] == highest), None)
        decision = decide_bump(fp, self._fingerprint_of_record(base) if base else None)
        if bump:
            return (apply_bump(highest, bump),  # type: ignore[arg-type]
                    bump, f"{bump} bump requested (detected: {decision.bump}: {decision.reason})")
        return apply_bump(highest, decision.bump), decision.bump, decision.reason

    def _confirm_semver(
        self, name: str, number: int, before: list[VersionRecord],
        planned: tuple[str, str, str], fp: Fingerprint, bump: str | None, explicit: str | None,
    ) -> tuple[str, str, str]:
        """Semvers follow MLflow's version numbers: wait for earlier pending versions first.

        MLflow hands out version numbers atomically; a registration waits until every lower
        numbered registration in flight is registered (or has gone stale), so concurrent
        registrations get distinct, increasing semvers without any lock of modelyard's own.
        """
        delay = 0.02
        while True:
            everything = self.tracking.versions(name, with_aliases=False)
            now_ms = time.time() * 1000
            waiting = [
                v for v in everything
                if v.version < number and v.tags.get(T_STATUS) == STATUS_PENDING
                and now_ms - v.created_ms < self.settings.pending_timeout * 1000
            ]
            if not waiting:
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        earlier = [v for v in everything if v.version < number]

        def registered(records: list[VersionRecord]) -> set[tuple[int, str]]:
            return {(v.version, v.tags.get(T_SEMVER, "")) for v in records if is_visible(v)}

        if registered(earlier) == registered([v for v in before if v.version < number]):
            chosen = planned
        else:
            chosen = self._semver_after(name, earlier, fp, bump, explicit)
        later = [v.tags[T_SEMVER] for v in everything
                 if v.version > number and is_visible(v) and v.tags.get(T_SEMVER)]
        top_later = highest_semver(later)
        if top_later and parse_semver(chosen[0]) <= parse_semver(top_later):
            raise VersionConflict(name=name, requested=chosen[0], highest=top_later)
        return chosen

    @staticmethod
    def _fingerprint_of_record(record: VersionRecord) -> Fingerprint:
        inputs, outputs = Fingerprint.parse_schema(record.tags.get(T_SCHEMA))
        lineage = Lineage.from_tags(record.tags)
        try:
            params = json.loads(record.tags.get(T_PARAMS, "{}"))
        except ValueError:
            params = {}
        return Fingerprint(
            inputs=inputs, outputs=outputs, data=lineage.data_hashes(),
            model_class=record.tags.get(T_CLASS, ""), flavor=record.tags.get(T_FLAVOR, ""),
            params={str(k): str(v) for k, v in params.items()}, code=lineage.git_commit,
            seed=lineage.seed,
        )

    def _after_register(self, mv: ModelVersion) -> None:
        """Hook for policy (default stage, auto-promotion) and the audit trail."""
        hook = getattr(self, "_on_registered", None)
        if callable(hook):
            hook(mv)

    # -- loading --------------------------------------------------------------------------
    def load(
        self,
        name: str,
        ref: str | int | None = "production",
        *,
        verify: bool = True,
        train: Callable[[], Any] | None = None,
    ) -> LoadedModel:
        """Load a version after checking every file against its manifest.

        Fallback chain: registry (local cache first) -> last verified copy in the local
        cache when the registry is unreachable -> ``train()`` if given. Each step is logged.

        >>> loaded = yard.load("churn", "production")
        >>> loaded.model.predict(X)
        """
        try:
            record = self.resolve(name, ref)
        except (BackendError, StorageError) as exc:
            log.warning("registry unreachable for %s@%s: %s", name, ref, exc.message)
            cached = self._load_remembered(name, ref, verify)
            if cached is not None:
                log.info("loaded %s from the local cache", cached.version.label)
                return cached
            if train is None:
                raise
            log.warning("no cached copy of %s@%s; training a fallback model", name, ref)
            return self._trained_fallback(name, ref, train)
        mv = self._model_version(record, full=True)
        path, source, verified = self._materialize(mv, verify)
        loaded = LoadedModel(self._deserialize(path, mv), mv, str(path), source, verified)
        self._remember(name, ref, mv)
        log.info("loaded %s from %s (verified=%s)", mv.label, source, verified)
        return loaded

    def download(self, name: str, ref: str | int | None, dest: Path, *, verify: bool = True
                 ) -> tuple[ModelVersion, Path]:
        """Copy a version's verified files to dest."""
        mv = self.get(name, ref)
        path, _, _ = self._materialize(mv, verify)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(path, dest, dirs_exist_ok=True)
        return mv, dest

    def _manifest_of(self, mv: ModelVersion) -> Manifest:
        """The version's manifest from the vault, checked against the hash tagged on it."""
        if not mv.manifest_sha256:
            raise IntegrityError(
                name=mv.name, semver=mv.semver or f"#{mv.version}",
                detail="no manifest recorded (bring it under modelyard with `adopt`, "
                "or load with verify=False)",
            )
        return self.vault.read_manifest(mv.name, mv.version, mv.manifest_sha256,
                                        mv.semver or "?")

    def _materialize(self, mv: ModelVersion, verify: bool) -> tuple[Path, str, bool]:
        """A verified local copy of the version's files: (path, where from, verified)."""
        manifest = self._manifest_of(mv) if verify else None
        key = mv.manifest_sha256 or f"unverified-{mv.name}-{mv.version}"
        cache = self.settings.resolved_cache_dir / "models" / key
        if cache.is_dir():
            try:
                if manifest is not None:
                    manifest.verify_directory(cache, label=mv.name, semver=mv.semver or "?")
                return cache, "cache", manifest is not None
            except IntegrityError:
                log.warning("cached copy of %s is damaged; downloading again", mv.label)
                shutil.rmtree(cache, ignore_errors=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".dl-", dir=cache.parent))
        try:
            local = self.tracking.download(mv.source, staging)
            if manifest is not None:
                manifest.verify_directory(local, label=mv.name, semver=mv.semver or "?")
            with contextlib.suppress(OSError):
                local.rename(cache)
            if not cache.is_dir():
                raise StorageError(detail=f"could not place the download in {cache}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cache, "registry", manifest is not None

    @staticmethod
    def _deserialize(path: Path, mv: ModelVersion) -> Any:
        import importlib

        flavor = mv.tags.get(T_FLAVOR, "")
        if flavor and flavor != "python_function":
            with contextlib.suppress(ImportError):
                module = importlib.import_module(f"mlflow.{flavor}")
                return module.load_model(str(path))
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(str(path))

    def _ref_file(self, name: str, ref: str | int | None) -> Path:
        safe = re.sub(r"[^\w.\-]", "_", str(ref or "latest"))
        return self.settings.resolved_cache_dir / "refs" / name / f"{safe}.json"

    def _remember(self, name: str, ref: str | int | None, mv: ModelVersion) -> None:
        path = self._ref_file(name, ref)
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(mv.to_dict(), default=str))

    def _load_remembered(self, name: str, ref: str | int | None, verify: bool
                         ) -> LoadedModel | None:
        path = self._ref_file(name, ref)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["lineage"] = Lineage(**{**data["lineage"], "data": []})
        mv = ModelVersion(**data)
        cache = self.settings.resolved_cache_dir / "models" / str(mv.manifest_sha256)
        if not cache.is_dir():
            return None
        if verify:
            # The vault may be unreachable too; the cached manifest copy was verified on write.
            try:
                manifest = self.vault.read_manifest(
                    mv.name, mv.version, str(mv.manifest_sha256), mv.semver or "?"
                )
                manifest.verify_directory(cache, label=mv.name, semver=mv.semver or "?")
            except StorageError:
                log.warning("vault unreachable: using the cached copy of %s as last verified",
                            mv.label)
        return LoadedModel(self._deserialize(cache, mv), mv, str(cache), "cache", verify)

    def _trained_fallback(self, name: str, ref: str | int | None, train: Callable[[], Any]
                          ) -> LoadedModel:
        model = train()
        mv = ModelVersion(
            name=name, version=0, semver=None, stage="none", run_id=None, source="train",
            artifact_location="", bump=None, bump_reason=None, manifest_sha256=None,
            aliases=[], tags={}, description="trained by the fallback callback",
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), managed=False,
        )
        return LoadedModel(model, mv, "", "train", False)

    # -- integrity ------------------------------------------------------------------------
    def verify(self, name: str, ref: str | int | None = "latest") -> dict[str, Any]:
        """Check a version's stored files against its manifest without loading them."""
        mv = self.get(name, ref, full=False)
        manifest = self._manifest_of(mv)
        with tempfile.TemporaryDirectory(prefix="modelyard-verify-") as tmp:
            local = self.tracking.download(mv.source, Path(tmp))
            manifest.verify_directory(local, label=name, semver=mv.semver or "?")
        return {"name": name, "version": mv.version, "semver": mv.semver, "ok": True,
                "files": len(manifest.files), "bytes": manifest.total_size}

    # -- health ---------------------------------------------------------------------------
    def doctor(self) -> dict[str, Any]:
        """What is in use and whether each part answers. Secrets are shown by name only."""
        from modelyard import doctor

        return doctor.run(self)

__all__ = ["Yard", "redact"]
