"""Typed records of MLflow registry entities, and pure converters from MLflow's REST JSON.

Both read paths produce these: ``tracking.py`` (MLflow's client) and ``reader.py`` (the lean
REST / SQLite reader). Versions are always ``int`` here, whatever the store says (MLflow's SQL
store answers ``3``, its REST API ``"3"``).

>>> version_from_rest({"name": "churn", "version": "3", "source": "models:/m-1",
...                    "tags": [{"key": "modelyard.semver", "value": "1.2.0"}]}).version
3
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelyard.core.names import MLFLOW_STAGE, STAGE_ALIASES

MODEL_SOURCE_PREFIX = "models:/m-"


@dataclass
class VersionRecord:
    """An MLflow model version, normalised."""

    name: str
    version: int
    run_id: str | None
    source: str
    status: str
    created_ms: int
    updated_ms: int
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    model_id: str | None = None
    user_id: str | None = None
    # MLflow's (deprecated) stage field as MLflow spells it ("None", "Staging", "Production",
    # "Archived"): what models:/NAME/Production loads, whoever set it.
    current_stage: str = "None"


@dataclass
class ModelRecord:
    name: str
    description: str
    created_ms: int
    updated_ms: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    # The newest version whose MLflow stage field says each held stage ("staging",
    # "production"), as MLflow's ``latest_versions`` gives it: models:/NAME/Production loads it.
    stage_fields: dict[str, int] = field(default_factory=dict)


def stage_fields_of(latest: Any) -> dict[str, int]:
    """MLflow's ``latest_versions`` (REST objects or entities) -> ``{"production": 3, ...}``:
    the newest version of each held stage's field; the other stages are left out.

    >>> stage_fields_of([{"version": "2", "current_stage": "Production"},
    ...                  {"version": "3", "current_stage": "None"}])
    {'production': 2}
    """
    held = {MLFLOW_STAGE[s]: s for s in STAGE_ALIASES}
    found: dict[str, int] = {}
    for item in latest or []:
        if isinstance(item, Mapping):
            stage, version = item.get("current_stage"), item.get("version")
        else:
            stage, version = getattr(item, "current_stage", None), getattr(item, "version", None)
        ours = held.get(str(stage))
        if ours is not None and version is not None:
            found[ours] = max(int(version), found.get(ours, 0))
    return found


def model_id_from(source: str, model_id: str | None = None) -> str | None:
    """The logged model behind a version: its own field, else its ``models:/m-...`` source.

    MLflow's REST answers omit ``model_id``; the source of an MLflow 3 version names it.

    >>> model_id_from("models:/m-abc")
    'm-abc'
    """
    if model_id:
        return model_id
    if source.startswith(MODEL_SOURCE_PREFIX):
        return source.removeprefix("models:/")
    return None


def _int(value: Any) -> int:
    """An int from an int, a numeric string (REST int64 fields) or nothing (0)."""
    if value is None or value == "":
        return 0
    return int(value)


def _tags(items: Any) -> dict[str, str]:
    """``[{"key": k, "value": v}, ...]`` (REST) or a mapping -> ``{k: v}``."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {str(k): v for k, v in items.items()}
    return {str(item["key"]): item.get("value", "") for item in items}


def _version_aliases(items: Any) -> list[str]:
    """A version's aliases, sorted: ``["a", ...]`` (REST) or ``[{"alias": a}, ...]``."""
    if not items:
        return []
    names: Iterable[str] = (
        str(item["alias"]) if isinstance(item, Mapping) else str(item) for item in items
    )
    return sorted(names)


def _model_aliases(items: Any) -> dict[str, int]:
    """``[{"alias": a, "version": "3"}, ...]`` (REST) or ``{a: 3}`` -> ``{a: 3}``."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {str(k): int(v) for k, v in items.items()}
    return {str(item["alias"]): int(item["version"]) for item in items}


def version_from_rest(data: Mapping[str, Any]) -> VersionRecord:
    """A ``ModelVersion`` JSON object of MLflow's REST API -> ``VersionRecord``.

    Fields MLflow leaves out when unset (``description``, ``user_id``, ``run_id``, ...) become
    ``""`` or ``None`` as ``tracking.py`` gives them; aliases come sorted.
    """
    source = str(data.get("source") or "")
    return VersionRecord(
        name=str(data["name"]),
        version=int(data["version"]),
        run_id=data.get("run_id") or None,
        source=source,
        status=str(data.get("status") or ""),
        created_ms=_int(data.get("creation_timestamp")),
        updated_ms=_int(data.get("last_updated_timestamp")),
        description=str(data.get("description") or ""),
        tags=_tags(data.get("tags")),
        aliases=_version_aliases(data.get("aliases")),
        model_id=model_id_from(source, data.get("model_id") or None),
        user_id=data.get("user_id") or None,
        current_stage=str(data.get("current_stage") or "None"),
    )


def model_from_rest(data: Mapping[str, Any]) -> ModelRecord:
    """A ``RegisteredModel`` JSON object of MLflow's REST API -> ``ModelRecord``."""
    return ModelRecord(
        name=str(data["name"]),
        description=str(data.get("description") or ""),
        created_ms=_int(data.get("creation_timestamp")),
        updated_ms=_int(data.get("last_updated_timestamp")),
        tags=_tags(data.get("tags")),
        aliases=_model_aliases(data.get("aliases")),
        stage_fields=stage_fields_of(data.get("latest_versions")),
    )


def run_from_rest(data: Mapping[str, Any]) -> dict[str, Any]:
    """A ``Run`` JSON object of MLflow's REST API -> the dict ``Tracking.get_run`` returns.

    Metrics are the latest value per key (``NaN`` / ``Infinity`` arrive as strings).
    """
    info = data.get("info") or {}
    body = data.get("data") or {}
    end_time = _int(info.get("end_time")) or None  # proto2's 0 means "not ended"
    return {
        "run_id": str(info.get("run_id") or info.get("run_uuid") or ""),
        "experiment_id": str(info.get("experiment_id") or ""),
        "status": str(info.get("status") or ""),
        "start_time": _int(info.get("start_time")),
        "end_time": end_time,
        "artifact_uri": str(info.get("artifact_uri") or ""),
        "metrics": {str(m["key"]): float(m.get("value", 0.0)) for m in body.get("metrics") or []},
        "params": {str(p["key"]): p.get("value", "") for p in body.get("params") or []},
        "tags": _tags(body.get("tags")),
    }


def version_from_mlflow(mv: Any) -> VersionRecord:
    """An MLflow ``ModelVersion`` entity -> ``VersionRecord``, normalised as the REST converter
    normalises (aliases sorted, an empty ``user_id`` is ``None``). Duck-typed: needs no mlflow
    import. ``tracking.py`` can use it in place of its own ``_version_record``."""
    source = mv.source or ""
    return VersionRecord(
        name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id or None,
        source=source,
        status=str(mv.status or ""),
        created_ms=int(mv.creation_timestamp or 0),
        updated_ms=int(mv.last_updated_timestamp or 0),
        description=mv.description or "",
        tags=dict(mv.tags or {}),
        aliases=sorted(getattr(mv, "aliases", None) or []),
        model_id=model_id_from(source, getattr(mv, "model_id", None)),
        user_id=getattr(mv, "user_id", None) or None,
        current_stage=str(getattr(mv, "current_stage", None) or "None"),
    )


# -- bounded version searches ---------------------------------------------------------------
SEARCH_PAGE_MAX = 1_000  # rows one bounded search may ask for (a server answers in ~1 s)


def search_filter(name: str, *, tag: tuple[str, str] | None = None,
                  below: int | None = None) -> str:
    """The ``search_model_versions`` filter of one bounded search: the model's versions,
    numbered below ``below`` and carrying tag ``key == value`` when given. MLflow 3.x's SQL
    store (and so its REST API) accepts ``name =``, ``version_number <`` and tag equality,
    each an indexed condition.

    >>> search_filter("churn", tag=("modelyard.status", "pending"), below=7)
    "name = 'churn' AND version_number < 7 AND tags.`modelyard.status` = 'pending'"
    """
    parts = [f"name = {_quote(name)}"]
    if below is not None:
        parts.append(f"version_number < {int(below)}")
    if tag is not None:
        parts.append(f"tags.`{tag[0]}` = {_quote(tag[1])}")
    return " AND ".join(parts)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
