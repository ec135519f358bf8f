"""How a new version's semver is chosen, with bounded look-ups whatever the number of versions.

Every look-up here is a bounded, indexed search (``search_versions``: newest first, a page at
a time, by model name, version number and one tag): the newest managed version below the new
one, the holder of the model's ``semver_high`` hint, registrations in flight (``status =
pending``), and who holds a semver. Only a missing or stale hint (a model registered before it
existed, its holder deleted) costs one listing, paged by version number.

The rules themselves (what bump a change earns) are pure logic in ``versioning``; this module
reads the registry for them. ``pipeline.Pipeline`` runs the planner twice per version:
once before the version exists (the planned semver) and once after (``confirm``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.context import Context
from modelyard.core.lineage import Lineage
from modelyard.core.names import (
    STATUS_PENDING,
    T_CLASS,
    T_FLAVOR,
    T_PARAMS,
    T_SCHEMA,
    T_SEMVER,
    T_SEMVER_HIGH,
    T_STATUS,
    is_semver,
    parse_semver,
)
from modelyard.core.records import SEARCH_PAGE_MAX, VersionRecord
from modelyard.core.refs import is_visible
from modelyard.core.versioning import (
    Fingerprint,
    apply_bump,
    check_explicit,
    decide_bump,
    highest_semver,
)
from modelyard.errors import VersionConflict, YardError

log = logging.getLogger("modelyard.semver_plan")


@dataclass
class SemverPlan:
    """How the new version's semver is chosen: worked out (``bump``/``explicit`` optional),
    or ``fixed`` (import and restore keep the semver they carry)."""

    bump: str | None = None
    explicit: str | None = None
    fixed: str | None = None
    fixed_bump: str = ""
    fixed_reason: str = ""


_SCAN_PAGE = 50  # versions one planning search reads (newest first)
_CLOCK_SLACK_MS = 60_000  # creation times of neighbouring versions may disagree this much


@dataclass
class Standing:
    """Where a model's semvers stand for a new version, read with bounded searches.

    ``top``: the visible version with the highest semver below the new one (what its
    semver follows and its fingerprint is compared with); ``later``: visible managed
    versions numbered above it; ``hint``: the model's ``semver_high`` tag as read;
    ``high``: the highest semver known to be taken."""

    top: VersionRecord | None = None
    later: list[VersionRecord] = field(default_factory=list)
    hint: str | None = None
    high: str | None = None


class SemverPlanner:
    """Reads where a model's semvers stand and works out the next one."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking

    def plan(self, name: str, standing: Standing, fp: Fingerprint,
             plan: SemverPlan) -> tuple[str, str, str]:
        if plan.fixed is not None:
            return plan.fixed, plan.fixed_bump, plan.fixed_reason
        return self.semver_from(name, standing.top, fp, plan.bump, plan.explicit)

    def semver_after(
        self, name: str, earlier: list[VersionRecord], fp: Fingerprint, bump: str | None,
        explicit: str | None,
    ) -> tuple[str, str, str]:
        """(semver, bump, reason) of a new version after the given registered versions."""
        managed = [v for v in earlier if is_visible(v) and v.tags.get(T_SEMVER)]
        highest = highest_semver([v.tags[T_SEMVER] for v in managed])
        base = next((v for v in managed if v.tags[T_SEMVER] == highest), None)
        return self.semver_from(name, base, fp, bump, explicit, highest)

    def semver_from(
        self, name: str, base: VersionRecord | None, fp: Fingerprint, bump: str | None,
        explicit: str | None, highest: str | None = None,
    ) -> tuple[str, str, str]:
        """(semver, bump, reason) after ``base``, the version holding the highest semver."""
        if highest is None and base is not None:
            highest = highest_semver([base.tags.get(T_SEMVER, "")])
        if explicit:
            return (check_explicit(name, explicit, highest), "explicit",
                    f"version {explicit} set explicitly")
        decision = decide_bump(fp, fingerprint_of_record(base) if base else None)
        if bump:
            return (apply_bump(highest, bump),  # type: ignore[arg-type]
                    bump, f"{bump} bump requested (detected: {decision.bump}: {decision.reason})")
        return apply_bump(highest, decision.bump), decision.bump, decision.reason

    def confirm(
        self, name: str, number: int, planned: tuple[str, str, str], fp: Fingerprint,
        plan: SemverPlan,
    ) -> tuple[tuple[str, str, str], Standing]:
        """Wait for lower-numbered registrations in flight, then work the semver out again
        from the registry as it is now (the same answer as planned unless an earlier one
        changed); VersionConflict if a later registration already took a higher one, or
        another version holds the same semver."""
        self.wait_for_earlier(name, number)
        standing = self.standing(
            name, number, self.ctx.listing.get_model(name).tags.get(T_SEMVER_HIGH))
        if plan.fixed is not None:
            if self.holder(name, plan.fixed, number) is not None:
                raise VersionConflict(name=name, requested=plan.fixed, highest=plan.fixed)
            return planned, standing
        chosen = self.semver_from(name, standing.top, fp, plan.bump, plan.explicit)
        top_later = highest_semver([v.tags[T_SEMVER] for v in standing.later])
        if top_later and parse_semver(chosen[0]) <= parse_semver(top_later):
            raise VersionConflict(name=name, requested=chosen[0], highest=top_later)
        if self.holder(name, chosen[0], number) is not None:
            raise VersionConflict(name=name, requested=chosen[0],
                                  highest=standing.high or chosen[0])
        return chosen, standing

    def wait_for_earlier(self, name: str, number: int) -> None:
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

    def standing(self, name: str, number: int | None, hint: str | None) -> Standing:
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
            return self.standing_by_listing(name, number, hint)
        top = newest
        assert hint is not None
        if top is None or parse_semver(hint) > parse_semver(top.tags[T_SEMVER]):
            holder = listing.version_by_tag(name, T_SEMVER, str(parse_semver(hint)))
            if holder is None or (number is not None and holder.version > number):
                # Its holder was deleted, or went ahead of a stale registration: list.
                return self.standing_by_listing(name, number, hint)
            top = holder
        return Standing(top=top, later=later, hint=hint, high=highest_semver(
            [v.tags[T_SEMVER] for v in ([top] if top else []) + later]))

    def standing_by_listing(self, name: str, number: int | None, hint: str | None
                             ) -> Standing:
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
        standing = Standing(top=top, later=later, hint=hint,
                             high=highest_semver([v.tags[T_SEMVER] for v in managed]))
        if standing.high and standing.high != hint:  # repaired now: the confirmation's
            self.raise_hint(name, standing.high, standing)  # look-ups are bounded again
            standing.hint = standing.high
        return standing

    def holder(self, name: str, semver: str, number: int) -> VersionRecord | None:
        """A visible version other than ``number`` holding ``semver`` (a tag search)."""
        found = self.ctx.listing.version_by_tag(name, T_SEMVER, semver)
        return found if found is not None and found.version != number else None

    def raise_hint(self, name: str, semver: str, standing: Standing) -> None:
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


def fingerprint_of_dir(local: Path, lineage: Lineage, *, model_class: str, flavor: str,
                       params: dict[str, str]) -> Fingerprint:
    """What the next bump compares: schema, data, class, flavor, params, code, seed."""
    from modelyard.backend import mlmodel

    info = mlmodel.read_mlmodel(local)
    return Fingerprint(
        inputs=Fingerprint.columns_from_schema(info.inputs),
        outputs=Fingerprint.columns_from_schema(info.outputs),
        data=lineage.data_hashes(),
        model_class=model_class,
        flavor=flavor or info.flavor,
        params=dict(params),
        code=lineage.git_commit,
        seed=lineage.seed,
        data_columns=lineage.data_columns(),
    )


def fingerprint_tags(fp: Fingerprint) -> dict[str, str]:
    """The tags a version's fingerprint is kept in."""
    return {T_SCHEMA: fp.schema_json(), T_FLAVOR: fp.flavor, T_CLASS: fp.model_class,
            T_PARAMS: json.dumps(fp.params, sort_keys=True)}


def fingerprint_of_record(record: VersionRecord) -> Fingerprint:
    """A registered version's fingerprint, read back from its tags."""
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
