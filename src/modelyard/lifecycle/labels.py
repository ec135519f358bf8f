"""User tags on versions (the ``modelyard.`` namespace stays modelyard's), audited."""

from __future__ import annotations

from modelyard.context import Context
from modelyard.core.entities import TagChange
from modelyard.core.names import T_SEMVER, check_tag_key, label
from modelyard.core.refs import lookup
from modelyard.errors import InvalidInput
from modelyard.trail.audit import Auditor


class Labels:
    def __init__(self, ctx: Context, audit: Auditor) -> None:
        self.ctx = ctx
        self.tracking = ctx.tracking
        self.audit = audit

    def set_tag(self, name: str, ref: str | int, key: str, value: str
                ) -> TagChange:
        """Set a user tag on a version (the ``modelyard.`` namespace is reserved)."""
        check_tag_key(key)
        record = lookup(self.tracking, name, ref)
        previous = record.tags.get(key)
        self.tracking.set_version_tags(name, record.version, {key: str(value)})
        event = self.audit.record(name, "tag", version=record.version,
                             semver=record.tags.get(T_SEMVER), from_=None, to=None,
                             reason=None, detail={"key": key, "value": str(value), "op": "set",
                                                  "previous": previous})
        return TagChange(name=name, version=record.version, key=key,
                         semver=record.tags.get(T_SEMVER), value=str(value), previous=previous,
                         event=event.seq)

    def remove_tag(self, name: str, ref: str | int, key: str) -> TagChange:
        check_tag_key(key)
        record = lookup(self.tracking, name, ref)
        if key not in record.tags:
            shown = label(name, record.tags.get(T_SEMVER), record.version)
            raise InvalidInput(f"{shown} has no tag {key!r}; nothing changed")
        self.tracking.delete_version_tag(name, record.version, key)
        event = self.audit.record(name, "tag", version=record.version,
                             semver=record.tags.get(T_SEMVER), from_=None, to=None,
                             reason=None, detail={"key": key, "op": "delete",
                                                  "previous": record.tags[key]})
        return TagChange(name=name, version=record.version, key=key, deleted=True,
                         event=event.seq)
