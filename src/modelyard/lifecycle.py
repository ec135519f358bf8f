"""Lifecycle governance: stages, gates, approvals, auto-promotion, rollback, retention.

Stages are the MLflow aliases ``staging`` and ``production`` (one holder each) plus the
``modelyard.stage`` tag on every version. Every change is an event in the audit trail
(``modelyard.audit``), and the trail is also what orders concurrent stage moves: an event is
created with the object store's create-if-absent at the next sequence number and records
who holds each stage after it, computed from the event before it. After writing its event, a
process applies the newest event's holders to MLflow's aliases and the stage tags, then checks
that no newer event appeared meanwhile (and applies again if one did). Any number of
processes promoting at once therefore leave the aliases and tags as the last event says.
"""

from __future__ import annotations

import contextlib
import json
import logging
import operator
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.audit import STAGE_ALIASES, AuditEvent, AuditLog, now_iso, parse_head
from modelyard.config import STAGES, parse_condition
from modelyard.entities import STATUS_PENDING, T_ROLLED_BACK, T_SEMVER, T_STAGE, T_STATUS
from modelyard.errors import (
    ApprovalError,
    GateFailed,
    InvalidInput,
    NotFound,
    UserError,
    VersionNotFound,
    YardError,
)
from modelyard.refs import VersionRef

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.config import Settings
    from modelyard.entities import LoadedModel, ModelVersion
    from modelyard.tracking import Tracking, VersionRecord
    from modelyard.vault import Vault

log = logging.getLogger("modelyard.lifecycle")

T_AUDIT_HEAD = "modelyard.audit_head"
_ALIAS = re.compile(r"^[\w-]+$")
_RESERVED_ALIASES = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)
_BEAT = re.compile(
    r"^\s*beats?\s+(?:production\s+)?(?:on\s+)?([\w.\-]+)(?:\s+by\s+(-?[0-9.eE+-]+))?\s*$"
)
_TAG_GATE = re.compile(r"^\s*([^=<>!\s]+)\s*=\s*([^=].*?)\s*$")
_MOVES = ("promote", "approve", "rollback")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq,
}


def normalize_stage(stage: str) -> str:
    value = str(stage).strip().lower()
    if value == "development":
        value = "none"
    if value not in STAGES:
        raise InvalidInput(f"unknown stage {stage!r}: use one of {', '.join(STAGES)}")
    return value


@dataclass
class GateSpec:
    """One gate: a metric threshold, a required tag, or 'beat production on M by X'."""

    kind: str  # "metric" | "tag" | "beat"
    text: str
    metric: str = ""
    op: str = ""
    number: float = 0.0
    key: str = ""
    value: str = ""

    @classmethod
    def parse(cls, text: str) -> GateSpec:
        beat = _BEAT.match(text)
        if beat:
            margin = float(beat.group(2)) if beat.group(2) else 0.0
            return cls("beat", text.strip(), metric=beat.group(1), number=margin)
        with contextlib.suppress(ValueError):
            metric, op, number = parse_condition(text)
            return cls("metric", text.strip(), metric=metric, op=op, number=number)
        tag = _TAG_GATE.match(text)
        if tag:
            return cls("tag", text.strip(), key=tag.group(1), value=tag.group(2))
        raise InvalidInput(
            f"gate {text!r} not understood: use 'METRIC OP NUMBER' (accuracy >= 0.85), "
            "'KEY=VALUE' (a required tag) or 'beat METRIC [by MARGIN]'"
        )


@dataclass
class Holdout:
    """A dataset both versions are scored on; the challenger must score higher."""

    X: Any
    y: Any
    scorer: Callable[[Any, Any], float] | None = None
    label: str = "accuracy"


@dataclass
class StageChange:
    """What ``promote``, ``approve`` and ``rollback`` return."""

    status: str  # "promoted" | "pending" | "rolled back"
    name: str
    version: int
    semver: str | None
    from_stage: str
    to: str
    replaced: int | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    event: int | None = None
    request_id: str | None = None
    reason: str | None = None
    webhooks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "name": self.name, "version": self.version,
            "semver": self.semver, "from": self.from_stage, "to": self.to,
            "replaced": self.replaced, "gates": self.gates, "event": self.event,
            "request_id": self.request_id, "reason": self.reason, "webhooks": self.webhooks,
        }


class LifecycleMixin:
    """Methods of ``Yard`` for the lifecycle verbs."""

    if TYPE_CHECKING:  # pragma: no cover - provided by Yard
        settings: Settings
        tracking: Tracking

        @property
        def vault(self) -> Vault: ...

        @property
        def user(self) -> str: ...

        def versions(self, name: str) -> list[VersionRecord]: ...

        def resolve(self, name: str, ref: str | int | None = "latest") -> VersionRecord: ...

        def load(self, name: str, ref: str | int | None = "production", *,
                 verify: bool = True, train: Callable[[], Any] | None = None
                 ) -> LoadedModel: ...

    # -- small helpers --------------------------------------------------------------------
    def _audit_log(self, name: str) -> AuditLog:
        return AuditLog(self.vault.store, name)

    def _lookup(self, name: str, ref: str | int | None) -> VersionRecord:
        """Resolve a reference; numbers and aliases without listing every version."""
        from modelyard.yard import check_name

        check_name(name)
        parsed = VersionRef.parse(ref if ref is not None else "latest")
        number: int | None = None
        try:
            if parsed.kind == "number":
                number = int(parsed.value)
            elif parsed.kind == "alias":
                number = self.tracking.alias_holder(name, parsed.value)
            if number is not None:
                record = self.tracking.get_version(name, number)
                if record.tags.get(T_STATUS) != STATUS_PENDING:
                    return record
        except NotFound:
            pass
        return self.resolve(name, ref)  # the full look-up, with its helpful error

    def _demoted(self, stage: str) -> str:
        """Where a version goes when another one takes its stage."""
        if stage == "production" and self.settings.archive_old_versions:
            return "archived"
        return "none"

    def _append(
        self, name: str, build: Callable[[AuditEvent | None], dict[str, Any]]
    ) -> AuditEvent:
        event = self._audit_log(name).append(build, who=self.user)
        # The registry remembers the newest event too: removing events at the end of the
        # trail is then detected as well.
        with contextlib.suppress(YardError):
            self.tracking.set_model_tag(name, T_AUDIT_HEAD, f"{event.seq}:{event.hash}")
        return event

    def _record(self, name: str, action: str, **fields: Any) -> AuditEvent:
        """Append an event that moves no stage (its ``stages`` copy the previous event's)."""

        def build(prev: AuditEvent | None) -> dict[str, Any]:
            return {"action": action, "stages": dict(prev.stages) if prev else {}, **fields}

        return self._append(name, build)

    # -- registration hook ----------------------------------------------------------------
    def _on_registered(self, mv: ModelVersion) -> None:
        """Audit the registration, apply ``default_stage`` and auto-promotion."""
        try:
            self._record(
                mv.name, "register", version=mv.version, semver=mv.semver, from_=None,
                to="none", reason=mv.bump_reason,
                detail={"bump": mv.bump, "run_id": mv.run_id},
            )
        except YardError as exc:
            log.error("could not audit the registration of %s: %s", mv.label, exc.message)
        default = self.settings.default_stage
        if default != "none":
            try:
                self.promote(mv.name, mv.version, to=default, force=default == "production",
                             reason="default_stage policy")
            except UserError as exc:
                log.warning("%s stays in stage none: %s", mv.label, exc.message)
        condition = self.settings.auto_promote
        target = self.settings.auto_promote_to
        if condition and target != "none":
            try:
                self.promote(mv.name, mv.version, to=target, force=target == "production",
                             gates=[condition], reason=f"auto-promotion: {condition}")
            except GateFailed as exc:
                log.info("%s not auto-promoted: %s", mv.label, exc.message)
            except UserError as exc:
                log.warning("%s not auto-promoted: %s", mv.label, exc.message)

    # -- gates ----------------------------------------------------------------------------
    def _gate_specs(self, stage: str, gates: Iterable[str] | None) -> list[GateSpec]:
        specs = [GateSpec.parse(g) for g in (gates or [])]
        if stage in ("staging", "production"):
            # The policy's gates guard every promotion into a serving stage.
            specs += [GateSpec.parse(g) for g in self.settings.gates]
            specs += [GateSpec("tag", f"{k}={v}", key=k, value=v)
                      for k, v in self.settings.required_tags.items()]
        if stage == "production":
            metric = self.settings.beat_production_metric
            if metric:
                margin = self.settings.beat_production_margin
                specs.append(GateSpec("beat", f"beat {metric} by {margin:g}", metric=metric,
                                      number=margin))
        return specs

    def _run_metrics(self, record: VersionRecord) -> dict[str, float]:
        if not record.run_id:
            return {}
        return {k: float(v) for k, v in self.tracking.get_run(record.run_id)["metrics"].items()}

    def _evaluate_gates(
        self,
        name: str,
        record: VersionRecord,
        stage: str,
        specs: list[GateSpec],
        holdout: Holdout | None,
    ) -> list[dict[str, Any]]:
        """Every gate's inputs and verdict. Reads the registry; changes nothing."""
        results: list[dict[str, Any]] = []
        metrics: dict[str, float] | None = None
        incumbent: int | str | None = "unread"
        for spec in specs:
            if spec.kind == "metric":
                metrics = self._run_metrics(record) if metrics is None else metrics
                value = metrics.get(spec.metric)
                passed = value is not None and _OPS[spec.op](value, spec.number)
                detail = (f"{spec.metric} = {value:g} (needs {spec.op} {spec.number:g})"
                          if value is not None else f"{spec.metric} was not logged")
                results.append({"gate": spec.text, "kind": "metric", "passed": passed,
                                "inputs": {"metric": spec.metric, "value": value,
                                           "op": spec.op, "threshold": spec.number},
                                "detail": detail})
            elif spec.kind == "tag":
                actual = record.tags.get(spec.key)
                passed = actual == spec.value
                results.append({"gate": spec.text, "kind": "tag", "passed": passed,
                                "inputs": {"tag": spec.key, "expected": spec.value,
                                           "actual": actual},
                                "detail": f"tag {spec.key} is {actual!r} (needs "
                                          f"{spec.value!r})"})
            else:
                if incumbent == "unread":
                    incumbent = self.tracking.alias_holder(name, "production")
                results.append(self._beat_gate(name, record, spec, incumbent, metrics))
        if holdout is not None:
            if incumbent == "unread":
                incumbent = self.tracking.alias_holder(name, "production")
            results.append(self._holdout_gate(name, record, holdout, incumbent))
        return results

    def _beat_gate(self, name: str, record: VersionRecord, spec: GateSpec,
                   holder: int | str | None, metrics: dict[str, float] | None
                   ) -> dict[str, Any]:
        inputs: dict[str, Any] = {"metric": spec.metric, "margin": spec.number,
                                  "production_version": holder}
        if not isinstance(holder, int) or holder == record.version:
            return {"gate": spec.text, "kind": "beat", "passed": True, "inputs": inputs,
                    "detail": "no other production holder to beat"}
        mine = (metrics or self._run_metrics(record)).get(spec.metric)
        theirs = self._run_metrics(self.tracking.get_version(name, holder)).get(spec.metric)
        inputs.update({"challenger": mine, "production": theirs})
        if mine is None or theirs is None:
            missing = "this version" if mine is None else f"production (#{holder})"
            return {"gate": spec.text, "kind": "beat", "passed": False, "inputs": inputs,
                    "detail": f"{spec.metric} was not logged for {missing}"}
        passed = mine - theirs >= spec.number
        return {"gate": spec.text, "kind": "beat", "passed": passed, "inputs": inputs,
                "detail": f"{spec.metric} {mine:g} vs production #{holder} {theirs:g} "
                          f"(needs +{spec.number:g})"}

    def _holdout_gate(self, name: str, record: VersionRecord, holdout: Holdout,
                      holder: int | str | None) -> dict[str, Any]:
        def score(version: int) -> float:
            model = self.load(name, version).model
            predicted = model.predict(holdout.X)
            if holdout.scorer is not None:
                return float(holdout.scorer(holdout.y, predicted))
            truth = list(holdout.y)
            hits = sum(1 for a, b in zip(truth, list(predicted), strict=True) if a == b)
            return hits / len(truth) if truth else 0.0

        rows = len(holdout.y)
        gate = f"holdout {holdout.label}"
        inputs: dict[str, Any] = {"rows": rows, "scorer": holdout.label,
                                  "production_version": holder}
        if rows == 0:
            raise InvalidInput("the holdout dataset is empty")
        challenger = score(record.version)
        inputs["challenger"] = challenger
        if not isinstance(holder, int) or holder == record.version:
            return {"gate": gate, "kind": "holdout", "passed": True, "inputs": inputs,
                    "detail": f"{holdout.label} {challenger:g} (no production holder to beat)"}
        incumbent = score(holder)
        inputs["production"] = incumbent
        return {"gate": gate, "kind": "holdout", "passed": challenger > incumbent,
                "inputs": inputs,
                "detail": f"{holdout.label} {challenger:g} vs production #{holder} "
                          f"{incumbent:g} on {rows} rows"}

    def _refuse_on_failed_gates(self, name: str, record: VersionRecord, ref: str,
                                stage: str, results: list[dict[str, Any]]) -> None:
        failed = [r for r in results if not r["passed"]]
        if not failed:
            return
        reason = "; ".join(f"gate '{r['gate']}' failed: {r['detail']}" for r in failed)
        with contextlib.suppress(YardError):
            self._record(name, "gate_failed", version=record.version,
                         semver=record.tags.get(T_SEMVER), from_=record.tags.get(T_STAGE),
                         to=stage, reason=reason, gates=results)
        raise GateFailed(name=name, ref=ref, stage=stage, reason=reason)

    # -- promotion ------------------------------------------------------------------------
    def promote(
        self,
        name: str,
        ref: str | int,
        to: str = "production",
        *,
        reason: str | None = None,
        force: bool = False,
        gates: Iterable[str] | None = None,
        holdout: Holdout | tuple[Any, Any] | None = None,
        scorer: Callable[[Any, Any], float] | None = None,
    ) -> StageChange:
        """Move a version into a stage (``staging``, ``production``, ``archived``, ``none``).

        The previous holder of the stage moves out (production -> ``archived``, or ``none``
        when ``archive_old_versions`` is false; staging -> ``none``). Going to production
        from anything but staging needs ``force=True`` and a reason. Gates from the policy
        (thresholds and required tags for staging and production; beating production for
        production) and from ``gates`` (``"accuracy >= 0.85"``, ``"validation=passed"``,
        ``"beat accuracy by 0.01"``) must pass, and with ``holdout=(X, y)`` the version must
        outscore the production holder on that data (accuracy, or ``scorer(y, predicted)``).
        A failed gate raises ``GateFailed`` and changes nothing. When production approval is
        required, a request is filed instead (``status == "pending"``).

        >>> yard.promote("churn", "v1.2.0", to="production", reason="beats v1.1.0")
        """
        stage = normalize_stage(to)
        record = self._lookup(name, ref)
        current = record.tags.get(T_STAGE, "none")
        spec_texts = list(gates or [])
        self._check_move(name, record, stage, force, reason)
        specs = self._gate_specs(stage, spec_texts)
        checked = _as_holdout(holdout, scorer)
        results = self._evaluate_gates(name, record, stage, specs, checked)
        self._refuse_on_failed_gates(name, record, str(ref), stage, results)
        if stage == "production" and self.settings.production_approval_required:
            return self._file_request(name, record, stage, reason, force, spec_texts, results)
        change = self._move(name, record, stage, "promote", reason=reason, gates=results,
                            detail={"forced": True} if force and current != "staging" else {})
        return change

    def _check_move(self, name: str, record: VersionRecord, stage: str, force: bool,
                    reason: str | None) -> None:
        current = record.tags.get(T_STAGE, "none")
        label = _label(name, record)
        if stage in STAGE_ALIASES and stage in record.aliases:
            raise InvalidInput(f"{label} already holds {stage}; nothing changed")
        if stage not in STAGE_ALIASES and current == stage and not set(
                record.aliases) & set(STAGE_ALIASES):
            raise InvalidInput(f"{label} is already in stage {stage}; nothing changed")
        if force and not (reason and reason.strip()):
            raise InvalidInput("--force needs a --reason (it is kept in the audit trail)")
        if stage == "production" and current != "staging" and not force:
            raise InvalidInput(
                f"{label} is in stage {current}, not staging: promote it to staging first, "
                "or skip staging with --force and a --reason"
            )

    def _move(
        self,
        name: str,
        record: VersionRecord,
        stage: str,
        action: str,
        *,
        reason: str | None,
        gates: list[dict[str, Any]] | None = None,
        detail: dict[str, Any] | None = None,
        rolled_back: int | None = None,
    ) -> StageChange:
        """Take the next audit slot for a stage move, then apply it (see ``_settle``)."""
        version = record.version
        current = record.tags.get(T_STAGE, "none")
        # Holders MLflow has now: anything moved outside modelyard is demoted as well.
        live = {s: self.tracking.alias_holder(name, s) for s in STAGE_ALIASES}
        replaced: dict[str, int | None] = {}

        def build(prev: AuditEvent | None) -> dict[str, Any]:
            stages: dict[str, int | None] = (
                dict(prev.stages) if prev and prev.stages else dict(live)
            )
            displaced: list[dict[str, Any]] = []
            for s in STAGE_ALIASES:
                holders = {stages.get(s), live.get(s)} - {None, version}
                if s == stage:
                    displaced += [{"version": h, "stage": s} for h in sorted(
                        h for h in holders if isinstance(h, int))]
                if stages.get(s) == version and s != stage:
                    stages[s] = None  # a version is in one stage at a time
            replaced["holder"] = None
            if stage in STAGE_ALIASES:
                before = stages.get(stage)
                if before is not None and before != version:
                    stages[f"{stage}.previous"] = before
                    replaced["holder"] = before
                elif displaced:
                    replaced["holder"] = int(displaced[0]["version"])
                stages[stage] = version
            extra = dict(detail or {})
            if displaced:
                extra["displaced"] = displaced
            if rolled_back is not None:
                extra["rolled_back"] = rolled_back
            return {"action": action, "version": version, "semver": record.tags.get(T_SEMVER),
                    "from_": current, "to": stage, "reason": reason, "gates": gates or [],
                    "detail": extra, "stages": stages}

        event = self._append(name, build)
        self._settle(name, event)
        holder = replaced.get("holder")
        if rolled_back is not None:
            holder = rolled_back
        status = "rolled back" if action == "rollback" else "promoted"
        change = StageChange(
            status=status, name=name, version=version, semver=record.tags.get(T_SEMVER),
            from_stage=current, to=stage, replaced=holder, gates=gates or [],
            event=event.seq, reason=reason,
        )
        change.webhooks = self._notify(name, event)
        return change

    def _settle(self, name: str, mine: AuditEvent) -> None:
        """Make MLflow's aliases and stage tags match the newest event of the trail.

        Applies the newest event's holders, then re-reads the tail: if another process
        appended meanwhile, its events join the window and are applied too. Whoever writes
        last has checked after writing that no newer event exists, so the end state is the
        newest event's, however the processes interleave.
        """
        audit = self._audit_log(name)
        window = [mine]
        seen = mine.seq
        while True:
            self._apply(name, window)
            while True:
                newer = [audit.read(s) for s in audit.sequence_numbers() if s > seen]
                if not newer:
                    return
                seen = newer[-1].seq
                moves = [e for e in newer if e.action in _MOVES]
                if moves:
                    window += moves
                    break
                # Events that move no stage (registrations, tags) need nothing applied.

    def _apply(self, name: str, window: list[AuditEvent]) -> None:
        latest = next(
            (e for e in reversed(window) if e.stages), window[-1]
        )
        holders = {s: latest.stages.get(s) for s in STAGE_ALIASES}
        for stage, holder in holders.items():
            if isinstance(holder, int):
                try:
                    self.tracking.set_alias(name, stage, holder)
                except NotFound:
                    log.warning("%s holder #%s no longer exists", stage, holder)
            else:
                with contextlib.suppress(NotFound):
                    self.tracking.delete_alias(name, stage)
        wanted: dict[int, dict[str, str]] = {}
        for event in window:
            if event.version is not None and event.to is not None and event.action in (
                    "promote", "approve", "rollback"):
                target = event.to
                wanted.setdefault(event.version, {})[T_STAGE] = (
                    target if target not in STAGE_ALIASES else self._demoted(target))
            for item in event.detail.get("displaced", []):
                wanted.setdefault(int(item["version"]), {})[T_STAGE] = self._demoted(
                    str(item["stage"]))
            back = event.detail.get("rolled_back")
            if back is not None:
                wanted.setdefault(int(back), {}).update({
                    T_STAGE: "archived",
                    T_ROLLED_BACK: f"{event.when} by {event.who}: {event.reason or ''}".strip(),
                })
        for stage, holder in holders.items():
            if isinstance(holder, int):
                wanted.setdefault(holder, {})[T_STAGE] = stage
        for version, tags in sorted(wanted.items()):
            with contextlib.suppress(NotFound):
                self.tracking.set_version_tags(name, version, tags)

    # -- approvals ------------------------------------------------------------------------
    @staticmethod
    def _request_key(name: str, request_id: str) -> str:
        return f"requests/{name}/{request_id}.json"

    @staticmethod
    def _decision_key(name: str, request_id: str) -> str:
        return f"requests/{name}/{request_id}.decision.json"

    def _file_request(self, name: str, record: VersionRecord, stage: str,
                      reason: str | None, force: bool, gates: list[str],
                      results: list[dict[str, Any]]) -> StageChange:
        request_id = uuid.uuid4().hex[:10]
        body = {
            "id": request_id, "name": name, "version": record.version,
            "semver": record.tags.get(T_SEMVER), "stage": stage, "reason": reason,
            "force": force, "gates": gates, "gate_results": results,
            "requested_by": self.user, "requested_at": now_iso(),
        }
        self.vault.store.put_if_absent(self._request_key(name, request_id),
                                       json.dumps(body, indent=1).encode())
        event = self._record(
            name, "request", version=record.version, semver=record.tags.get(T_SEMVER),
            from_=record.tags.get(T_STAGE, "none"), to=stage, reason=reason, gates=results,
            detail={"request_id": request_id},
        )
        return StageChange(
            status="pending", name=name, version=record.version,
            semver=record.tags.get(T_SEMVER), from_stage=record.tags.get(T_STAGE, "none"),
            to=stage, gates=results, event=event.seq, request_id=request_id, reason=reason,
        )

    def _find_request(self, request_id: str) -> dict[str, Any]:
        if not re.fullmatch(r"[0-9a-f]{4,32}", request_id or ""):
            raise InvalidInput(f"invalid request id {request_id!r}")
        suffix = f"/{request_id}.json"
        keys = [k for k in self.vault.store.list("requests/") if k.endswith(suffix)]
        if not keys:
            raise NotFound(f"no promotion request {request_id}")
        body: dict[str, Any] = json.loads(self.vault.store.get_bytes(keys[0]))
        decision = self._decision_key(body["name"], request_id)
        if self.vault.store.exists(decision):
            done = json.loads(self.vault.store.get_bytes(decision))
            raise ApprovalError(
                f"request {request_id} was already {done['decision']} by {done['by']}"
            )
        return body

    def _check_approver(self, request: dict[str, Any], verb: str) -> str:
        who = self.user
        if who == request["requested_by"] and not self.settings.allow_self_approval:
            raise ApprovalError(
                f"{who} requested {request['id']} and cannot {verb} it: another user must "
                "(or set allow_self_approval)"
            )
        return who

    def _decide(self, request: dict[str, Any], decision: str, who: str,
                reason: str | None) -> None:
        body = {"decision": decision, "by": who, "at": now_iso(), "reason": reason}
        if not self.vault.store.put_if_absent(
                self._decision_key(request["name"], request["id"]),
                json.dumps(body).encode()):
            raise ApprovalError(f"request {request['id']} was decided by someone else just now")

    def approve(self, request_id: str, *, reason: str | None = None) -> StageChange:
        """Approve a pending promotion (by someone other than its requester): the gates are
        checked again and the version is promoted."""
        request = self._find_request(request_id)
        who = self._check_approver(request, "approve")
        name, stage = str(request["name"]), str(request["stage"])
        record = self._lookup(name, int(request["version"]))
        self._check_move(name, record, stage, bool(request.get("force")),
                         request.get("reason") or reason)
        results = self._evaluate_gates(
            name, record, stage, self._gate_specs(stage, request.get("gates") or []), None)
        self._refuse_on_failed_gates(name, record, str(record.version), stage, results)
        self._decide(request, "approved", who, reason)
        detail = {"request_id": request_id, "requested_by": request["requested_by"],
                  "approved_by": who}
        try:
            return self._move(name, record, stage, "approve",
                              reason=reason or request.get("reason"), gates=results,
                              detail=detail)
        except BaseException:
            # The promotion did not happen: reopen the request.
            with contextlib.suppress(YardError):
                self.vault.store.delete(self._decision_key(name, request_id))
            raise

    def reject(self, request_id: str, *, reason: str) -> dict[str, Any]:
        """Close a pending promotion without promoting."""
        if not (reason and reason.strip()):
            raise InvalidInput("rejecting needs a --reason")
        request = self._find_request(request_id)
        who = self._check_approver(request, "reject")
        self._decide(request, "rejected", who, reason)
        name = str(request["name"])
        event = self._record(
            name, "reject", version=int(request["version"]), semver=request.get("semver"),
            from_=None, to=request["stage"], reason=reason,
            detail={"request_id": request_id, "requested_by": request["requested_by"]},
        )
        return {**request, "status": "rejected", "rejected_by": who, "reason": reason,
                "event": event.seq}

    def requests(self, name: str | None = None) -> list[dict[str, Any]]:
        """Open promotion requests, oldest first."""
        prefix = "requests/"
        if name:
            from modelyard.yard import check_name

            prefix = f"requests/{check_name(name)}/"
        keys = self.vault.store.list(prefix)
        decided = {k.removesuffix(".decision.json") for k in keys
                   if k.endswith(".decision.json")}
        rows = []
        for key in keys:
            if key.endswith(".decision.json") or key.removesuffix(".json") in decided:
                continue
            rows.append(json.loads(self.vault.store.get_bytes(key)))
        return sorted(rows, key=lambda r: str(r.get("requested_at", "")))

    # -- rollback -------------------------------------------------------------------------
    def rollback(
        self,
        name: str,
        stage: str = "production",
        to: str | int | None = None,
        *,
        reason: str | None = None,
    ) -> StageChange:
        """Put back the previous holder of a stage (from the audit trail), or ``to``.

        The version rolled back from is archived and tagged ``modelyard.rolled_back``.
        """
        stage = normalize_stage(stage)
        if stage not in STAGE_ALIASES:
            raise InvalidInput(f"only staging and production can be rolled back, not {stage}")
        current = self.tracking.alias_holder(name, stage)
        if current is None:
            self.tracking.get_model(name)  # ModelNotFound if there is no such model
            raise InvalidInput(f"{name}: no version holds {stage}; nothing to roll back")
        if to is not None:
            target = self._lookup(name, to)
        else:
            last = self._audit_log(name).last()
            previous = last.stages.get(f"{stage}.previous") if last else None
            if previous is None or previous == current:
                raise InvalidInput(
                    f"{name}: the audit trail has no earlier {stage} holder; name one with --to"
                )
            try:
                target = self.tracking.get_version(name, int(str(previous)))
            except NotFound:
                raise VersionNotFound(
                    name=name, ref=f"#{previous}",
                    hint=f" (the previous {stage} holder was deleted; name one with --to)",
                ) from None
        if target.version == current:
            raise InvalidInput(f"{_label(name, target)} already holds {stage}")
        return self._move(name, target, stage, "rollback", reason=reason or "rollback",
                          rolled_back=current)

    # -- aliases and tags -----------------------------------------------------------------
    def set_alias(self, name: str, ref: str | int, alias: str) -> dict[str, Any]:
        """Point a user alias at a version (stage aliases move only through promote)."""
        _check_alias(alias)
        record = self._lookup(name, ref)
        previous = self.tracking.alias_holder(name, alias)
        self.tracking.set_alias(name, alias, record.version)
        event = self._record(name, "alias", version=record.version,
                             semver=record.tags.get(T_SEMVER), from_=None, to=None,
                             reason=None, detail={"alias": alias, "op": "set",
                                                  "previous": previous})
        return {"name": name, "alias": alias, "version": record.version,
                "semver": record.tags.get(T_SEMVER), "previous": previous, "event": event.seq}

    def remove_alias(self, name: str, alias: str) -> dict[str, Any]:
        _check_alias(alias)
        holder = self.tracking.alias_holder(name, alias)
        if holder is None:
            self.tracking.get_model(name)
            raise InvalidInput(f"{name} has no alias {alias!r}; nothing changed")
        self.tracking.delete_alias(name, alias)
        event = self._record(name, "alias", version=holder, from_=None, to=None, reason=None,
                             detail={"alias": alias, "op": "delete"})
        return {"name": name, "alias": alias, "version": holder, "deleted": True,
                "event": event.seq}

    def set_tag(self, name: str, ref: str | int, key: str, value: str
                ) -> dict[str, Any]:
        """Set a user tag on a version (the ``modelyard.`` namespace is reserved)."""
        _check_tag_key(key)
        record = self._lookup(name, ref)
        previous = record.tags.get(key)
        self.tracking.set_version_tags(name, record.version, {key: str(value)})
        event = self._record(name, "tag", version=record.version,
                             semver=record.tags.get(T_SEMVER), from_=None, to=None,
                             reason=None, detail={"key": key, "value": str(value), "op": "set",
                                                  "previous": previous})
        return {"name": name, "version": record.version, "semver": record.tags.get(T_SEMVER),
                "key": key, "value": str(value), "previous": previous, "event": event.seq}

    def remove_tag(self, name: str, ref: str | int, key: str) -> dict[str, Any]:
        _check_tag_key(key)
        record = self._lookup(name, ref)
        if key not in record.tags:
            raise InvalidInput(f"{_label(name, record)} has no tag {key!r}; nothing changed")
        self.tracking.delete_version_tag(name, record.version, key)
        event = self._record(name, "tag", version=record.version,
                             semver=record.tags.get(T_SEMVER), from_=None, to=None,
                             reason=None, detail={"key": key, "op": "delete",
                                                  "previous": record.tags[key]})
        return {"name": name, "version": record.version, "key": key, "deleted": True,
                "event": event.seq}

    # -- retention ------------------------------------------------------------------------
    def cleanup(self, name: str, keep: int | None = None, *, delete: bool = False,
                yes: bool = False) -> dict[str, Any]:
        """Archive (or with ``delete``, delete) versions beyond the newest ``keep``.

        Never touches a version holding any alias or a stage. Returns the plan and does
        nothing unless ``yes``. Deleting removes the version's artifact files and its vault
        manifest too.
        """
        keep = self.settings.max_versions if keep is None else keep
        if not keep or keep < 1:
            raise InvalidInput("give --keep N (N >= 1), or set max_versions in the policy")
        versions = sorted(self.versions(name), key=lambda v: v.version, reverse=True)
        plan: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for record in versions[keep:]:
            row: dict[str, Any] = {"version": record.version,
                                   "semver": record.tags.get(T_SEMVER),
                   "stage": record.tags.get(T_STAGE, "none")}
            why = _protected(record)
            if why:
                skipped.append({**row, "why": why})
            elif delete:
                plan.append({**row, "action": "delete"})
            elif row["stage"] != "archived":
                plan.append({**row, "action": "archive"})
        result: dict[str, Any] = {"name": name, "keep": keep, "delete": delete,
                                  "applied": False, "plan": plan, "skipped": skipped}
        if not yes or not plan:
            return result
        done: list[dict[str, Any]] = []
        for row in plan:
            try:
                record = self.tracking.get_version(name, row["version"])
            except NotFound:
                continue
            why = _protected(record)
            if why:  # it gained an alias since the plan was made
                skipped.append({**row, "why": why})
                continue
            if row["action"] == "archive":
                self.tracking.set_version_tags(name, record.version, {T_STAGE: "archived"})
            else:
                location = self.tracking.artifact_location(record)
                self.tracking.delete_version(name, record.version)
                try:
                    self.tracking.delete_artifacts(location)
                except YardError as exc:
                    log.warning("artifacts of %s #%s not deleted: %s", name, record.version,
                                exc.message)
                    row = {**row, "artifacts_left": location}
                with contextlib.suppress(YardError):
                    self.vault.delete_manifest(name, record.version)
            done.append(row)
        result["plan"] = done
        result["applied"] = True
        if done:
            verb = "deleted" if delete else "archived"
            event = self._record(name, "cleanup", version=None, from_=None, to=None,
                                 reason=f"keep the newest {keep}",
                                 detail={verb: [r["version"] for r in done], "keep": keep})
            result["event"] = event.seq
        return result

    # -- history --------------------------------------------------------------------------
    def history(self, name: str, version: str | int | None = None, *,
                verify: bool = False) -> list[dict[str, Any]]:
        """The model's audit trail, oldest first; ``verify`` checks the hash chain and
        raises ``AuditTampered`` naming the first broken event."""
        from modelyard.yard import check_name

        check_name(name)
        model = self.tracking.get_model(name)
        audit = self._audit_log(name)
        if verify:
            audit.verify(parse_head(model.tags.get(T_AUDIT_HEAD)))
        events = audit.events()
        if version is not None:
            text = str(version)
            number = int(text) if text.isdigit() else self._lookup(name, text).version
            events = [e for e in events if _mentions(e, number)]
        return [e.to_dict() for e in events]

    # -- notifications --------------------------------------------------------------------
    def _notify(self, name: str, event: AuditEvent) -> list[dict[str, Any]]:
        """Signed webhooks for a stage change; failures are logged and audited, never
        raised."""
        if not self.settings.webhooks:
            return []
        from modelyard import notify

        payload = {"event": event.to_dict(), "model": name}
        results = notify.send_all(self.settings.webhooks, payload, self.settings.webhook_secret)
        failed = [r for r in results if not r["ok"]]
        if failed:
            for item in failed:
                log.warning("webhook %s failed after %s attempts: %s", item["url"],
                            item["attempts"], item["error"])
            with contextlib.suppress(YardError):
                self._record(name, "webhook_failed", version=event.version,
                             semver=event.semver, from_=None, to=None,
                             reason=f"notification of event {event.seq} failed",
                             detail={"event": event.seq, "webhooks": failed})
        return results


def _as_holdout(holdout: Holdout | tuple[Any, Any] | None,
                scorer: Callable[[Any, Any], float] | None) -> Holdout | None:
    if holdout is None:
        return None
    if isinstance(holdout, Holdout):
        return holdout
    try:
        features, target = holdout
    except (TypeError, ValueError):
        raise InvalidInput("holdout must be (X, y)") from None
    label = getattr(scorer, "__name__", "score") if scorer else "accuracy"
    return Holdout(features, target, scorer, label)


def _label(name: str, record: VersionRecord) -> str:
    semver = record.tags.get(T_SEMVER)
    return f"{name} v{semver}" if semver else f"{name} #{record.version}"


def _protected(record: VersionRecord) -> str | None:
    if record.aliases:
        return "holds alias " + ", ".join(record.aliases)
    stage = record.tags.get(T_STAGE)
    if stage in STAGE_ALIASES:
        return f"in stage {stage}"
    return None


def _check_alias(alias: str) -> None:
    if not alias or not _ALIAS.match(alias):
        raise InvalidInput(f"invalid alias {alias!r}: use letters, digits, '_' or '-'")
    if alias.lower() in (*STAGE_ALIASES, "archived", "none", "development"):
        raise InvalidInput(
            f"{alias!r} is a stage: stages move only with `modelyard promote`"
        )
    if _RESERVED_ALIASES.match(alias):
        raise InvalidInput(f"alias {alias!r} is reserved by MLflow (latest, v<digits>)")


def _check_tag_key(key: str) -> None:
    if not key or not key.strip() or "=" in key:
        raise InvalidInput(f"invalid tag key {key!r}")
    if key.lower().startswith("modelyard."):
        raise InvalidInput(f"tags in the 'modelyard.' namespace are reserved: {key}")


def _mentions(event: AuditEvent, number: int) -> bool:
    if event.version == number or event.detail.get("rolled_back") == number:
        return True
    return any(int(d.get("version", -1)) == number for d in event.detail.get("displaced", []))
