"""Semantic versions worked out from what changed (docs/design.md, "Semantic versions").

>>> decide_bump(Fingerprint(inputs=[("a", "double", True)]), None).bump
'initial'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from modelyard.core.names import is_semver, parse_semver
from modelyard.errors import InvalidInput, VersionConflict

Bump = Literal["initial", "major", "minor", "patch"]
FIRST_VERSION = "1.0.0"
Column = tuple[str, str, bool]  # name, type, required


@dataclass
class Fingerprint:
    """What a version is compared on."""

    inputs: list[Column] | None = None
    outputs: list[Column] | None = None
    data: dict[str, str] = field(default_factory=dict)
    model_class: str = ""
    flavor: str = ""
    params: dict[str, str] = field(default_factory=dict)
    code: str = ""  # git commit
    seed: str = ""
    data_columns: dict[str, list[str]] = field(default_factory=dict)  # path -> table header

    def schema_json(self) -> str:
        return json.dumps({"inputs": self.inputs, "outputs": self.outputs}, sort_keys=True)

    @staticmethod
    def columns_from_schema(schema: Any) -> list[Column] | None:
        """Columns of an MLflow Schema (or its dict form); None when there is none."""
        if schema is None:
            return None
        items = schema.to_dict() if hasattr(schema, "to_dict") else schema
        columns: list[Column] = []
        for index, item in enumerate(items):
            name = item.get("name") or f"[{index}]"
            kind = item.get("type", "?")
            if kind == "tensor":
                kind = f"tensor:{item.get('tensor-spec', {})}"
            columns.append((str(name), str(kind), bool(item.get("required", True))))
        return columns

    @classmethod
    def parse_schema(cls, text: str | None) -> tuple[list[Column] | None, list[Column] | None]:
        if not text:
            return None, None
        try:
            data = json.loads(text)
        except ValueError:
            return None, None

        def cols(value: Any) -> list[Column] | None:
            return None if value is None else [(str(c[0]), str(c[1]), bool(c[2])) for c in value]

        return cols(data.get("inputs")), cols(data.get("outputs"))


@dataclass
class BumpDecision:
    bump: Bump
    reason: str


def _schema_change(old: list[Column] | None, new: list[Column] | None) -> tuple[str, str] | None:
    """Return (level, reason) for an input-schema change, or None when compatible-equal."""
    if old is None or new is None:
        return None
    old_by_name = {c[0]: c for c in old}
    new_by_name = {c[0]: c for c in new}
    removed = [n for n in old_by_name if n not in new_by_name]
    if removed:
        return "major", f"input column(s) removed: {', '.join(removed)}"
    retyped = [
        f"{n} {old_by_name[n][1]} -> {new_by_name[n][1]}"
        for n in old_by_name
        if new_by_name[n][1] != old_by_name[n][1]
    ]
    if retyped:
        return "major", f"input column type changed: {', '.join(retyped)}"
    added = [n for n in new_by_name if n not in old_by_name]
    required_added = [n for n in added if new_by_name[n][2]]
    if required_added:
        return "major", f"new required input column(s): {', '.join(required_added)}"
    now_required = [n for n in old_by_name if new_by_name[n][2] and not old_by_name[n][2]]
    if now_required:
        return "major", f"input column(s) became required: {', '.join(now_required)}"
    if added:
        return "minor", f"new optional input column(s): {', '.join(added)}"
    return None


def _data_column_change(old: dict[str, list[str]], new: dict[str, list[str]]
                        ) -> tuple[str, str] | None:
    removed: list[str] = []
    added: list[str] = []
    for path in sorted(set(old) & set(new)):
        removed += [f"{c} ({path})" for c in old[path] if c not in new[path]]
        added += [f"{c} ({path})" for c in new[path] if c not in old[path]]
    if removed:
        return "major", (f"training data column(s) removed: {', '.join(removed[:5])} "
                         "(no input schema to compare)")
    if added:
        return "minor", (f"training data column(s) added: {', '.join(added[:5])} "
                         "(no input schema to compare)")
    return None


def decide_bump(new: Fingerprint, base: Fingerprint | None) -> BumpDecision:
    """Compare a new model with the version holding the highest semver so far."""
    if base is None:
        return BumpDecision("initial", "first version")
    change = _schema_change(base.inputs, new.inputs)
    if base.inputs is None or new.inputs is None:
        # No schema on one side is "unknown", not "unchanged": the training tables' headers
        # still show a column the model no longer sees.
        change = _data_column_change(base.data_columns, new.data_columns)
    if change and change[0] == "major":
        return BumpDecision("major", change[1])
    if base.outputs is not None and new.outputs is not None and base.outputs != new.outputs:
        return BumpDecision("major", "output schema changed")
    minor: list[str] = []
    if change:
        minor.append(change[1])
    if new.data != base.data and (new.data or base.data):
        changed = sorted(
            p for p in set(new.data) | set(base.data) if new.data.get(p) != base.data.get(p)
        )
        minor.append(f"training data changed: {', '.join(changed)}")
    if base.model_class and new.model_class and new.model_class != base.model_class:
        minor.append(f"model class changed: {base.model_class} -> {new.model_class}")
    elif base.flavor and new.flavor and new.flavor != base.flavor:
        minor.append(f"flavor changed: {base.flavor} -> {new.flavor}")
    if minor:
        return BumpDecision("minor", "; ".join(minor))
    patch: list[str] = []
    changed_params = sorted(
        k for k in set(new.params) | set(base.params) if new.params.get(k) != base.params.get(k)
    )
    if changed_params:
        shown = ", ".join(
            f"{k} {base.params.get(k, '-')} -> {new.params.get(k, '-')}" for k in changed_params[:5]
        )
        more = f" (+{len(changed_params) - 5} more)" if len(changed_params) > 5 else ""
        patch.append(f"hyperparameters changed: {shown}{more}")
    if new.code and base.code and new.code != base.code:
        patch.append(f"code changed: {base.code[:8]} -> {new.code[:8]}")
    if new.seed != base.seed and (new.seed or base.seed):
        patch.append(f"seed changed: {base.seed or '-'} -> {new.seed or '-'}")
    return BumpDecision("patch", "; ".join(patch) if patch else "retrain with same schema and data")


def apply_bump(highest: str | None, bump: Bump) -> str:
    if highest is None:
        return FIRST_VERSION
    current = parse_semver(highest)
    if bump == "major":
        return str(current.bump_major())
    if bump == "minor":
        return str(current.bump_minor())
    if bump in ("patch", "initial"):
        return str(current.bump_patch())
    raise InvalidInput(f"unknown bump '{bump}' (use major, minor or patch)")


def check_explicit(name: str, requested: str, highest: str | None) -> str:
    """An explicit version must be above every existing one."""
    wanted = parse_semver(requested)
    if highest is not None and wanted <= parse_semver(highest):
        raise VersionConflict(name=name, requested=str(wanted), highest=highest)
    return str(wanted)


def highest_semver(semvers: list[str]) -> str | None:
    """The highest of the given semvers (anything that is not one is ignored)."""
    parsed = [parse_semver(text) for text in semvers if is_semver(text)]
    return str(max(parsed)) if parsed else None
