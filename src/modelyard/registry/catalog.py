"""The catalog: what the registry holds, read at command-line speed (``list``, ``details``).

``list`` is flat in the number of versions: per model a count, a page of the newest versions
and the versions tagged with a stage (the unaudited-move check's searches, which also answer
the stage holders' semvers), each one bounded look-up; on a server they go out at once
(``backend.lean.base.at_once``), one round after the model list. ``details`` reads a version and
the model's unaudited moves at once. Both fire the webhook for what they find
(``UnauditedMoves.notify``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.backend.lean.base import at_once
from modelyard.backend.lean.counts import TOP_PAGE
from modelyard.core.entities import LineageReport, ModelRow, ModelVersion
from modelyard.core.names import T_SEMVER, T_SEMVER_HIGH, check_name
from modelyard.core.records import VersionRecord
from modelyard.core.refs import is_visible
from modelyard.core.versioning import highest_semver
from modelyard.errors import NotFound, UserError, YardError

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context
    from modelyard.lifecycle.unaudited import UnauditedMoves
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

    def __init__(self, ctx: Context, unaudited: UnauditedMoves,
                 loader: Callable[[], Loader]) -> None:
        self.ctx = ctx
        self.unaudited = unaudited
        self.loader = loader

    def details(self, name: str, ref: str | int | None, *, full: bool) -> ModelVersion:
        """``Loader.get``, plus the unaudited moves that touch this version (both read at once
        on a server)."""
        check_name(name)  # before anything is read, in any thread
        # built here, not raced for in the threads
        loader, unaudited = self.loader(), self.unaudited
        mv, found = at_once(self.ctx.reads, [lambda: loader.get(name, ref, full=full),
                                             lambda: unaudited.of_model(name)])
        if found:
            unaudited.notify(name, found)
        mv.unaudited = [d.to_dict() for d in found
                    if mv.version in (d.holder_version, d.audited_version)]
        mv.signature = self.signature(mv)
        return mv

    def signature(self, mv: ModelVersion) -> dict[str, Any]:
        """The version's signature state for ``details`` (no object-store read for a version
        that is not tagged signed while no keys are configured)."""
        from modelyard.core.names import T_SIGNER
        from modelyard.store.signatures import UNSIGNED, SignatureState

        settings = self.ctx.settings
        tagged = mv.tags.get(T_SIGNER)
        if not mv.manifest_sha256 or not (tagged or settings.trusted_keys
                                          or settings.retired_keys):
            return SignatureState(UNSIGNED).to_dict()
        try:
            manifest = self.loader().manifest_of(mv)
            return self.ctx.signatures.state(manifest, tagged).to_dict()
        except YardError as exc:
            return {"state": "unknown", "signer": tagged, "retired": False,
                    "detail": exc.message}

    def list_models(self) -> list[ModelRow]:
        """Every model's row, one round after the model list; a holder the tag searches
        miss (an unaudited move) or a newest page of pending versions costs a second."""
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
                      *self.unaudited.stage_searches(model.name)]
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
            unaudited_call = gone_on_miss(partial(self.unaudited.of_model, model.name, model=model,
                                              tagged=tagged))
            slots: list[tuple[bool, Any]] = []  # (answered later, the call's index | value)
            for slot in (latest_call, holder_calls["staging"], holder_calls["production"],
                         unaudited_call):
                if callable(slot):
                    slots.append((True, len(later)))
                    later.append(slot)
                else:
                    slots.append((False, slot))
            plans.append((model, count, slots))
        answers = at_once(reads, later)
        rows = []
        for model, count, slots in plans:
            latest, staging, production, moved = (answers[value] if deferred else value
                                                   for deferred, value in slots)
            if latest is gone or moved is gone:
                continue
            if moved:
                self.unaudited.notify(model.name, moved)
            rows.append(ModelRow(
                name=model.name, versions=count,
                latest=latest.tags.get(T_SEMVER) if latest else None,
                latest_version=latest.version if latest else None,
                highest_semver=self._highest_semver(model.name, model.tags, latest),
                staging=self._holder_label(staging),
                production=self._holder_label(production),
                description=model.description, updated_at=model.updated_ms,
                unaudited=[d.to_dict() for d in moved],
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

    # -- lineage ----------------------------------------------------------------------------
    def lineage(self, name: str, ref: str | int | None, root: Path) -> LineageReport:
        """Code, data, params and environment of a version; DVC data refs get the git commit
        that recorded them when it exists by now."""
        from modelyard.project import dvc

        mv = self.loader().get(name, ref, full=True)
        for data in mv.lineage.data:
            if data.source == "dvc" and not data.git_commit:
                data.git_commit = dvc.commit_recording(root, data.hash, path=data.path)
        return LineageReport(name=mv.name, version=mv.version, semver=mv.semver,
                             run_id=mv.run_id, params=mv.params, lineage=mv.lineage.to_dict())

    def checkout_data(self, name: str, ref: str | int | None, root: Path
                      ) -> list[dict[str, str]]:
        """Restore, through DVC, the exact training data a version was trained on."""
        from modelyard.project import dvc

        mv = self.loader().get(name, ref, full=False)
        restored = []
        for data in mv.lineage.data:
            if data.source != "dvc":
                continue
            path = Path(data.path)
            dvc.checkout(path if path.is_absolute() else root / path, data.hash)
            restored.append({"path": data.path, "md5": data.hash})
        if not restored:
            raise UserError(f"{mv.label} has no DVC-tracked data in its lineage")
        return restored
