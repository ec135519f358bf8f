"""The catalog: what the registry holds, read at command-line speed (``list``, ``details``).

``list`` is flat in the number of versions: per model a count, a page of the newest versions
and the versions tagged with a stage (the drift check's searches, which also answer the stage
holders' semvers), each one bounded look-up; on a server they go out at once
(``backend.lean.base.at_once``), one round after the model list. ``details`` reads a version and
the model's drift at once. Both fire the drift webhook for what they find (``Drift.notify``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from modelyard.backend.lean.base import at_once
from modelyard.backend.lean.counts import TOP_PAGE
from modelyard.core.entities import ModelRow, ModelVersion
from modelyard.core.names import T_SEMVER, T_SEMVER_HIGH, check_name
from modelyard.core.records import VersionRecord
from modelyard.core.refs import is_visible
from modelyard.core.versioning import highest_semver
from modelyard.errors import NotFound

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context
    from modelyard.lifecycle.unaudited import Drift
    from modelyard.registry.loading import Loader

__all__ = ["Catalog"]

_NEWEST_PAGE = TOP_PAGE  # the newest versions ``list`` reads (the count's top page too)


def _newest_visible(page: list[VersionRecord], aliases: dict[str, int]
                    ) -> VersionRecord | None:
    """The newest visible version of a page of the newest (search rows leave aliases out:
    they come from the registered model's), or None when every one is pending."""
    for record in page:
        if is_visible(record):
            record.aliases = sorted(a for a, v in aliases.items() if v == record.version)
            return record
    return None


class Catalog:
    """list and details. ``loader`` gives the loader when ``details`` first needs it, so
    ``list`` does not import the loading path."""

    def __init__(self, ctx: Context, drift: Drift, loader: Callable[[], Loader]) -> None:
        self.ctx = ctx
        self.drift = drift
        self.loader = loader

    def details(self, name: str, ref: str | int | None, *, full: bool) -> ModelVersion:
        """``Loader.get``, plus the drift that touches this version (both read at once on a
        server)."""
        check_name(name)  # before anything is read, in any thread
        loader, drift = self.loader(), self.drift  # built here, not raced for in the threads
        mv, found = at_once(self.ctx.reads, [lambda: loader.get(name, ref, full=full),
                                             lambda: drift.of_model(name)])
        if found:
            drift.notify(name, found)
        mv.drift = [d.to_dict() for d in found
                    if mv.version in (d.holder_version, d.audited_version)]
        return mv

    def list_models(self) -> list[ModelRow]:
        """Every model's row, one round after the model list; a holder the tag searches
        miss (drift) or a newest page of pending versions costs a second."""
        reads = self.ctx.reads
        models = reads.list_models()
        gone = object()  # a model deleted while listing

        def gone_on_miss(call: Callable[[], Any]) -> Callable[[], Any]:
            def run() -> Any:
                try:
                    return call()
                except NotFound:
                    return gone
            return run

        per_model = 4
        calls: list[Callable[[], Any]] = []
        for model in models:
            calls += [gone_on_miss(partial(reads.count_visible, model.name)),
                      partial(reads.search_versions, model.name, limit=_NEWEST_PAGE),
                      *self.drift.stage_searches(model.name)]
        found = at_once(reads, calls)
        later: list[Callable[[], Any]] = []  # the rare second round, at once too
        plans = []
        for index, model in enumerate(models):
            count, newest, *searched = found[index * per_model:(index + 1) * per_model]
            if count is gone:
                continue
            tagged: list[VersionRecord] = [r for rows in searched for r in rows]
            known = {r.version: r for r in [*newest, *tagged]}
            latest_call = _newest_visible(newest, model.aliases) or (
                gone_on_miss(partial(reads.latest_visible, model.name)) if newest else None)
            holder_calls = {stage: self._holder_call(model.name, model.aliases.get(stage),
                                                     known)
                            for stage in ("staging", "production")}
            drift_call = gone_on_miss(partial(self.drift.of_model, model.name, model=model,
                                              tagged=tagged))
            slots: list[tuple[bool, Any]] = []  # (answered later, the call's index | value)
            for slot in (latest_call, holder_calls["staging"], holder_calls["production"],
                         drift_call):
                if callable(slot):
                    slots.append((True, len(later)))
                    later.append(slot)
                else:
                    slots.append((False, slot))
            plans.append((model, count, slots))
        answers = at_once(reads, later)
        rows = []
        for model, count, slots in plans:
            latest, staging, production, drifts = (answers[value] if deferred else value
                                                   for deferred, value in slots)
            if latest is gone or drifts is gone:
                continue
            if drifts:
                self.drift.notify(model.name, drifts)
            rows.append(ModelRow(
                name=model.name, versions=count,
                latest=latest.tags.get(T_SEMVER) if latest else None,
                latest_version=latest.version if latest else None,
                highest_semver=self._highest_semver(model.name, model.tags, latest),
                staging=self._holder_label(staging),
                production=self._holder_label(production),
                description=model.description, updated_at=model.updated_ms,
                drift=[d.to_dict() for d in drifts],
            ))
        return rows

    def _holder_call(self, name: str, number: int | None,
                     known: dict[int, VersionRecord]) -> Any:
        """A stage holder's record when a search already answered it (or None: nobody
        holds the stage), else the look-up that reads it."""
        if number is None:
            return None
        if number in known:
            return known[number]
        reads = self.ctx.reads

        def read() -> VersionRecord | None:
            try:
                return reads.get_version(name, number)
            except NotFound:
                return None
        return read

    def _holder_label(self, record: VersionRecord | None) -> str | None:
        if record is None or not is_visible(record):
            return None
        semver = record.tags.get(T_SEMVER)
        return self.ctx.settings.format_version(semver) if semver else f"#{record.version}"

    def _highest_semver(self, name: str, tags: dict[str, str],
                        latest: VersionRecord | None) -> str | None:
        """The newest version's semver, or the model's ``semver_high`` hint when a visible
        version holds it (an imported or restored version may hold a lower one)."""
        newest = highest_semver([latest.tags.get(T_SEMVER, "")] if latest else [])
        hint = highest_semver([tags.get(T_SEMVER_HIGH, "")])
        if hint is None or (newest is not None and highest_semver([hint, newest]) == newest):
            return newest
        held = self.ctx.reads.version_by_tag(name, T_SEMVER, hint)
        return hint if held is not None else newest
