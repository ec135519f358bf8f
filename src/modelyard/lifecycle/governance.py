"""``yard.governance``: who modelyard acts as, who loaded what, who signed a version, and
stage holders that no audit event explains (moves made around modelyard), found and undone."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from modelyard.core.names import STAGE_ALIASES

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.backend.identity import Identity
    from modelyard.context import Context
    from modelyard.lifecycle.stages import StageChange, Stages
    from modelyard.lifecycle.unaudited import UnauditedHolder, UnauditedMoves
    from modelyard.trail.access import AccessEvent, AccessLog
    from modelyard.trail.audit import AuditEvent, Auditor


class Governance:
    """Identity, the access log, and unaudited stage moves."""

    def __init__(self, ctx: Context, audit: Auditor, stages: Stages) -> None:
        self.ctx = ctx
        self.audit = audit
        self.stages = stages

    @functools.cached_property
    def moves(self) -> UnauditedMoves:
        from modelyard.lifecycle.unaudited import UnauditedMoves

        return UnauditedMoves(self.ctx, self.audit, self.stages)

    @functools.cached_property
    def access(self) -> AccessLog:
        from modelyard.trail.access import AccessLog

        return AccessLog(self.ctx)

    def identity(self) -> Identity:
        """Who modelyard acts as, and how that was established (``backend/identity.py``)."""
        return self.ctx.identity

    def access_log(self, name: str) -> list[AccessEvent]:
        """Every load of the model's versions (who, host, when, version, purpose)."""
        return self.access.events(name)

    def seal_trail(self, name: str) -> AuditEvent:
        """Bring a trail written before ``audit_key`` was set under the key (one signed
        ``seal`` event, after the chain is checked; MANAGE)."""
        from modelyard.trail.seal import seal

        return seal(self.audit, name)

    def sign(self, name: str, ref: str | int) -> AuditEvent:
        """Sign an existing version with ``signing_key`` (MANAGE; audited): its manifest, read
        from the vault and checked against the version's tag, gets a signature there and the
        version the ``modelyard.signer`` tag. The audit event names the key id."""
        from modelyard.backend.identity import MANAGE
        from modelyard.core.names import T_MANIFEST, T_SEMVER, T_SIGNER, T_STAGE
        from modelyard.core.refs import lookup
        from modelyard.errors import InvalidInput

        signatures = self.ctx.signatures
        if not signatures.signing:
            raise InvalidInput("set signing_key (or MODELYARD_SIGNING_KEY) to the PEM file of "
                               "an EC private key to sign with")
        record = lookup(self.ctx.reads, name, ref)
        semver = record.tags.get(T_SEMVER)
        if not semver or not record.tags.get(T_MANIFEST):
            raise InvalidInput(f"{name} #{record.version} is not managed by modelyard; "
                               "`adopt` it first")
        self.ctx.permissions.require(name, MANAGE, "sign a version")
        manifest = self.ctx.vault.read_manifest(name, record.version,
                                                record.tags[T_MANIFEST], semver)
        key_id = signatures.sign(name, manifest)
        self.ctx.tracking.set_version_tags(name, record.version, {T_SIGNER: key_id})
        return self.audit.record(name, "sign", version=record.version, semver=semver,
                                 from_=record.tags.get(T_STAGE), to=record.tags.get(T_STAGE),
                                 reason=f"signed by key {key_id[:16]}",
                                 detail={"signer": key_id})

    def unaudited(self, name: str | None = None) -> list[UnauditedHolder]:
        """Stage holders no audit event explains (aliases or ``modelyard.stage`` tags moved
        around modelyard), for one model or all. A webhook fires for each new finding."""
        return self.moves.find(name)

    def check_unaudited(self, name: str | None = None) -> None:
        """Raise ``UnauditedMove`` naming the first unaudited holder (for ``verify --all``,
        ``health`` and ``history --verify``)."""
        self.moves.check(name)

    def undo_unaudited(self, name: str) -> list[StageChange]:
        """Put back the last audited holders of a model's stages moved around modelyard
        (audited moves, reason "undo unaudited move")."""
        return self.moves.undo(name)

    def serving_holder(self, name: str, alias: str, *, follow_unaudited: bool = False
                       ) -> int | None:
        """The version a server should follow for an alias now: for a stage alias moved
        without an audit event, the audited holder (unless ``follow_unaudited``)."""
        live = self.ctx.tracking.alias_holder(name, alias)
        if alias in STAGE_ALIASES and not follow_unaudited:
            from modelyard.lifecycle.unaudited import holder_for_serving

            return holder_for_serving(self.ctx, self.audit, name, alias, live)
        return live
