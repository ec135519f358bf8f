"""Promotion policy: promote, approvals, rollback, and what happens after a registration.

The *mechanics* of a move live in ``stages.py``; this module decides whether a move may
happen (gates, approvals by a second person, the policy) and records what the gates found.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from modelyard.backend.identity import EDIT, MANAGE
from modelyard.backend.lean.base import at_once
from modelyard.context import Context
from modelyard.core.entities import Decision, ModelVersion
from modelyard.core.lineage import Lineage
from modelyard.core.names import (
    STAGE_ALIASES,
    T_ROLLED_BACK,
    T_SEMVER,
    T_STAGE,
    check_name,
    normalize_stage,
)
from modelyard.core.records import VersionRecord
from modelyard.core.refs import lookup
from modelyard.errors import (
    ApprovalError,
    Conflict,
    GateFailed,
    InvalidInput,
    NotFound,
    StorageError,
    UserError,
    VersionNotFound,
    YardError,
)
from modelyard.lifecycle.gates import Gates, Holdout, as_holdout, describe
from modelyard.lifecycle.stages import StageChange, Stages, StaleMove, record_label
from modelyard.project import git
from modelyard.store.vault import REQUESTS, decision_key, request_key, requests_prefix
from modelyard.trail.audit import AuditEvent, Auditor, now_iso

log = logging.getLogger("modelyard.promotion")

_ROLLBACK_ATTEMPTS = 20  # each retry follows another rollback or promotion that took the slot


class Promotion:
    """promote, approve, reject, requests, rollback, and the registration policy."""

    def __init__(self, ctx: Context, stages: Stages, gates: Gates, audit: Auditor) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.stages = stages
        self.gates = gates
        self.audit = audit

    def after_registration(self, mv: ModelVersion, action: str = "register") -> None:
        """Audit a new version; for a registration, apply ``default_stage`` and
        auto-promotion (imported, adopted and restored versions keep their stage)."""
        fields = {"version": mv.version, "semver": mv.semver, "from_": None, "to": mv.stage,
                  "reason": mv.bump_reason, "detail": {"bump": mv.bump, "run_id": mv.run_id}}

        def adopted(prev: AuditEvent | None) -> dict[str, Any]:
            # An adopted version that holds a stage in MLflow (adopt chose one holder each)
            # is that stage's holder from this event on: the trail explains MLflow's holders.
            stages = dict(prev.stages) if prev else {}
            for stage in STAGE_ALIASES:
                if stages.get(stage) == mv.version and stage != mv.stage:
                    stages[stage] = None
            stages[mv.stage] = mv.version
            return {"action": action, "stages": stages, **fields}

        try:
            if action == "adopt" and mv.stage in STAGE_ALIASES:
                self.audit.append(mv.name, adopted)
            else:
                self.audit.record(
                    mv.name, action, version=mv.version, semver=mv.semver, from_=None,
                    to=mv.stage, reason=mv.bump_reason,
                    detail={"bump": mv.bump, "run_id": mv.run_id},
                )
        except YardError as exc:
            log.error("could not audit the %s of %s: %s", action, mv.label, exc.message)
        if action != "register":
            return
        default = self.ctx.settings.default_stage
        if default != "none":
            try:
                self.promote(mv.name, mv.version, to=default, force=default == "production",
                             reason="default_stage policy")
            except UserError as exc:
                log.warning("%s stays in stage none: %s", mv.label, exc.message)
        condition = self.ctx.settings.auto_promote
        target = self.ctx.settings.auto_promote_to
        if condition and target != "none":
            try:
                self.promote(mv.name, mv.version, to=target, force=target == "production",
                             gates=[condition], reason=f"auto-promotion: {condition}")
            except GateFailed as exc:
                log.info("%s not auto-promoted: %s", mv.label, exc.message)
            except UserError as exc:
                log.warning("%s not auto-promoted: %s", mv.label, exc.message)

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
        record, found_holders = self._find(name, ref)
        holders: dict[str, int | None] | None = found_holders
        self.require_for_move(name, stage)
        current = record.tags.get(T_STAGE, "none")
        spec_texts = list(gates or [])
        self.stages.check_move(name, record, stage, force, reason)
        specs = self.gates.specs(stage, spec_texts)
        checked = as_holdout(holdout, scorer)
        results = self.gates.evaluate(name, record, stage, specs, checked)
        self._refuse_on_failed_gates(name, record, str(ref), stage, results)
        if stage == "production" and self.ctx.settings.production_approval_required:
            return self._file_request(name, record, stage, reason, force, spec_texts, results)
        if checked is not None:  # scoring took a while: the move reads the holders afresh
            holders = None
        release = self._release_tag_plan(name, record, stage)
        change = self.stages.move(name, record, stage, "promote", reason=reason, gates=results,
                            detail={"forced": True} if force and current != "staging" else {},
                            holders=holders)
        return self._tag_release(change, release, reason)

    # Release tags (the release_tags setting) --------------------------------------------------
    def _release_tag_plan(self, name: str, record: VersionRecord, stage: str
                          ) -> tuple[Path, str, str] | None:
        """(repository, tag, commit) of the tag a promotion to production will make, checked
        before the move so a tag that cannot be made refuses the promotion instead of
        following it half-way. The commit is the one the version was trained at when the
        repository has it, else HEAD."""
        if stage != "production" or not self.ctx.settings.release_tags:
            return None
        base = Path(self.ctx.settings.project_root or Path.cwd())
        root = git.toplevel(base)
        if root is None:
            raise InvalidInput(f"release_tags is on, but {base} is not in a git work tree "
                               "(git init, or set release_tags = false)")
        semver = record.tags.get(T_SEMVER) or f"0.0.{record.version}"
        tag = f"{name}@v{semver}"
        if not git.valid_tag_name(root, tag):
            raise InvalidInput(f"release_tags: {tag!r} is not a valid git tag name")
        trained_at = Lineage.from_tags(record.tags).git_commit
        commit = git.commit_of(root, trained_at) or git.commit_of(root, "HEAD")
        if commit is None:
            raise InvalidInput(f"release_tags is on, but {root} has no commit to tag")
        existing = git.tag_commit(root, tag)
        if existing is not None and existing != commit:
            raise Conflict(f"git tag {tag} already exists at {existing[:12]}, not at "
                            f"{commit[:12]}: delete or move it (git tag -d {tag})")
        return root, tag, commit

    def _tag_release(self, change: StageChange, release: tuple[Path, str, str] | None,
                     reason: str | None) -> StageChange:
        if release is None or change.status != "promoted":
            return change
        root, tag, commit = release
        if git.tag_commit(root, tag) is None:
            message = f"{change.name} v{change.semver} in production (version {change.version})"
            git.create_tag(root, tag, commit, message + (f": {reason}" if reason else ""))
        change.release_tag = tag
        return change

    def _find(self, name: str, ref: str | int) -> tuple[VersionRecord, dict[str, int | None]]:
        """The version a reference names and the stage aliases' holders, looked up at once
        (one round trip on a server for a number, two for a semver)."""
        reads = self.ctx.reads
        record, *held = at_once(reads, [
            lambda: lookup(reads, name, ref),
            *[_bind(reads.alias_holder, name, s) for s in STAGE_ALIASES]])
        return record, dict(zip(STAGE_ALIASES, held, strict=True))

    def require_for_move(self, name: str, stage: str, verb: str = "promote") -> None:
        """The MLflow permission a move needs, checked before anything is written: EDIT to
        move into staging / archived / none or to ask for production, MANAGE to put a
        version in production without a request (approve, rollback, force)."""
        direct = stage == "production" and not self.ctx.settings.production_approval_required
        needed = MANAGE if direct or (verb != "promote" and stage == "production") else EDIT
        doing = ("request production" if stage == "production" and not direct
                 else f"{verb} to {stage}")
        self.ctx.permissions.require(name, needed, doing)

    def _refuse_on_failed_gates(self, name: str, record: VersionRecord, ref: str,
                                stage: str, results: list[dict[str, Any]]) -> None:
        failed = [r for r in results if not r["passed"]]
        if not failed:
            return
        reason = "; ".join(describe(r) for r in failed)
        with contextlib.suppress(YardError):
            self.audit.record(name, "gate_failed", version=record.version,
                         semver=record.tags.get(T_SEMVER), from_=record.tags.get(T_STAGE),
                         to=stage, reason=reason, gates=results)
        raise GateFailed(name=name, ref=ref, stage=stage, reason=reason)

    def _file_request(self, name: str, record: VersionRecord, stage: str,
                      reason: str | None, force: bool, gates: list[str],
                      results: list[dict[str, Any]]) -> StageChange:
        request_id = uuid.uuid4().hex[:10]
        body = {
            "id": request_id, "name": name, "version": record.version,
            "semver": record.tags.get(T_SEMVER), "stage": stage, "reason": reason,
            "force": force, "gates": gates, "gate_results": results,
            "requested_by": self.ctx.user, "requested_at": now_iso(),
        }
        self.ctx.vault.store.put_if_absent(request_key(name, request_id),
                                       json.dumps(body, indent=1).encode())
        event = self.audit.record(
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
        keys = [k for k in self.ctx.vault.store.list(REQUESTS) if k.endswith(suffix)]
        if not keys:
            raise NotFound(f"no promotion request {request_id}")
        body: dict[str, Any] = json.loads(self.ctx.vault.store.get_bytes(keys[0]))
        decision = decision_key(body["name"], request_id)
        if self.ctx.vault.store.exists(decision):
            done = json.loads(self.ctx.vault.store.get_bytes(decision))
            raise ApprovalError(
                f"request {request_id} was already {done['decision']} by {done['by']}"
            )
        return body

    def _check_approver(self, request: dict[str, Any], verb: str) -> str:
        who = self.ctx.user
        if who == request["requested_by"] and not self.ctx.settings.allow_self_approval:
            raise ApprovalError(
                f"{who} requested {request['id']} and cannot {verb} it: another user must "
                "(or set allow_self_approval)"
            )
        return who

    def _decide(self, request: dict[str, Any], decision: str, who: str,
                reason: str | None) -> None:
        body = {"decision": decision, "by": who, "at": now_iso(), "reason": reason}
        if not self.ctx.vault.store.put_if_absent(
                decision_key(request["name"], request["id"]),
                json.dumps(body).encode()):
            raise ApprovalError(f"request {request['id']} was decided by someone else just now")

    def approve(self, request_id: str, *, reason: str | None = None) -> StageChange:
        """Approve a pending promotion (by someone other than its requester): the gates are
        checked again and the version is promoted."""
        request = self._find_request(request_id)
        self.ctx.permissions.require(str(request["name"]), MANAGE, "approve production")
        who = self._check_approver(request, "approve")
        name, stage = str(request["name"]), str(request["stage"])
        record, holders = self._find(name, int(request["version"]))
        self.stages.check_move(name, record, stage, bool(request.get("force")),
                         request.get("reason") or reason)
        results = self.gates.evaluate(
            name, record, stage, self.gates.specs(stage, request.get("gates") or []), None)
        self._refuse_on_failed_gates(name, record, str(record.version), stage, results)
        self._decide(request, "approved", who, reason)
        detail = {"request_id": request_id, "requested_by": request["requested_by"],
                  "approved_by": who}
        try:
            release = self._release_tag_plan(name, record, stage)
            change = self.stages.move(name, record, stage, "approve",
                                      reason=reason or request.get("reason"), gates=results,
                                      detail=detail, holders=holders)
            return self._tag_release(change, release, reason or request.get("reason"))
        except BaseException:
            # The promotion did not happen: reopen the request.
            with contextlib.suppress(YardError):
                self.ctx.vault.store.delete(decision_key(name, request_id))
            raise

    def reject(self, request_id: str, *, reason: str) -> Decision:
        """Close a pending promotion without promoting."""
        if not (reason and reason.strip()):
            raise InvalidInput("rejecting needs a --reason")
        request = self._find_request(request_id)
        self.ctx.permissions.require(str(request["name"]), MANAGE, "reject production")
        who = self._check_approver(request, "reject")
        self._decide(request, "rejected", who, reason)
        name = str(request["name"])
        event = self.audit.record(
            name, "reject", version=int(request["version"]), semver=request.get("semver"),
            from_=None, to=request["stage"], reason=reason,
            detail={"request_id": request_id, "requested_by": request["requested_by"]},
        )
        return Decision(id=request_id, name=name, version=int(request["version"]),
                        semver=request.get("semver"), stage=str(request["stage"]),
                        status="rejected", requested_by=str(request["requested_by"]),
                        decided_by=who, reason=reason, event=event.seq, request=request)

    def requests(self, name: str | None = None) -> list[dict[str, Any]]:
        """Open promotion requests, oldest first."""
        prefix = requests_prefix(check_name(name)) if name else REQUESTS
        keys = self.ctx.vault.store.list(prefix)
        decided = {k.removesuffix(".decision.json") for k in keys
                   if k.endswith(".decision.json")}
        rows = []
        for key in keys:
            if key.endswith(".decision.json") or key.removesuffix(".json") in decided:
                continue
            rows.append(json.loads(self.ctx.vault.store.get_bytes(key)))
        return sorted(rows, key=lambda r: str(r.get("requested_at", "")))

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
        self.ctx.permissions.require(name, MANAGE if stage == "production" else EDIT,
                                     f"roll back {stage}")
        # Concurrent rollbacks are serialised by the audit trail: each decides from the
        # trail's newest event and its move takes the next slot only while that event is
        # still the newest (``StaleMove`` otherwise: decide again on the newer state).
        for _ in range(_ROLLBACK_ATTEMPTS):
            try:
                return self._rollback_once(name, stage, to, reason)
            except StaleMove:
                continue
        raise StorageError(detail=f"{name}: the audit trail kept moving; {stage} was not "
                           "rolled back (try again)")

    def _rollback_once(self, name: str, stage: str, to: str | int | None,
                       reason: str | None) -> StageChange:
        reads = self.ctx.reads  # the lean reader where it answers: no mlflow import
        last = self.audit.log(name).last()
        recorded = last.stages.get(stage) if last else None
        previous = last.stages.get(f"{stage}.previous") if last else None
        # Both stage holders by alias look-ups (a server's registered-models/get costs O(n)
        # versions), and the version to put back, all at once; the move reuses the holders.
        if to is not None:
            wanted = _attempt(lambda: lookup(reads, name, to))
        elif previous is not None:
            wanted = _attempt(lambda: reads.get_version(name, int(str(previous))))
        else:
            wanted = _attempt(lambda: None)
        *held, (found, error) = at_once(reads, [
            *[_bind(reads.alias_holder, name, s) for s in STAGE_ALIASES], wanted])
        holders: dict[str, int | None] = dict(zip(STAGE_ALIASES, held, strict=True))
        # The trail's holder is the audited one; MLflow's alias may still show a holder a
        # move in flight is about to replace.
        current = recorded if isinstance(recorded, int) else holders[stage]
        if current is None:
            reads.get_model(name)  # ModelNotFound if there is no such model
            if not isinstance(recorded, int):
                raise InvalidInput(f"{name}: no version holds {stage}; nothing to roll back")
            # The holder the trail records is gone (deleted from the registry): roll back
            # from it all the same.
            current = recorded
        if to is not None:
            if error is not None:
                raise error
            target = found
        else:
            if previous is None or previous == current:
                raise InvalidInput(
                    f"{name}: the audit trail has no earlier {stage} holder; name one with --to"
                )
            if isinstance(error, NotFound):
                raise VersionNotFound(
                    name=name, ref=f"#{previous}",
                    hint=f" (the previous {stage} holder was deleted; name one with --to)",
                ) from None
            if error is not None:
                raise error
            target = found
            if last is not None and last.action == "rollback" and (
                    last.detail.get("rolled_back") == previous):
                raise InvalidInput(
                    f"{record_label(name, target)} was rolled back from {stage} by the "
                    f"newest event ({last.seq}); name the version to put back with --to")
            if target.tags.get(T_ROLLED_BACK):
                # Rolling back twice would silently re-promote the version just rolled back.
                raise InvalidInput(
                    f"{record_label(name, target)} was rolled back from {stage} "
                    f"({target.tags[T_ROLLED_BACK]}); name the version to put back with --to"
                )
        if target.version == current:
            raise InvalidInput(f"{record_label(name, target)} already holds {stage}")
        return self.stages.move(name, target, stage, "rollback", reason=reason or "rollback",
                                rolled_back=current, holders=holders,
                                after=last.seq if last is not None else 0)


def _bind(call: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: call(*args)


def _attempt(call: Callable[[], Any]) -> Callable[[], tuple[Any, Exception | None]]:
    """``call`` as (result, None) or (None, the exception): raised later, where the
    sequential code raised it, so errors keep their order when look-ups go out at once."""

    def run() -> tuple[Any, Exception | None]:
        try:
            return call(), None
        except Exception as exc:  # noqa: BLE001 - re-raised by the caller
            return None, exc

    return run

