"""The one registration pipeline every new version goes through.

register (an object, a saved folder, an MLflow URI), import and adopt all take the same
steps: pending -> semver chosen and confirmed -> manifest -> ready, or discard everything the
attempt created. A version is either fully registered (artifacts, tags, manifest) or not
visible at all: readers only see versions whose ``modelyard.status`` is ``ready``.

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
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard import lineage as lineage_mod
from modelyard.context import Context
from modelyard.entities import ModelVersion
from modelyard.errors import (
    InvalidInput,
    ModelNotFound,
    RegistrationFailed,
    UserError,
    VersionConflict,
    YardError,
)
from modelyard.lineage import Lineage
from modelyard.names import (
    BUMPS,
    STATUS_PENDING,
    STATUS_READY,
    T_ADOPTED,
    T_BUMP,
    T_CLASS,
    T_FLAVOR,
    T_MANIFEST,
    T_PARAMS,
    T_REASON,
    T_RUN_MODEL,
    T_SCHEMA,
    T_SEMVER,
    T_SEMVER_HIGH,
    T_STAGE,
    T_STATUS,
    check_name,
    check_user_tags,
    is_semver,
    parse_semver,
)
from modelyard.records import SEARCH_PAGE_MAX
from modelyard.refs import is_visible
from modelyard.tracking import VersionRecord
from modelyard.vault import Manifest
from modelyard.versioning import (
    Fingerprint,
    apply_bump,
    check_explicit,
    decide_bump,
    highest_semver,
)

log = logging.getLogger("modelyard.registration")

SaveFn = Callable[[Path, str, str, str], None]  # (folder, run_id, model_id, artifact location)
AfterFn = Callable[[ModelVersion, str], None]  # (new version, "register" | "import" | ...)


@dataclass
class SemverPlan:
    """How the new version's semver is chosen: worked out (``bump``/``explicit`` optional),
    or ``fixed`` (import and restore keep the semver they carry)."""

    bump: str | None = None
    explicit: str | None = None
    fixed: str | None = None
    fixed_bump: str = ""
    fixed_reason: str = ""


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
    return out


_SCAN_PAGE = 50  # versions one planning search reads (newest first)
_CLOCK_SLACK_MS = 60_000  # creation times of neighbouring versions may disagree this much


@dataclass
class _Standing:
    """Where a model's semvers stand for a new version, read with bounded searches.

    ``top``: the visible version with the highest semver below the new one (what its
    semver follows and its fingerprint is compared with); ``later``: visible managed
    versions numbered above it; ``hint``: the model's ``semver_high`` tag as read;
    ``high``: the highest semver known to be taken."""

    top: VersionRecord | None = None
    later: list[VersionRecord] = field(default_factory=list)
    hint: str | None = None
    high: str | None = None


class Registrar:
    """Creates versions. Built with the context and a hook run after each registration."""

    def __init__(self, ctx: Context, after: AfterFn | None = None) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.after = after

    # -- the verbs ----------------------------------------------------------------------
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
        from modelyard import mlmodel

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
            duration_s=duration_s,
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
        from modelyard import mlmodel
        from modelyard.storage import copy_tree_safely

        floats = check_request(name, bump, version, metrics)
        info = mlmodel.read_mlmodel(path)
        copy_tree_safely(path, None, follow_links=follow_links)  # refuse before creating

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

    # -- the pipeline ---------------------------------------------------------------------
    def create(self, draft: Draft) -> ModelVersion:
        """Register one version from a draft; nothing half-made stays behind on failure."""
        debris = _Debris(self.ctx)
        try:
            mv = self._create(draft, debris)
        except BaseException as exc:
            debris.clean()
            if isinstance(exc, (UserError, RegistrationFailed)) or not isinstance(
                    exc, YardError):
                raise
            raise RegistrationFailed(name=draft.name, detail=exc.message) from exc
        write_profile(self.ctx, mv, draft.training_data, draft.lineage)
        if self.after is not None:
            self.after(mv, draft.action)
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
            with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
                local = Path(tmp) / "model"
                draft.save(local, run_id, model_id, location)
                manifest = draft.manifest or Manifest.of_directory(local)
                fingerprint = self.fingerprint_of_dir(local, draft)
                # The artifact store and the vault each get their own copy, at the same time.
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=2) as pool:
                    copies = [pool.submit(self.tracking.upload_logged_model, model_id, run_id,
                                          local),
                              pool.submit(self.ctx.vault.store_objects, local, manifest)]
                for copy in copies:
                    copy.result()
            mv = self._publish(draft, f"models:/{model_id}", run_id, model_id, manifest,
                               fingerprint, debris)
        mv.artifact_location = location
        log.info("registered %s (MLflow version %s)", mv.label, mv.version)
        return mv

    def _create_from_uri(self, draft: Draft, debris: _Debris) -> ModelVersion:
        from modelyard import mlmodel

        uri = draft.uri or ""
        model_id, run_id = self.tracking.logged_model_of(uri)
        source = f"models:/{model_id}" if model_id else uri
        with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
            local = self.tracking.download(source, Path(tmp))
            if not (local / "MLmodel").is_file():
                raise InvalidInput(f"{uri} is not an MLflow model (no MLmodel file)")
            manifest = Manifest.of_directory(local)
            draft.flavor = mlmodel.read_mlmodel(local).flavor
            draft.params = self.tracking.get_run(run_id)["params"] if run_id else {}
            fingerprint = self.fingerprint_of_dir(local, draft)
            self.ctx.vault.store_objects(local, manifest)
        return self._publish(draft, source, run_id, model_id, manifest, fingerprint, debris)

    @contextlib.contextmanager
    def _run(self, draft: Draft, debris: _Debris) -> Iterator[str]:
        """The MLflow run the version is logged in: the caller's active run when it is on
        this tracking URI, else a run of modelyard's own (ended FAILED, then deleted, if the
        registration fails)."""
        from modelyard import mlmodel

        active = mlmodel.active_run()
        run_id: str | None = None
        if active is not None:
            active_id, active_uri = active
            if _same_uri(active_uri, self.tracking.tracking_uri):
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
            standing = _Standing()
        else:
            standing = self._standing(name, None, hint)
        planned = self._plan(name, standing, fingerprint, draft.semver)
        tags = {**draft.tags, **draft.lineage.to_tags(), **self.fingerprint_tags(fingerprint),
                **draft.fixed_tags, T_MANIFEST: manifest.sha256, T_SEMVER: planned[0],
                T_BUMP: planned[1], T_REASON: planned[2], T_STAGE: draft.stage,
                T_STATUS: STATUS_PENDING}
        record = self.tracking.create_version(name, source, run_id, tags, draft.description,
                                              model_id)
        debris.version = (name, record.version)
        (semver, bump_kind, reason), standing = self._confirm(
            name, record.version, planned, fingerprint, draft.semver)
        self.ctx.vault.write_manifest(name, record.version, manifest, {
            "semver": semver, "source": source, "run_id": run_id,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **draft.manifest_extra})
        final = {T_SEMVER: semver, T_BUMP: bump_kind, T_REASON: reason}
        changed = {k: v for k, v in final.items() if v != record.tags.get(k)}
        # Status last: it is what makes the version visible.
        self.tracking.set_version_tags(name, record.version, {**changed, T_STATUS: STATUS_READY})
        debris.version = None
        debris.logged_model = None
        debris.model_created = False
        self._raise_hint(name, semver, standing)
        record.tags.update(final)
        record.tags[T_STATUS] = STATUS_READY
        mv = ModelVersion.from_record(record)
        mv.metrics = dict(draft.metrics)
        mv.params = dict(draft.params)
        return mv

    def manage(self, record: VersionRecord, local: Path, params: dict[str, str],
               earlier: list[VersionRecord]) -> ModelVersion:
        """Bring an existing version (registered by plain MLflow, files in ``local``) under
        modelyard: manifest, semver after ``earlier``, the same tags a registration writes.
        The semver tag is written last: it is what makes the version managed."""
        name = record.name
        try:
            manifest = Manifest.of_directory(local)
            if not manifest.files:
                raise InvalidInput(f"{name} #{record.version}: no files at {record.source}")
            draft = Draft(name=name, flavor="", model_class="", params=dict(params))
            try:
                fingerprint = self.fingerprint_of_dir(local, draft)
            except InvalidInput as exc:  # no MLmodel, or one written badly by other tools
                log.warning("%s #%s: %s; comparing as unknown", name, record.version,
                            exc.message)
                fingerprint = Fingerprint(params=dict(params))
            self.ctx.vault.store_objects(local, manifest)
            semver, bump, reason = self.semver_after(name, earlier, fingerprint, None, None)
            reason = f"adopted from plain MLflow; {reason}"
            stage = ("production" if "production" in record.aliases
                     else "staging" if "staging" in record.aliases else "none")
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.ctx.vault.write_manifest(name, record.version, manifest, {
                "semver": semver, "source": record.source, "run_id": record.run_id,
                "created_at": now, "adopted": True})
            tags = {T_MANIFEST: manifest.sha256, **self.fingerprint_tags(fingerprint),
                    T_BUMP: bump, T_REASON: reason, T_STAGE: stage, T_ADOPTED: now,
                    T_STATUS: STATUS_READY}
            self.tracking.set_version_tags(name, record.version, tags)
            self.tracking.set_version_tags(name, record.version, {T_SEMVER: semver})  # last
            self._raise_hint(name, semver, _Standing(
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

    # -- semvers ------------------------------------------------------------------------
    # Every look-up here is a bounded, indexed search (``search_versions``: newest first, a
    # page at a time, by model name, version number and one tag), whatever the number of
    # versions: the newest managed version below the new one, the holder of the model's
    # ``semver_high`` hint, registrations in flight (``status = pending``), and who holds a
    # semver. Only a missing or stale hint (a model registered before it existed, its
    # holder deleted) costs one listing, paged by version number.
    def _plan(self, name: str, standing: _Standing, fp: Fingerprint,
              plan: SemverPlan) -> tuple[str, str, str]:
        if plan.fixed is not None:
            return plan.fixed, plan.fixed_bump, plan.fixed_reason
        return self._semver_from(name, standing.top, fp, plan.bump, plan.explicit)

    def semver_after(
        self, name: str, earlier: list[VersionRecord], fp: Fingerprint, bump: str | None,
        explicit: str | None,
    ) -> tuple[str, str, str]:
        """(semver, bump, reason) of a new version after the given registered versions."""
        managed = [v for v in earlier if is_visible(v) and v.tags.get(T_SEMVER)]
        highest = highest_semver([v.tags[T_SEMVER] for v in managed])
        base = next((v for v in managed if v.tags[T_SEMVER] == highest), None)
        return self._semver_from(name, base, fp, bump, explicit, highest)

    def _semver_from(
        self, name: str, base: VersionRecord | None, fp: Fingerprint, bump: str | None,
        explicit: str | None, highest: str | None = None,
    ) -> tuple[str, str, str]:
        """(semver, bump, reason) after ``base``, the version holding the highest semver."""
        if highest is None and base is not None:
            highest = highest_semver([base.tags.get(T_SEMVER, "")])
        if explicit:
            return (check_explicit(name, explicit, highest), "explicit",
                    f"version {explicit} set explicitly")
        decision = decide_bump(fp, self.fingerprint_of_record(base) if base else None)
        if bump:
            return (apply_bump(highest, bump),  # type: ignore[arg-type]
                    bump, f"{bump} bump requested (detected: {decision.bump}: {decision.reason})")
        return apply_bump(highest, decision.bump), decision.bump, decision.reason

    def _confirm(
        self, name: str, number: int, planned: tuple[str, str, str], fp: Fingerprint,
        plan: SemverPlan,
    ) -> tuple[tuple[str, str, str], _Standing]:
        """Wait for lower-numbered registrations in flight, then work the semver out again
        from the registry as it is now (the same answer as planned unless an earlier one
        changed); VersionConflict if a later registration already took a higher one, or
        another version holds the same semver."""
        self._wait_for_earlier(name, number)
        standing = self._standing(
            name, number, self.ctx.listing.get_model(name).tags.get(T_SEMVER_HIGH))
        if plan.fixed is not None:
            if self._holder(name, plan.fixed, number) is not None:
                raise VersionConflict(name=name, requested=plan.fixed, highest=plan.fixed)
            return planned, standing
        chosen = self._semver_from(name, standing.top, fp, plan.bump, plan.explicit)
        top_later = highest_semver([v.tags[T_SEMVER] for v in standing.later])
        if top_later and parse_semver(chosen[0]) <= parse_semver(top_later):
            raise VersionConflict(name=name, requested=chosen[0], highest=top_later)
        if self._holder(name, chosen[0], number) is not None:
            raise VersionConflict(name=name, requested=chosen[0],
                                  highest=standing.high or chosen[0])
        return chosen, standing

    def _wait_for_earlier(self, name: str, number: int) -> None:
        """Until no lower-numbered registration younger than ``pending_timeout`` is pending.

        Pending versions are searched newest first below ``number``; version numbers and
        creation times rise together, so the search stops at the first page that ends in
        a stale one (left over from a crash): in-flight registrations are all it reads."""
        delay = 0.02
        timeout_ms = self.ctx.settings.pending_timeout * 1000
        while True:
            now_ms = time.time() * 1000
            below = number
            in_flight = False
            while True:
                page = self.ctx.listing.search_versions(
                    name, tag=(T_STATUS, STATUS_PENDING), below=below, limit=_SCAN_PAGE)
                if any(now_ms - v.created_ms < timeout_ms for v in page):
                    in_flight = True
                    break
                if len(page) < _SCAN_PAGE or (
                        now_ms - page[-1].created_ms >= timeout_ms + _CLOCK_SLACK_MS):
                    break
                below = page[-1].version
            if not in_flight:
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _standing(self, name: str, number: int | None, hint: str | None) -> _Standing:
        """Where the model's semvers stand for a new version numbered ``number`` (None: not
        created yet): the visible version with the highest semver below it, and the visible
        managed versions above it (registrations that went ahead)."""
        listing = self.ctx.listing
        later: list[VersionRecord] = []
        newest: VersionRecord | None = None
        below: int | None = None
        while newest is None:
            page = listing.search_versions(name, below=below, limit=_SCAN_PAGE)
            for record in page:
                if not is_visible(record) or not is_semver(record.tags.get(T_SEMVER, "")):
                    continue
                if number is not None and record.version >= number:
                    if record.version > number:
                        later.append(record)
                    continue
                newest = record
                break
            if len(page) < _SCAN_PAGE:
                break
            below = page[-1].version
        if not is_semver(hint or ""):
            return self._standing_by_listing(name, number, hint)
        top = newest
        assert hint is not None
        if top is None or parse_semver(hint) > parse_semver(top.tags[T_SEMVER]):
            holder = listing.version_by_tag(name, T_SEMVER, str(parse_semver(hint)))
            if holder is None or (number is not None and holder.version > number):
                # Its holder was deleted, or went ahead of a stale registration: list.
                return self._standing_by_listing(name, number, hint)
            top = holder
        return _Standing(top=top, later=later, hint=hint, high=highest_semver(
            [v.tags[T_SEMVER] for v in ([top] if top else []) + later]))

    def _standing_by_listing(self, name: str, number: int | None, hint: str | None
                             ) -> _Standing:
        """``_standing`` from every version (paged by version number, each page one bounded
        search): for a model without a usable ``semver_high`` hint. Rare: the hint is
        written after each registration."""
        log.info("%s: no usable %s hint; reading every version once", name, T_SEMVER_HIGH)
        records: list[VersionRecord] = []
        below: int | None = None
        while True:
            page = self.ctx.listing.search_versions(name, below=below, limit=SEARCH_PAGE_MAX)
            records += page
            if len(page) < SEARCH_PAGE_MAX:
                break
            below = page[-1].version
        managed = [v for v in records if is_visible(v) and is_semver(v.tags.get(T_SEMVER, ""))]
        earlier = [v for v in managed if number is None or v.version < number]
        highest = highest_semver([v.tags[T_SEMVER] for v in earlier])
        top = next((v for v in sorted(earlier, key=lambda v: -v.version)
                    if parse_semver(v.tags[T_SEMVER]) == parse_semver(highest)), None
                   ) if highest else None
        later = [v for v in managed if number is not None and v.version > number]
        standing = _Standing(top=top, later=later, hint=hint,
                             high=highest_semver([v.tags[T_SEMVER] for v in managed]))
        if standing.high and standing.high != hint:  # repaired now: the confirmation's
            self._raise_hint(name, standing.high, standing)  # look-ups are bounded again
            standing.hint = standing.high
        return standing

    def _holder(self, name: str, semver: str, number: int) -> VersionRecord | None:
        """A visible version other than ``number`` holding ``semver`` (a tag search)."""
        found = self.ctx.listing.version_by_tag(name, T_SEMVER, semver)
        return found if found is not None and found.version != number else None

    def _raise_hint(self, name: str, semver: str, standing: _Standing) -> None:
        """Keep the model's ``semver_high`` tag at the highest semver known to be taken. A
        hint only: planning checks it against its holder, and reads the newest versions
        too, so a hint lowered by a racing writer or left stale costs a search, not a
        wrong semver. Never fails the registration."""
        known = highest_semver([semver, standing.high or ""])  # a stale hint is not known
        if known is None or known == standing.hint:
            return
        try:
            self.tracking.set_model_tag(name, T_SEMVER_HIGH, known)
        except YardError as exc:
            log.warning("%s: %s hint not updated: %s", name, T_SEMVER_HIGH, exc.message)

    # -- fingerprints -----------------------------------------------------------------------
    def fingerprint_of_dir(self, local: Path, draft: Draft) -> Fingerprint:
        """What the next bump compares: schema, data, class, flavor, params, code, seed."""
        from modelyard import mlmodel

        info = mlmodel.read_mlmodel(local)
        return Fingerprint(
            inputs=Fingerprint.columns_from_schema(info.inputs),
            outputs=Fingerprint.columns_from_schema(info.outputs),
            data=draft.lineage.data_hashes(),
            model_class=draft.model_class,
            flavor=draft.flavor or info.flavor,
            params=dict(draft.params),
            code=draft.lineage.git_commit,
            seed=draft.lineage.seed,
            data_columns=draft.lineage.data_columns(),
        )

    @staticmethod
    def fingerprint_tags(fp: Fingerprint) -> dict[str, str]:
        return {T_SCHEMA: fp.schema_json(), T_FLAVOR: fp.flavor, T_CLASS: fp.model_class,
                T_PARAMS: json.dumps(fp.params, sort_keys=True)}

    @staticmethod
    def fingerprint_of_record(record: VersionRecord) -> Fingerprint:
        inputs, outputs = Fingerprint.parse_schema(record.tags.get(T_SCHEMA))
        lineage = Lineage.from_tags(record.tags)
        try:
            params = json.loads(record.tags.get(T_PARAMS, "{}"))
            params = params if isinstance(params, dict) else {}
        except ValueError:
            params = {}
        return Fingerprint(
            inputs=inputs, outputs=outputs, data=lineage.data_hashes(),
            model_class=record.tags.get(T_CLASS, ""), flavor=record.tags.get(T_FLAVOR, ""),
            params={str(k): str(v) for k, v in params.items()}, code=lineage.git_commit,
            seed=lineage.seed, data_columns=lineage.data_columns(),
        )

    # -- helpers ------------------------------------------------------------------------
    def _draft(self, name: str, flavor: str, model_class: str, *, metrics: dict[str, float],
               params: dict[str, Any] | None, data: list[str | Path] | None,
               description: str | None, tags: dict[str, str] | None,
               seed: int | str | None, bump: str | None, version: str | None,
               started_at: datetime | None, duration_s: float | None) -> Draft:
        user_tags = check_user_tags(tags)
        lineage = lineage_mod.capture(
            cwd=Path.cwd(), data=data, seed=seed, user=self.ctx.user,
            started_at=started_at or self._active_start(), duration_s=duration_s,
            parent_run=lineage_mod.parent_run_of(os.environ, self._active_same_uri(),
                                                 self._active_parent()),
        )
        return Draft(name=name, flavor=flavor, model_class=model_class, metrics=metrics,
                     params={str(k): str(v) for k, v in (params or {}).items()},
                     tags=user_tags, description=description, lineage=lineage,
                     semver=SemverPlan(bump=bump, explicit=version))

    def _active_same_uri(self) -> str | None:
        from modelyard import mlmodel

        active = mlmodel.active_run()
        if active and _same_uri(active[1], self.tracking.tracking_uri):
            return active[0]
        return None

    def _active_start(self) -> datetime | None:
        run_id = self._active_same_uri()
        if not run_id:
            return None
        with contextlib.suppress(YardError):
            start = self.tracking.get_run(run_id)["start_time"]
            if start:
                return datetime.fromtimestamp(start / 1000, tz=timezone.utc)
        return None

    def _active_parent(self) -> str | None:
        run_id = self._active_same_uri()
        if not run_id:
            return None
        with contextlib.suppress(YardError):
            return self.tracking.get_run(run_id)["tags"].get("mlflow.parentRunId")
        return None


class _Debris:
    """What a registration attempt created so far; removed again if the attempt fails."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.run_id: str | None = None
        self.logged_model: tuple[str, str] | None = None
        self.version: tuple[str, int] | None = None
        self.model_created = False
        self.name: str | None = None

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
                tracking.delete_artifacts(location)
        if self.run_id is not None:
            with contextlib.suppress(Exception):
                tracking.end_run(self.run_id, "FAILED")
            with contextlib.suppress(Exception):
                tracking.delete_run(self.run_id)


def _same_uri(a: str, b: str) -> bool:
    def norm(uri: str) -> str:
        uri = uri.rstrip("/")
        if uri.startswith("sqlite:///"):
            return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
        return uri

    return norm(a) == norm(b)


# -- training-data profiles ---------------------------------------------------------------
_PROFILED_SUFFIXES = (".csv", ".parquet")
_MAX_PROFILED_BYTES = 50 * 1024 * 1024


def training_frame(lineage: Lineage, root: Path) -> Any:
    """The first table among a version's lineage data (CSV or Parquet, at most 50 MB), read
    from ``root``; None when there is none."""
    for ref in lineage.data:
        path = Path(ref.path)
        path = path if path.is_absolute() else root / path
        if path.suffix.lower() not in _PROFILED_SUFFIXES or not path.is_file():
            continue
        if path.stat().st_size > _MAX_PROFILED_BYTES:
            continue
        import pandas as pd

        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    return None


def profile_of(frame: Any) -> dict[str, Any]:
    """``profile.build_profile`` plus the share of duplicated rows (data-quality checks)."""
    import pandas as pd

    from modelyard.profile import build_profile

    frame = pd.DataFrame(frame)
    profile = build_profile(frame)
    profile["duplicates"] = float(frame.duplicated().mean()) if len(frame) else 0.0
    return profile


def write_profile(ctx: Context, mv: ModelVersion, frame: Any, lineage: Lineage) -> None:
    """Record the training-data profile at ``profiles/NAME/VERSION.json``: of ``frame`` when
    given, else of the first table among the lineage data. Never fails a registration."""
    from modelyard.vault import profile_key

    try:
        if frame is None:
            frame = training_frame(lineage, Path.cwd())
        if frame is None:
            return
        body = json.dumps(profile_of(frame), default=str).encode()
        ctx.vault.store.put_bytes(profile_key(mv.name, mv.version), body)
    except (YardError, OSError, ValueError, TypeError, ImportError) as exc:
        log.warning("training-data profile of %s not recorded: %s", mv.label, exc)
