"""Version references, parsed and resolved in one place.

Accepted everywhere (CLI, API, HTTP): ``3`` (MLflow version number), ``v1.2.0`` / ``1.2.0``
(semver), ``latest``, ``production`` / ``staging`` (stage), ``@name`` (any alias).

>>> VersionRef.parse("v1.2.0")
VersionRef(kind='semver', value='1.2.0', text='v1.2.0')
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from modelyard.errors import InvalidRef, VersionNotFound
from modelyard.tracking import VersionRecord

SEMVER_TAG = "modelyard.semver"
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_ALIAS = re.compile(r"^[\w-]+$")
STAGE_ALIASES = ("production", "staging")

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
        if raw.isdigit():
            if int(raw) < 1:
                raise InvalidRef(ref=raw, problem="version numbers start at 1")
            return cls("number", str(int(raw)), raw)
        match = _SEMVER.match(raw)
        if match:
            return cls("semver", ".".join(str(int(p)) for p in match.groups()), raw)
        if raw.lower() == "latest":
            return cls("latest", "latest", raw)
        alias = raw[1:] if raw.startswith("@") else raw
        if raw.lower() in ("archived", "none", "development"):
            raise InvalidRef(
                ref=raw, problem="more than one version can be in that stage; name one"
            )
        if not _ALIAS.match(alias):
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
        found = next((v for v in versions if v.tags.get(SEMVER_TAG) == ref.value), None)
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
        if v.tags.get(SEMVER_TAG):
            candidates.append("v" + v.tags[SEMVER_TAG])
        candidates.extend("@" + a for a in v.aliases)
    wanted = ref.text if ref.kind != "semver" else "v" + ref.value
    close = difflib.get_close_matches(wanted, candidates, n=3, cutoff=0.3)
    if not close:
        close = candidates[-3:]
    return "; nearest: " + ", ".join(close)
