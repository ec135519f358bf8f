"""The access log: who loaded which version, from where, when, and why.

::

    access/NAME/20260101T120000.123456Z-3f2a9c.json   {who, identity, host, when, version,
                                                        semver, purpose, pid}

One small object per model load (``load``, ``download``, ``serve``, ``predictor``), never per
prediction. Writing is one put of a fresh key (UTC stamp + random suffix, so keys sort by
time and never collide): no listing, no read-modify-write on the load path. A failure to
write is logged, never raised: a load does not fail because the log could not be written.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from modelyard.core.entities import Result
from modelyard.core.names import check_name
from modelyard.errors import YardError
from modelyard.store.vault import access_key, access_prefix

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context
    from modelyard.core.entities import ModelVersion

log = logging.getLogger("modelyard.access")

__all__ = ["AccessEvent", "AccessLog"]


@dataclass
class AccessEvent(Result):
    """One model load."""

    name: str
    version: int
    semver: str | None
    purpose: str
    who: str
    identity: str
    host: str
    when: str
    pid: int = 0


class AccessLog:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def record(self, mv: ModelVersion, purpose: str) -> AccessEvent | None:
        """Append one access event for a load of ``mv`` (never raises)."""
        try:
            identity = self.ctx.identity
            now = datetime.now(timezone.utc)
            event = AccessEvent(
                name=mv.name, version=int(mv.version), semver=mv.semver, purpose=purpose,
                who=identity.user, identity=identity.audit_mark, host=socket.gethostname(),
                when=now.isoformat(timespec="milliseconds"), pid=os.getpid())
            stamp = now.strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)
            self.ctx.vault.store.put_bytes(access_key(mv.name, stamp),
                                           json.dumps(event.to_dict()).encode())
            return event
        except YardError as exc:
            log.warning("access to %s not logged: %s", mv.label, exc.message)
            return None

    def events(self, name: str) -> list[AccessEvent]:
        """Every access event of a model, oldest first."""
        store = self.ctx.vault.store
        rows: list[AccessEvent] = []
        for key in sorted(store.list(access_prefix(check_name(name)))):
            if "/" in key[len(access_prefix(name)):]:
                continue
            try:
                data: dict[str, Any] = json.loads(store.get_bytes(key))
                rows.append(AccessEvent(**data))
            except (ValueError, TypeError) as exc:
                log.warning("unreadable access event %s: %s", key, exc)
        return rows
