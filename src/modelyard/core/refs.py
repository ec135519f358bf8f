"""Version references, parsed and resolved in one place.

Accepted everywhere (CLI, API, HTTP): ``3`` (MLflow version number), ``v1.2.0`` / ``1.2.0``
(semver), ``latest``, ``production`` / ``staging`` (stage), ``@name`` (any alias).

>>> VersionRef.parse("v1.2.0")
VersionRef(kind='semver', value='1.2.0', text='v1.2.0')
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from modelyard.core.names import (
    ALIAS,
    MAX_VERSION_NUMBER,
    SEMVER,
    STAGE_ALIASES,
    STATUS_PENDING,
    T_SEMVER,
    T_STATUS,
    check_name,
)
from modelyard.core.records import VersionRecord
from modelyard.errors import InvalidRef, ModelNotFound, NotFound, VersionNotFound


class Source(Protocol):
    """What answers a look-up: MLflow's client (``Tracking``) or the lean reader."""

    def get_version(self, name: str, version: int) -> VersionRecord: ...

    def alias_holder(self, name: str, alias: str) -> int | None: ...

    def versions(self, name: str) -> list[VersionRecord]: ...

RefKind = Literal["number", "semver", "latest", "alias"]


@dataclass(frozen=True)
class VersionRef:
    kind: RefKind
    value: str
    text: str

    @classmethod
    def parse(cls, text: str | int) -> VersionRef:
        raw = str(text).strip()
        if not raw:
            raise InvalidRef(ref=raw, problem="empty")
        if len(raw) > 256:
            raise InvalidRef(ref=raw[:40] + "...", problem="too long")
        # Decimal digits of any script ('3', '٣') are a version number, as MLflow's int()
        # reads them; '²' passes str.isdigit but is no decimal digit (an alias at most).
        if raw.isdecimal():
            if len(raw) > 13 or not 1 <= int(raw) <= MAX_VERSION_NUMBER:
                raise InvalidRef(ref=raw[:20], problem="version numbers run from 1 to "
                                 f"{MAX_VERSION_NUMBER}")
            return cls("number", str(int(raw)), raw)
        match = SEMVER.match(raw)
        if match:
            return cls("semver", ".".join(str(int(p)) for p in match.groups()), raw)
        if raw.lower() == "latest":
            return cls("latest", "latest", raw)
        alias = raw[1:] if raw.startswith("@") else raw
        if raw.lower() in ("archived", "none", "development"):
            raise InvalidRef(
                ref=raw, problem="more than one version can be in that stage; name one"
            )
        if not ALIAS.match(alias):
            raise InvalidRef(
                ref=raw,
                problem="expected a number, a semver (v1.2.0), latest, production, staging "
                "or @alias",
            )
        return cls("alias", alias.lower() if alias.lower() in STAGE_ALIASES else alias, raw)


def split_target(target: str) -> tuple[str, str | None]:
    """``churn@v1.2.0`` -> ("churn", "v1.2.0"); ``churn`` -> ("churn", None)."""
    name, sep, ref = target.partition("@")
    if not name:
        raise InvalidRef(ref=target, problem="no model name before '@'")
    if sep and not ref:
        raise InvalidRef(ref=target, problem="nothing after '@'")
    return name, (ref if sep else None)


def resolve(name: str, ref: VersionRef, versions: list[VersionRecord]) -> VersionRecord:
    """Pick the version a reference names from a model's visible versions."""
    found: VersionRecord | None = None
    if ref.kind == "number":
        found = next((v for v in versions if v.version == int(ref.value)), None)
    elif ref.kind == "semver":
        found = next((v for v in versions if v.tags.get(T_SEMVER) == ref.value), None)
    elif ref.kind == "latest":
        found = max(versions, key=lambda v: v.version, default=None)
    else:
        found = next((v for v in versions if ref.value in v.aliases), None)
    if found is None:
        raise VersionNotFound(name=name, ref=ref.text, hint=_hint(ref, versions))
    return found


def _hint(ref: VersionRef, versions: list[VersionRecord]) -> str:
    if not versions:
        return " (the model has no versions)"
    candidates: list[str] = []
    for v in versions:
        candidates.append(str(v.version))
        if v.tags.get(T_SEMVER):
            candidates.append("v" + v.tags[T_SEMVER])
        candidates.extend("@" + a for a in v.aliases)
    wanted = ref.text if ref.kind != "semver" else "v" + ref.value
    close = difflib.get_close_matches(wanted, candidates, n=3, cutoff=0.3)
    if not close:
        close = candidates[-3:]
    return "; nearest: " + ", ".join(close)


def is_visible(record: VersionRecord) -> bool:
    """A version is registered once its last tag (status=ready) is written."""
    return record.tags.get(T_STATUS) != STATUS_PENDING


def lookup(source: Source, name: str, ref: str | int | None) -> VersionRecord:
    """Resolve a reference without listing every version where the source can avoid it:
    numbers and aliases directly (on a server, an alias in one call that answers the whole
    version); with the lean reader, semvers through an indexed tag look-up and ``latest``
    through a bounded search. Anything else, and every miss, falls
    back to the model's visible versions (with the full, helpful error when nothing matches).
    """
    check_name(name)
    parsed = VersionRef.parse(ref if ref is not None else "latest")
    try:
        found: VersionRecord | None = None
        if parsed.kind == "number":
            found = source.get_version(name, int(parsed.value))
        elif parsed.kind == "alias" and _has(source, "alias_version"):
            found = _call(source, "alias_version", name, parsed.value)  # one call, whole
        elif parsed.kind == "alias":
            number = source.alias_holder(name, parsed.value)
            found = source.get_version(name, number) if number is not None else None
        elif parsed.kind == "semver" and _has(source, "version_by_tag"):
            found = _call(source, "version_by_tag", name, T_SEMVER, parsed.value)
        elif parsed.kind == "latest" and _has(source, "latest_visible"):
            found = _call(source, "latest_visible", name)
        if found is not None and is_visible(found):
            return found
    except NotFound as exc:
        if isinstance(exc, ModelNotFound):
            raise
    visible = [v for v in source.versions(name) if is_visible(v)]
    return resolve(name, parsed, visible)


def _has(source: object, method: str) -> bool:
    return callable(getattr(source, method, None))


def _call(source: object, method: str, *args: Any) -> VersionRecord | None:
    found: VersionRecord | None = getattr(source, method)(*args)
    return found
