"""The one registration pipeline every new version goes through.

register (an object, a saved folder, an MLflow URI: ``registration.py`` turns each into a
``Draft``), import, restore and adopt all take the same steps: pending -> semver chosen and
confirmed -> manifest -> ready, or discard everything the attempt created. A version is
either fully registered (artifacts, tags, manifest) or not visible at all: readers only see
versions whose ``modelyard.status`` is ``ready``.

Concurrent semvers follow MLflow's atomically assigned version numbers: a registration waits
until every lower-numbered registration in flight is registered (or has gone stale), so
concurrent registrations get distinct, increasing semvers without a lock of modelyard's own.

One error rule: a caller's mistake (``UserError``) is raised as it is; any other modelyard
error becomes ``RegistrationFailed`` naming the model, after the attempt's debris is removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.context import Context
from modelyard.core.entities import ModelVersion
from modelyard.core.lineage import Lineage
from modelyard.core.names import (
    STATUS_PENDING,
    STATUS_READY,
    T_ADOPTED,
    T_BUMP,
    T_MANIFEST,
    T_REASON,
    T_RUN_MODEL,
    T_SEMVER,
    T_SEMVER_HIGH,
    T_SIGNER,
    T_STAGE,
    T_STATUS,
)
from modelyard.core.records import VersionRecord
from modelyard.core.refs import is_visible
from modelyard.core.versioning import Fingerprint, highest_semver
from modelyard.errors import InvalidInput, ModelNotFound, RegistrationFailed, UserError, YardError
from modelyard.registry.journal import Journal
from modelyard.registry.semver_plan import (
    SemverPlan,
    SemverPlanner,
    Standing,
    fingerprint_of_dir,
    fingerprint_tags,
)
from modelyard.store.vault import Manifest, drop_mlflow_bookkeeping

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Future

log = logging.getLogger("modelyard.registration")

SaveFn = Callable[[Path, str, str, str], None]  # (folder, run_id, model_id, artifact location)
AfterFn = Callable[[ModelVersion, str], None]  # (new version, "register" | "import" | ...)


@dataclass
class Draft:
    """Everything a new version is made of, before it exists."""

    name: str
    flavor: str
    model_class: str
    save: SaveFn | None = None  # writes the model folder; None when ``uri`` is given
    uri: str | None = None  # an existing MLflow model (models:/m-..., runs:/...)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    fixed_tags: dict[str, str] = field(default_factory=dict)  # kept over the fingerprint's
    stage: str = "none"
    description: str | None = None
    lineage: Lineage = field(default_factory=Lineage)
    semver: SemverPlan = field(default_factory=SemverPlan)
    run_name: str = ""
    run_tags: dict[str, str] = field(default_factory=dict)
    manifest_extra: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None  # when ``save`` hashed the files while writing them
    action: str = "register"  # what the audit trail calls it
    training_data: Any = None  # a frame profiled for drift and data-quality checks
    # The signature a version brings along (import, restore: already checked against the
    # trusted keys); a registration signs with ``signing_key`` instead.
    signature: bytes | None = None


class Pipeline:
    """Creates versions from drafts (and brings existing ones under modelyard). Built with the
    context and a hook run after each registration."""

    def __init__(self, ctx: Context, after: AfterFn | None = None) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.after = after
        self.semvers = SemverPlanner(ctx)

    def create(self, draft: Draft) -> ModelVersion:
        """Register one version from a draft; nothing half-made stays behind on failure.
        The journal (``journal.py``) keeps what the attempt created in the vault until it
        is over, so what a process that dies leaves behind is known."""
        journal = Journal(self.ctx.vault.store, draft.name, draft.action)
        debris = _Debris(self.ctx, journal)
        if draft.action == "register" and self.ctx.signatures.signing:
            from modelyard.store.signatures import signer_of

            signer_of(self.ctx.settings.signing_key or "")  # an unusable key: before anything
        try:
            journal.open()
            mv = self._create(draft, debris)
        except BaseException as exc:
            debris.clean()
            journal.close()
            if isinstance(exc, (UserError, RegistrationFailed)) or not isinstance(
                    exc, YardError):
                raise
            raise RegistrationFailed(name=draft.name, detail=exc.message) from exc
        try:
            write_profile(self.ctx, mv, draft.training_data, draft.lineage)
            if self.after is not None:
                self.after(mv, draft.action)  # the audit event: the journal stays till then
        finally:
            journal.close()
        return mv

    def _create(self, draft: Draft, debris: _Debris) -> ModelVersion:
        if draft.uri is not None:
            return self._create_from_uri(draft, debris)
        if draft.save is None:  # pragma: no cover - a programming error
            raise TypeError("a draft needs save or uri")
        with self._run(draft, debris) as run_id:
            model_id, location = self.tracking.create_logged_model(
                self.ctx.settings.experiment, run_id, draft.flavor, draft.params)
            debris.logged_model = (model_id, location)
            debris.note()
            with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
                local = Path(tmp) / "model"
                draft.save(local, run_id, model_id, location)
                manifest = draft.manifest or Manifest.of_directory(local)
                fingerprint = _fingerprint_of_dir(local, draft)
                # The artifact store and the vault each get their own copy, at the same time.
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=2) as pool:
                    copies = [pool.submit(self.tracking.upload_logged_model, model_id, run_id,
                                          local),
                              pool.submit(self.ctx.vault.store_objects, local, manifest)]
                _first_failure(copies[1], copies[0])
            mv = self._publish(draft, f"models:/{model_id}", run_id, model_id, manifest,
                               fingerprint, debris)
        mv.artifact_location = location
        log.info("registered %s (MLflow version %s)", mv.label, mv.version)
        return mv

    def _create_from_uri(self, draft: Draft, debris: _Debris) -> ModelVersion:
        from modelyard.backend import mlmodel

        uri = draft.uri or ""
        model_id, run_id = self.tracking.logged_model_of(uri)
        source = f"models:/{model_id}" if model_id else uri
        with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
            local = self.tracking.artifacts.download(source, Path(tmp))
            if not (local / "MLmodel").is_file():
                raise InvalidInput(f"{uri} is not an MLflow model (no MLmodel file)")
            # Downloaded from MLflow's store: its record of an earlier load is not the model's.
            drop_mlflow_bookkeeping(local, draft.name)
            manifest = Manifest.of_directory(local)
            draft.flavor = mlmodel.read_mlmodel(local).flavor
            draft.params = self.tracking.get_run(run_id)["params"] if run_id else {}
            fingerprint = _fingerprint_of_dir(local, draft)
            self.ctx.vault.store_objects(local, manifest)
        return self._publish(draft, source, run_id, model_id, manifest, fingerprint, debris)

    @contextlib.contextmanager
    def _run(self, draft: Draft, debris: _Debris) -> Iterator[str]:
        """The MLflow run the version is logged in: the caller's active run when it is on
        this tracking URI, else a run of modelyard's own (ended FAILED, then deleted, if the
        registration fails)."""
        from modelyard.backend import mlmodel

        active = mlmodel.active_run()
        run_id: str | None = None
        if active is not None:
            active_id, active_uri = active
            if self._on_this_uri(active_uri):
                run_id = active_id
            else:
                log.warning(
                    "the active MLflow run %s is on another tracking URI; %s is logged in a "
                    "run of modelyard's own on %s", active_id, draft.name,
                    self.tracking.display_uri)
        owns = run_id is None
        if run_id is None:
            run_id = self.tracking.create_run(
                self.ctx.settings.experiment, run_name=draft.run_name or f"{draft.name}-register",
                tags={"mlflow.user": self.ctx.user, T_RUN_MODEL: draft.name, **draft.run_tags})
            debris.run_id = run_id
            debris.note()
        metrics = list(draft.metrics.items())
        params = list(draft.params.items())
        for start in range(0, max(len(metrics), len(params), 1), 100):
            self.tracking.log_batch(run_id, metrics=dict(metrics[start:start + 100]),
                                    params=dict(params[start:start + 100]), fresh_run=owns)
        yield run_id
        debris.run_id = None  # the run holds a registered version now: keep it
        if owns:
            with contextlib.suppress(YardError):
                self.tracking.end_run(run_id)

    def _publish(self, draft: Draft, source: str, run_id: str | None, model_id: str | None,
                 manifest: Manifest, fingerprint: Fingerprint, debris: _Debris
                 ) -> ModelVersion:
        """Create the version as pending, confirm its semver, write its manifest, mark ready."""
        name = draft.name
        try:
            hint: str | None = self.ctx.listing.get_model(name).tags.get(T_SEMVER_HIGH)
        except ModelNotFound:
            debris.model_created = self.tracking.ensure_registered_model(name)
            debris.note()
            standing = Standing()
        else:
            standing = self.semvers.standing(name, None, hint)
        planned = self.semvers.plan(name, standing, fingerprint, draft.semver)
        signed = self._signature(draft, manifest)
        tags = {**draft.tags, **draft.lineage.to_tags(), **fingerprint_tags(fingerprint),
                **draft.fixed_tags, T_MANIFEST: manifest.sha256, T_SEMVER: planned[0],
                T_BUMP: planned[1], T_REASON: planned[2], T_STAGE: draft.stage,
                T_STATUS: STATUS_PENDING}
        if signed is not None:
            tags[T_SIGNER] = signed[1]
        record = self.tracking.create_version(name, source, run_id, tags, draft.description,
                                              model_id)
        debris.version = (name, record.version)
        debris.note()
        (semver, bump_kind, reason), standing = self.semvers.confirm(
            name, record.version, planned, fingerprint, draft.semver)
        self.ctx.vault.write_manifest(name, record.version, manifest, {
            "semver": semver, "source": source, "run_id": run_id,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **draft.manifest_extra})
        if signed is not None:
            self.ctx.signatures.put(manifest.sha256, signed[0])
        final = {T_SEMVER: semver, T_BUMP: bump_kind, T_REASON: reason}
        changed = {k: v for k, v in final.items() if v != record.tags.get(k)}
        # Status last: it is what makes the version visible.
        self.tracking.set_version_tags(name, record.version, {**changed, T_STATUS: STATUS_READY})
        debris.version = None
        debris.logged_model = None
        debris.model_created = False
        self.semvers.raise_hint(name, semver, standing)
        record.tags.update(final)
        record.tags[T_STATUS] = STATUS_READY
        mv = ModelVersion.from_record(record)
        mv.metrics = dict(draft.metrics)
        mv.params = dict(draft.params)
        return mv

    def _signature(self, draft: Draft, manifest: Manifest) -> tuple[bytes, str] | None:
        """The bundle and key id the new version is stored with: the one it brings, else for
        a registration one made with ``signing_key`` (an adopted or imported version of
        unknown origin is never signed on the way in: ``sign`` does that, audited)."""
        from modelyard.store.signatures import bundle_key_id

        if draft.signature is not None:
            return draft.signature, bundle_key_id(draft.signature) or ""
        if draft.action == "register":
            return self.ctx.signatures.make(draft.name, manifest)
        return None

    def manage(self, record: VersionRecord, local: Path, params: dict[str, str],
               earlier: list[VersionRecord], stage: str | None = None) -> ModelVersion:
        """Bring an existing version (registered by plain MLflow, files in ``local``) under
        modelyard: manifest, semver after ``earlier``, the same tags a registration writes.
        ``stage``: the one ``adopt`` chose (else from the stage aliases). The semver tag is
        written last: it is what makes the version managed."""
        name = record.name
        try:
            drop_mlflow_bookkeeping(local, name)  # a plain load's record is not the model's
            manifest = Manifest.of_directory(local)
            if not manifest.files:
                raise InvalidInput(f"{name} #{record.version}: no files at {record.source}")
            draft = Draft(name=name, flavor="", model_class="", params=dict(params))
            try:
                fingerprint = _fingerprint_of_dir(local, draft)
            except InvalidInput as exc:  # no MLmodel, or one written badly by other tools
                log.warning("%s #%s: %s; comparing as unknown", name, record.version,
                            exc.message)
                fingerprint = Fingerprint(params=dict(params))
            self.ctx.vault.store_objects(local, manifest)
            semver, bump, reason = self.semvers.semver_after(name, earlier, fingerprint, None,
                                                               None)
            reason = f"adopted from plain MLflow; {reason}"
            if stage is None:
                stage = ("production" if "production" in record.aliases
                         else "staging" if "staging" in record.aliases else "none")
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.ctx.vault.write_manifest(name, record.version, manifest, {
                "semver": semver, "source": record.source, "run_id": record.run_id,
                "created_at": now, "adopted": True})
            tags = {T_MANIFEST: manifest.sha256, **fingerprint_tags(fingerprint),
                    T_BUMP: bump, T_REASON: reason, T_STAGE: stage, T_ADOPTED: now,
                    T_STATUS: STATUS_READY}
            self.tracking.set_version_tags(name, record.version, tags)
            self.tracking.set_version_tags(name, record.version, {T_SEMVER: semver})  # last
            self.semvers.raise_hint(name, semver, Standing(
                hint=self.ctx.listing.get_model(name).tags.get(T_SEMVER_HIGH),
                high=highest_semver([v.tags.get(T_SEMVER, "") for v in earlier
                                     if is_visible(v)])))
        except YardError as exc:
            if isinstance(exc, (UserError, RegistrationFailed)):
                raise
            raise RegistrationFailed(name=name, detail=exc.message) from exc
        record.tags.update(tags)
        record.tags[T_SEMVER] = semver
        mv = ModelVersion.from_record(record)
        if self.after is not None:
            self.after(mv, "adopt")
        return mv

    def _on_this_uri(self, uri: str) -> bool:
        """Whether a tracking URI is this yard's: a run there can hold the new version."""
        return _same_uri(uri, self.tracking.tracking_uri)


class _Debris:
    """What a registration attempt created so far; removed again if the attempt fails. The
    journal entry mirrors it (``note``), so ``cleanup --debris`` can finish the job when the
    process died before it could (``clean_journal_entry``)."""

    def __init__(self, ctx: Context, journal: Journal | None = None) -> None:
        self.ctx = ctx
        self.journal = journal
        self.run_id: str | None = None
        self.logged_model: tuple[str, str] | None = None
        self.version: tuple[str, int] | None = None
        self.model_created = False

    def note(self) -> None:
        if self.journal is None:
            return
        model_id, location = self.logged_model or (None, None)
        self.journal.note(run_id=self.run_id, model_id=model_id, location=location,
                          version=self.version[1] if self.version else None,
                          model_created=self.model_created)

    def clean(self) -> None:
        tracking = self.ctx.tracking
        if self.version is not None:
            name, number = self.version
            with contextlib.suppress(Exception):
                self.ctx.vault.delete_manifest(name, number)
            with contextlib.suppress(Exception):
                tracking.delete_version(name, number)
            if self.model_created:
                with contextlib.suppress(Exception):
                    tracking.delete_model_if_empty(name)
        if self.logged_model is not None:
            model_id, location = self.logged_model
            tracking.fail_logged_model(model_id)
            with contextlib.suppress(Exception):
                tracking.artifacts.delete_artifacts(location)
        if self.run_id is not None:
            with contextlib.suppress(Exception):
                tracking.end_run(self.run_id, "FAILED")
            with contextlib.suppress(Exception):
                tracking.delete_run(self.run_id)


def clean_journal_entry(ctx: Context, name: str, body: dict[str, Any],
                        version_state: str | None) -> None:
    """Remove what a registration that died had created, as its journal entry names it: the
    steps a failing registration takes itself. ``version_state``: what became of the version
    the entry names (``pending``, ``ready``, ``gone``; None: it names none). A ready
    version is complete: it, its run and its logged model stay (the run is only ended)."""
    number = body.get("version")
    run_id = body.get("run_id") if isinstance(body.get("run_id"), str) else None
    if isinstance(number, int) and version_state == "ready":
        if run_id is not None:
            with contextlib.suppress(YardError):  # left RUNNING by the death
                if ctx.tracking.get_run(run_id)["status"] == "RUNNING":
                    ctx.tracking.end_run(run_id)
        return
    debris = _Debris(ctx)
    if isinstance(number, int) and version_state == "pending":
        debris.version = (name, number)
        debris.model_created = bool(body.get("model_created"))
    elif body.get("model_created"):
        with contextlib.suppress(YardError):  # an empty model this registration created
            ctx.tracking.delete_model_if_empty(name)
    if isinstance(body.get("model_id"), str) and isinstance(body.get("location"), str):
        debris.logged_model = (body["model_id"], body["location"])
    debris.run_id = run_id
    debris.clean()


def _fingerprint_of_dir(local: Path, draft: Draft) -> Fingerprint:
    return fingerprint_of_dir(local, draft.lineage, model_class=draft.model_class,
                              flavor=draft.flavor, params=draft.params)


def _same_uri(a: str, b: str) -> bool:
    def norm(uri: str) -> str:
        uri = uri.rstrip("/")
        if uri.startswith("sqlite:///"):
            return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
        return uri

    return norm(a) == norm(b)


SAMPLE_ROWS = 256


def write_profile(ctx: Context, mv: ModelVersion, frame: Any, lineage: Lineage) -> None:
    """Record the training-data profile at ``profiles/NAME/VERSION.json`` and a sample of its
    rows at ``samples/NAME/VERSION.json``: of ``frame`` when given, else of the first table
    among the lineage data. Never fails a registration."""
    from modelyard.core import profile
    from modelyard.store.vault import profile_key, sample_key

    try:
        if frame is None:
            frame = profile.training_frame(lineage.data, Path.cwd())
        if frame is None:
            return
        body = json.dumps(profile.profile_of(frame), default=str).encode()
        ctx.vault.store.put_bytes(profile_key(mv.name, mv.version), body)
        # A few rows the serving side checks a compiled copy's parity on (serving/compiled.py):
        # recorded now, while the data is at hand, and never converted here.
        sample = frame.sample(n=min(SAMPLE_ROWS, len(frame)), random_state=0)
        rows = json.dumps({"columns": [str(c) for c in sample.columns],
                           "rows": sample.astype(object).where(sample.notna(), None)
                           .values.tolist()}, default=str).encode()
        ctx.vault.store.put_bytes(sample_key(mv.name, mv.version), rows)
    except (YardError, OSError, ValueError, TypeError, ImportError) as exc:
        log.warning("training-data profile of %s not recorded: %s", mv.label, exc)


def _first_failure(vault: Future[Any], tracking: Future[Any]) -> None:
    """Raise the failure of the two copies, the vault's first: when S3 itself is gone the
    vault's error names its endpoint, while the tracking server's proxy only answers HTTP
    500. When both failed, the one error says both."""
    failures = [exc for exc in (vault.exception(), tracking.exception()) if exc is not None]
    if not failures:
        return
    first = failures[0]
    second = failures[1] if len(failures) == 2 else None
    if (isinstance(second, YardError) and isinstance(first, YardError)
            and type(first).__init__ is YardError.__init__):
        raise type(first)(f"{first.message}; the tracking server's copy failed too: "
                          f"{second.message}") from first
    raise first
