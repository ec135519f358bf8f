"""Sealing: a trail written before ``audit_key`` was set, brought under the key.

Events are immutable, so old events are never re-signed: one signed ``seal`` event is
appended after the chain and its anchors are checked, and its signature (over a body that
chains to every event before it) vouches for them (``audit.check_chain``).
"""

from __future__ import annotations

from typing import Any

from modelyard.backend.identity import MANAGE
from modelyard.core.names import T_AUDIT_HEAD, check_name
from modelyard.errors import AuditTampered, InvalidInput, StorageError
from modelyard.trail.audit import SEAL, AuditEvent, Auditor, check_chain, parse_signed_head


def seal(auditor: Auditor, name: str) -> AuditEvent:
    """Bring a trail written before ``audit_key`` was set under the key: its chain and
    anchors are checked first (a damaged trail is never sealed), then one signed ``seal``
    event vouches for every event before it, and both anchors are signed."""
    key = auditor.key
    if key is None:
        raise InvalidInput("set audit_key (MODELYARD_AUDIT_KEY) before sealing a trail")
    check_name(name)
    auditor.ctx.permissions.require(name, MANAGE, "seal the audit trail")
    signed = parse_signed_head(auditor.ctx.reads.get_model(name).tags.get(T_AUDIT_HEAD))
    trail = auditor.log(name)
    events = trail.verified_events(None if signed is None else (signed[0], signed[1]))
    if not events:
        raise InvalidInput(f"{name} has no audit trail to seal")
    try:
        check_chain(name, events, key=key)
    except AuditTampered:
        pass  # unsigned (or signed with another key) before the seal: what it is for
    else:
        raise InvalidInput(f"the audit trail of {name} is signed with the key already")
    newest = events[-1]

    def build(prev: AuditEvent | None) -> dict[str, Any]:
        if prev is None or prev.seq != newest.seq:
            raise StorageError(detail=f"the audit trail of {name} moved while it was "
                               "being sealed; run it again")
        return {"action": SEAL, "reason": "existing events brought under the audit key",
                "detail": {"sealed": {"seq": newest.seq, "hash": newest.hash}},
                "stages": dict(prev.stages)}

    return auditor.append(name, build)
