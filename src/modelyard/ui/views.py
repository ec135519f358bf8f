"""What each dashboard page shows, gathered from the verbs the CLI uses (read-only).

Every read goes through the lean reader (``Context.reads``: MLflow's REST API or the embedded
SQLite file read-only), the vault, the backup store and the audit trail: nothing here imports
mlflow (``tests/integration/test_ui.py`` checks ``sys.modules`` after every page). Checks
that need MLflow's client (hashing a version's files against its manifest, the registry's
own health call on the embedded store) stay with ``modelyard health`` / ``verify``; the
pages name those commands.

Long lists are paged: versions by number (``below``: the versions older than a number, one
bounded indexed search whatever the registry's size), trails and drills by page number.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from modelyard.core.entities import ModelVersion
from modelyard.core.names import STAGE_ALIASES, T_SEMVER, check_name
from modelyard.core.refs import VersionRef, is_visible
from modelyard.errors import AuditTampered, NotFound, YardError
from modelyard.ui import traffic
from modelyard.ui.charts import line_chart
from modelyard.ui.checks import drill_check, mttr_summary, store_checks
from modelyard.ui.paging import (
    PER_PAGE,
    MlflowLinks,
    age_s,
    at_once,
    headline,
    managed,
    paged,
    quiet,
    schema_text,
    worst,
)

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.core.records import VersionRecord
    from modelyard.yard import Yard

BACKUP_MAX_AGE_S = 2 * 24 * 3600
LAST_CHECK = "as of the last check"
MOVES = frozenset({"promote", "rollback", "approve", "reject", "request", "gate_failed",
                   "alias", "stage", "demote", "archive", "recover", "restore",
                   "snapshot_restore"})


class Views:
    """The data of each page, read for one viewer (``yard`` carries their credentials)."""

    def __init__(self, yard: Yard, links: MlflowLinks, *, verify: bool = False) -> None:
        self.yard = yard
        self.links = links
        self.verify = verify  # re-read and check every trail event (the audit page)
        self.reads = yard.ctx.reads
        self.concurrent = bool(getattr(self.reads, "concurrent", False))
        self._trails: dict[str, tuple[list[Any], str, str]] = {}
        self._unaudited: dict[str, list[dict[str, Any]]] = {}

    # -- shared parts ------------------------------------------------------------------------
    def model_record(self, name: str) -> Any:
        check_name(name)
        return self.reads.get_model(name)  # ModelNotFound (404) when absent or not readable

    def drills(self) -> list[dict[str, Any]]:
        """Every recorded drill (``drills/RUN.json`` in the vault), oldest first."""
        from modelyard.store.vault import DRILLS

        store = self.yard.vault.store
        keys = sorted(k for k in store.list(DRILLS) if k.endswith(".json"))

        def read(key: str) -> dict[str, Any] | None:
            with contextlib.suppress(YardError, ValueError):
                body = json.loads(store.get_bytes(key))
                return body if isinstance(body, dict) else None
            return None

        found = at_once([partial(read, k) for k in keys], True)
        return sorted((d for d in found if d), key=lambda d: str(d.get("at", "")))

    def trail(self, name: str) -> tuple[list[Any], str, str]:
        """The model's audit events, its chain status (``verified`` / ``broken``) and why
        (read once per page)."""
        if name not in self._trails:
            self._trails[name] = self._read_trail(name)
        return self._trails[name]

    def checked(self, chain: str) -> str:
        """When a chain verdict was reached: ``now`` (this page re-read and checked every
        event, or found it broken while reading), else the kept copy's ("as of the last
        check"): a page must not pass a cached verdict off as a fresh one."""
        return "now" if self.verify or chain != "verified" else LAST_CHECK

    def _read_trail(self, name: str) -> tuple[list[Any], str, str]:
        if not self.verify:
            # The trail as `history` shows it: the verified copy kept on this machine while the
            # registry's head anchor names its newest event, newer events read by key. The
            # audit page re-reads and checks every event (`history --verify`).
            try:
                events = self.yard.history(name)
                return events, "verified", ("the copy verified on this machine; the Audit "
                                            "page checks every event now")
            except AuditTampered as exc:
                return [], "broken", exc.message
        # What `history --verify` checks, its two halves at once: the hash chain, head
        # anchors and HMACs (every event re-read), and that the trail explains every stage
        # holder (the unaudited-move check, kept for the page: read once).
        def chain() -> tuple[list[Any], str | None]:
            try:
                return self.yard.governance.audit.history(name, verify=True), None
            except AuditTampered as exc:
                return quiet(lambda: self.yard.history(name), []), exc.message

        (events, broken), moved = at_once(
            [chain, lambda: [d.to_dict() for d in self.yard.governance.unaudited(name)]],
            self.concurrent)
        self._unaudited[name] = moved
        if broken is not None:
            return events, "broken", broken
        if moved:
            more = f" (+{len(moved) - 1} more)" if len(moved) > 1 else ""
            return events, "verified", (f"hash chain holds; {moved[0]['name']}: "
                                        f"{moved[0]['detail']}{more}")
        return events, "verified", "hash chain, head anchors and holders verified"

    def unaudited(self, name: str) -> list[dict[str, Any]]:
        """Stage holders no audit event explains (read once per page)."""
        if name not in self._unaudited:
            self._unaudited[name] = self._find_unaudited(name)
        return self._unaudited[name]

    def _find_unaudited(self, name: str) -> list[dict[str, Any]]:
        return [d.to_dict() for d in quiet(lambda: self.yard.governance.unaudited(name), [])]

    def backup_record(self, name: str, version: int) -> dict[str, Any] | None:
        if self.yard.settings.backup is None:
            return None
        return quiet(lambda: self.yard.protection.backup_record(name, version))

    def holder_reads(self, name: str, model: Any) -> list[tuple[str, int, Any, Any, Any]]:
        """Per stage holder: (stage, number, its version, backup record, last reproduce),
        read at once on a server; a caller sends this beside its other reads."""
        def of_stage(stage: str, number: int) -> tuple[str, int, Any, Any, Any]:
            record, saved, last = at_once([
                partial(quiet, partial(self.reads.get_version, name, number)),
                partial(self.backup_record, name, number),
                partial(quiet, partial(self.yard.incidents.last_reproduce, name, number))],
                self.concurrent)
            return stage, number, record, saved, last

        return at_once([partial(of_stage, s, model.aliases[s]) for s in STAGE_ALIASES
                        if model.aliases.get(s) is not None], self.concurrent)

    def lean_checks(self, name: str, chain: str, chain_detail: str,
                    unaudited: list[dict[str, Any]],
                    held: list[tuple[str, int, Any, Any, Any]]) -> list[dict[str, Any]]:
        """Per model, the checks of ``modelyard health`` the UI can make without MLflow's
        client: holders present, backed up, reproduced, audit chain, audited holders
        (``held``: what ``holder_reads`` found)."""
        checks: list[dict[str, Any]] = []
        for stage, number, record, saved, last in held:
            target = f"{name}@{stage}"
            bad = "critical" if stage == "production" else "degraded"
            if record is None:
                checks.append({"check": "present", "target": target, "level": bad,
                               "detail": f"#{number} is not in the registry"})
                continue
            semver = record.tags.get(T_SEMVER, f"#{number}")
            if self.yard.settings.backup is not None:
                age = age_s(str((saved or {}).get("backed_up_at")
                                or (saved or {}).get("created_at") or ""))
                if saved is None:
                    checks.append({"check": "backed up", "target": target, "level": "degraded",
                                   "detail": f"v{semver} has no record in the backup store"})
                else:
                    level = "degraded" if age is not None and age > BACKUP_MAX_AGE_S else "ok"
                    checks.append({"check": "backed up", "target": target, "level": level,
                                   "detail": f"v{semver} is backed up", "age": age})
            if last:
                ok = bool(last.get("reproducible"))
                checks.append({"check": "reproducible", "target": target,
                               "level": "ok" if ok else "warn",
                               "detail": f"v{semver}: last reproduce {last.get('at', '?')} "
                               + ("reproduced" if ok else "did NOT reproduce")})
        checks.append({"check": "audit chain", "target": name,
                       "level": "ok" if chain == "verified" else "critical",
                       "detail": chain_detail, "checked": self.checked(chain)})
        checks += [{"check": "audited holders", "target": name, "level": "critical",
                    "detail": f"unaudited move: {d['detail']}", "checked": "now"}
                   for d in unaudited]
        if not unaudited:
            checks.append({"check": "audited holders", "target": name, "level": "ok",
                           "detail": "every stage holder is explained by the trail",
                           "checked": "now"})
        return checks

    def stores(self) -> list[dict[str, Any]]:
        return store_checks(self.yard)

    # -- 1. overview -----------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        # Per model: its count, its holders' semvers and the checks, each a bounded read
        # (flat in the number of versions); a name modelyard refuses (registered with
        # MLflow's own client) is one row, never read further.
        records = sorted(self.reads.list_models(), key=lambda m: m.name)
        hour_ago = time.time() - 3600

        def one(model: Any) -> dict[str, Any]:
            row: dict[str, Any] = {
                "name": model.name, "versions": None, "production": None, "staging": None,
                "level": "warn", "chain": "unknown", "chain_checked": None, "unaudited": [],
                "backup_age": None,
                "backed_up": False, "drill": None, "drill_age": None, "served": [],
                "requests_hour": 0, "mlflow": self.links.model(model.name), "managed": False,
                "problem": "a name modelyard does not manage (registered around it)"}
            if not managed(model.name):
                return row
            row.update(managed=True, problem=None)
            try:
                row.update(checked(model))
            except YardError as exc:  # one model that cannot be read is one row, not the page
                row.update(level="critical", problem=exc.message)
            return row

        def checked(model: Any) -> dict[str, Any]:
            name = model.name
            holder = model.aliases.get("production")
            # Independent reads: on a server they go out at once.
            (_, chain, detail), unaudited, held, count, saved, served = at_once(
                [partial(self.trail, name), partial(self.unaudited, name),
                 partial(self.holder_reads, name, model),
                 partial(self.reads.count_visible, name),
                 partial(self.backup_record, name, holder) if holder is not None
                 else lambda: None,
                 partial(traffic.served, self.yard, name, hour_ago)], self.concurrent)
            holders = {s: (r.tags.get(T_SEMVER) if r else None) or f"#{n}"
                       for s, n, r, _, _ in held}
            checks = self.lean_checks(name, chain, detail, unaudited, held)
            return {"versions": count,
                    "production": holders.get("production"), "staging": holders.get("staging"),
                    "level": worst(c["level"] for c in checks), "chain": chain,
                    "chain_checked": self.checked(chain),
                    "unaudited": unaudited,
                    "backup_age": age_s(str((saved or {}).get("backed_up_at")
                                            or (saved or {}).get("created_at") or "")),
                    "backed_up": saved is not None,
                    "served": [{"version": v, **info, "arms": sorted(info["arms"])}
                               for v, info in sorted(served.items())],
                    "requests_hour": sum(i["requests"] for i in served.values())}

        # the drills (one listing of the vault) beside the models
        drills, *models = at_once([partial(quiet, self.drills, []),
                                   *[partial(one, r) for r in records]], self.concurrent)
        newest_drill: dict[str, dict[str, Any]] = {}
        for drill in drills:
            newest_drill[str(drill.get("model") or "")] = drill
        for row in models:
            drill = newest_drill.get(row["name"]) if row["managed"] else None
            row.update(drill=drill, drill_age=age_s(str((drill or {}).get("at", ""))))
        return {"models": models, "drills": len(drills)}

    # -- 2. model ----------------------------------------------------------------------------
    def model(self, name: str, below: int | None, compare: tuple[str, str] | None,
              page: int) -> dict[str, Any]:
        check_name(name)
        for ref in compare or ():
            VersionRef.parse(ref)  # InvalidInput (400) before anything is read

        def held() -> tuple[Any, list[Any]]:
            model = self.model_record(name)  # ModelNotFound (404): raised first below
            return model, at_once([
                partial(quiet, partial(self.reads.get_version, name, model.aliases[s]))
                for s in STAGE_ALIASES if model.aliases.get(s) is not None], self.concurrent)

        def listed() -> tuple[list[VersionRecord], dict[str, Any], list[Any]]:
            # the page of versions, then their runs (one search) and backup records
            found = self.reads.search_versions(name, below=below, limit=PER_PAGE + 1)
            shown = [r for r in found if is_visible(r)][:PER_PAGE + 1]
            runs, *saved = at_once([
                partial(quiet, partial(self.reads.get_runs,
                                       [r.run_id for r in shown if r.run_id]), {}),
                *[partial(self.backup_record, name, r.version) for r in shown[:PER_PAGE]]],
                self.concurrent)
            return shown, runs, saved

        # Every independent read in one round on a server (with the model read once:
        # ``remembered``), each chain (the versions, then their runs) beside the others.
        (model, held_records), total, (records, runs, saved), _, _, compared = at_once([
            held, partial(self.reads.count_visible, name), listed,
            partial(self.trail, name), partial(self.unaudited, name),
            partial(self.compare, name, compare) if compare else lambda: None],
            self.concurrent)
        stages = [s for s in STAGE_ALIASES if model.aliases.get(s) is not None]
        more = len(records) > PER_PAGE
        records = records[:PER_PAGE]
        holders = {number: stage for stage, number in model.aliases.items()}

        def one(record: VersionRecord, backed_up: dict[str, Any] | None) -> dict[str, Any]:
            # The search row has the tags (semver, bump, lineage); the run has the metrics.
            run = runs.get(record.run_id or "")
            mv = ModelVersion.from_record(record, metrics=(run or {}).get("metrics") or {})
            return {"version": mv.version, "semver": mv.semver, "bump": mv.bump,
                    "bump_reason": mv.bump_reason, "stage": mv.stage,
                    "aliases": sorted(a for a, v in model.aliases.items()
                                      if v == record.version),
                    "metrics": mv.metrics, "trained_by": mv.lineage.trained_by,
                    "created_at": mv.created_at, "manifest": bool(mv.manifest_sha256),
                    "backed_up": backed_up is not None, "run_id": mv.run_id,
                    "mlflow": self.links.version(name, mv.version),
                    "mlflow_run": self.links.run(mv.run_id)}

        versions = [one(r, b) for r, b in zip(records, saved, strict=True)]
        metric_names = headline({k for v in versions for k in v["metrics"]})
        oldest_first = list(reversed(versions))
        label = {v["version"]: (f"v{v['semver']}" if v["semver"] else f"#{v['version']}")
                 for v in versions}
        chart = line_chart(
            {m: [(label[v["version"]], v["metrics"].get(m)) for v in oldest_first]
             for m in metric_names},
            marked=[label[n] for n in holders if n in label and holders[n] == "production"],
            title=f"metrics of {name} across versions")
        events, chain, detail = self.trail(name)
        moves = [e for e in reversed(events) if e.action in MOVES]
        timeline = paged(moves, page, {"name": name, "below": str(below or "")})
        shown: dict[str, str] = {}
        for stage, record in zip(stages, held_records, strict=True):
            number = model.aliases[stage]
            semver = record.tags.get(T_SEMVER) if record else None
            shown[stage] = f"v{semver} (#{number})" if semver else f"#{number}"
        return {"name": name, "model": model, "holders": shown, "total": total,
                "versions": versions,
                "metric_names": metric_names, "chart": chart, "more": more,
                "older": versions[-1]["version"] if more and versions else None,
                "below": below, "timeline": timeline, "chain": chain, "chain_detail": detail,
                "chain_checked": self.checked(chain),
                "unaudited": self.unaudited(name), "compared": compared,
                "compare_refs": compare or ("", ""), "mlflow": self.links.model(name)}

    def compare(self, name: str, refs: tuple[str, str]) -> dict[str, Any]:
        """Two versions side by side: metrics, params, input schema, lineage; which differ."""
        for ref in refs:
            VersionRef.parse(ref)  # InvalidInput (400) before anything is read
        one, two = at_once([partial(self.yard.get, name, ref, full=True) for ref in refs],
                           self.concurrent)
        rows: list[dict[str, Any]] = []

        def add(section: str, left: Mapping[str, Any], right: Mapping[str, Any]) -> None:
            for key in sorted(set(left) | set(right)):
                a, b = left.get(key), right.get(key)
                rows.append({"section": section, "key": key, "a": a, "b": b, "differs": a != b})

        add("metrics", one.metrics, two.metrics)
        add("params", one.params, two.params)
        add("data", one.lineage.data_hashes(), two.lineage.data_hashes())
        add("schema", {"inputs": schema_text(one.tags)}, {"inputs": schema_text(two.tags)})
        keep = ("git_commit", "git_branch", "python", "seed", "trained_by")
        add("lineage", {k: getattr(one.lineage, k) for k in keep},
            {k: getattr(two.lineage, k) for k in keep})
        add("release", {"semver": one.semver, "bump": one.bump, "stage": one.stage},
            {"semver": two.semver, "bump": two.bump, "stage": two.stage})
        return {"a": one, "b": two, "rows": rows,
                "differences": [f"{r['section']}.{r['key']}" for r in rows if r["differs"]]}

    # -- 3. version --------------------------------------------------------------------------
    def version(self, name: str, ref: str) -> dict[str, Any]:
        VersionRef.parse(ref)  # a malformed ref: 400 before anything is read
        self.model_record(name)
        mv = self.yard.details(name, ref, full=True)

        def manifest_of() -> Any:
            if not mv.manifest_sha256:
                return None
            return quiet(lambda: self.yard.vault.read_manifest(
                name, mv.version, mv.manifest_sha256 or "", mv.semver or "?"))

        # Everything else about the version is independent: at once on a server.
        manifest, saved, shots, logged, events, reproduce, run = at_once([
            manifest_of, partial(self.backup_record, name, mv.version),
            partial(quiet, self.yard.protection.snapshots.list, []),
            partial(quiet, partial(self.yard.governance.access_log, name), []),
            partial(quiet, partial(self.yard.history, name, mv.version), []),
            partial(quiet, partial(self.yard.incidents.last_reproduce, name, mv.version)),
            partial(quiet, partial(self.reads.get_run, mv.run_id or ""))], self.concurrent)
        snapshots = [
            {"tag": s.tag, "created_at": s.created_at, "by": s.created_by,
             "aliases": sorted(a for a, h in s.holders(name).items()
                               if int(h.get("version", -1)) == mv.version)}
            for s in shots
            if mv.version in s.versions_of(name)
            or any(int(v.get("version", -1)) == mv.version
                   for v in s.models.get(name, {}).get("versions", []))]
        access = [a for a in logged if a.version == mv.version]
        gates = [e for e in events if e.gates]
        experiment = (run or {}).get("experiment_id")
        files = []
        if manifest is not None:
            files = [{"path": path, "sha256": digest, "size": size}
                     for path, (digest, size) in sorted(manifest.files.items())]
        return {"name": name, "mv": mv, "lineage": mv.lineage, "manifest": manifest,
                "files": files[:200], "more_files": max(0, len(files) - 200),
                "backup": saved, "snapshots": snapshots, "access": access[-50:][::-1],
                "events": events[::-1], "gates": gates, "reproduce": reproduce,
                "last_verified": next((a for a in reversed(access)), None),
                "mlflow": self.links.version(name, mv.version),
                "mlflow_model": self.links.model(name),
                "mlflow_run": self.links.run(mv.run_id, experiment)}

    # -- 4. audit ----------------------------------------------------------------------------
    def audit(self, model: str, actor: str, action: str, page: int) -> dict[str, Any]:
        names = sorted(m.name for m in self.reads.list_models() if managed(m.name))
        if model:
            check_name(model)
            if model not in names:
                raise NotFound(f"no model named {model!r} that you may read")
            names = [model]
        chains = []
        rows: list[Any] = []
        unaudited: list[dict[str, Any]] = []

        def one(name: str) -> tuple[str, list[Any], str, str, list[dict[str, Any]]]:
            events, chain, detail = self.trail(name)
            return name, events, chain, detail, self.unaudited(name)

        for name, events, chain, detail, moved in at_once([partial(one, n) for n in names],
                                                      self.concurrent):
            chains.append({"name": name, "chain": chain, "detail": detail,
                           "events": len(events), "checked": self.checked(chain)})
            unaudited += moved
            rows += events
        actors = sorted({e.who for e in rows})
        actions = sorted({e.action for e in rows})
        shown = [e for e in rows if (not actor or e.who == actor)
                 and (not action or e.action == action)]
        shown.sort(key=lambda e: (e.when, e.seq), reverse=True)
        params = {"model": model, "actor": actor, "action": action}
        return {"chains": chains, "page": paged(shown, page, params), "actors": actors,
                "actions": actions, "names": names, "unaudited": unaudited,
                "filters": params}

    # -- 5. incidents ------------------------------------------------------------------------
    def incidents(self, page: int) -> dict[str, Any]:
        checks: list[dict[str, Any]] = [{
            "check": "registry", "target": self.yard.tracking.display_uri, "level": "ok",
            "detail": "answers"}]
        try:
            listed = sorted((m for m in self.reads.list_models() if managed(m.name)),
                            key=lambda m: m.name)
        except YardError as exc:
            checks[0].update(level="critical", detail=exc.message)
            listed = []
        checks += self.stores()
        recovers: list[Any] = []

        def one(model: Any) -> tuple[list[dict[str, Any]], list[Any]]:
            name = model.name
            try:  # the model as listed: its holders' reads go out with the trail's
                (events, chain, detail), moved, held = at_once(
                    [partial(self.trail, name), partial(self.unaudited, name),
                     partial(self.holder_reads, name, model)], self.concurrent)
            except YardError as exc:
                return [{"check": "holders", "target": name, "level": "critical",
                         "detail": exc.message}], []
            return (self.lean_checks(name, chain, detail, moved, held),
                    [e for e in events if e.action in ("recover", "restore",
                                                       "snapshot_restore")])

        for found, recovered in at_once([partial(one, m) for m in listed], self.concurrent):
            checks += found
            recovers += recovered
        drills = quiet(self.drills, [])
        checks.append(drill_check(drills))
        status = {"ok": "healthy", "warn": "healthy", "degraded": "degraded",
                  "critical": "critical"}[worst(c["level"] for c in checks)]
        chart, per_scenario = mttr_summary(drills)
        recovers.sort(key=lambda e: e.when, reverse=True)
        return {"status": status, "checks": checks, "chart": chart, "mttr": per_scenario,
                "drills": paged(drills[::-1], page), "recovers": recovers[:50]}

    # -- 6. serving --------------------------------------------------------------------------
    def serving(self, name: str, since: str) -> dict[str, Any]:
        from modelyard.ui.traffic import serving

        self.model_record(name)
        return serving(self.yard, self.links, name, since)


__all__ = ["Views"]
