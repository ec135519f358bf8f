"""Other tools' spellings of modelyard's settings: the seeds' config keys (accepted with a note
when they map one-to-one, else refused naming ours) and their artifact-location variables.

``config.load_settings`` runs every layer through ``translate_foreign_keys``.

>>> notes = []
>>> translate_foreign_keys({"max_model_versions": 3}, "modelyard.toml", notes)
{'max_versions': 3}
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from modelyard.core.settings import DEFAULT_BACKUP_STAGES, shorten
from modelyard.errors import ConfigError

__all__ = ["seed_artifact_location", "translate_foreign_keys"]

# Other tools' spellings of our keys ------------------------------------------------------------
_FOREIGN_RENAMED = {"max_model_versions": "max_versions", "default_model_stage": "default_stage"}
_FOREIGN_REFUSED = {
    "auto_promote_threshold": "use auto_promote = 'accuracy >= 0.85' (a metric and a threshold)",
    "s3_model_prefix": "use vault = 's3://bucket/prefix'",
    "versioning_strategy": (
        "semvers are worked out automatically; use bump/version at registration"
    ),
    "auto_register_model": "registration is explicit (Yard.register / modelyard register)",
}


@functools.cache
def _bool() -> TypeAdapter[bool]:
    """pydantic's lax bool (built on first use: only the foreign key s3_backup_enabled needs it)."""
    return TypeAdapter(bool)


def translate_foreign_keys(values: dict[str, Any], source: str,
                            notes: list[str]) -> dict[str, Any]:
    """Accept other tools' spellings that map one-to-one onto our keys (with a note); refuse
    the rest, naming ours."""
    out = dict(values)
    for key in values:
        if key in _FOREIGN_REFUSED:
            raise ConfigError(
                source=source, key=key, problem=f"not a modelyard key; {_FOREIGN_REFUSED[key]}"
            )
    for old, new in _FOREIGN_RENAMED.items():
        if old in out:
            if new in out:
                raise ConfigError(source=source, key=old, problem=f"set only {new} (both are set)")
            out[new] = out.pop(old)
            notes.append(f"{source}: {old} is deprecated; it is read as {new}")
    if "auto_increment" in out:
        try:
            increments = _bool().validate_python(out.pop("auto_increment"))
        except ValidationError:
            raise ConfigError(source=source, key="auto_increment",
                              problem="must be true or false") from None
        if not increments:
            raise ConfigError(
                source=source, key="auto_increment",
                problem="not a modelyard key; versions are always numbered automatically: "
                "choose one with bump/version at registration",
            )
        notes.append(f"{source}: auto_increment is always on (semvers are worked out at "
                     "registration); the key is ignored")
    for key in ("default_stage", "auto_promote_to", "backup_stages"):
        stages = out.get(key)
        listed = stages if isinstance(stages, list) else [stages]
        if any(isinstance(item, str) and item.lower() == "development"
               for item in listed):
            notes.append(f"{source}: {key}: MLflow's Development is read as none (a version "
                         "outside staging, production and archived)")
    if "s3_backup_enabled" in out:
        if "backup_stages" in out:
            raise ConfigError(
                source=source,
                key="s3_backup_enabled",
                problem="set only backup_stages (both are set)",
            )
        try:
            enabled = _bool().validate_python(out.pop("s3_backup_enabled"))
        except ValidationError:
            raise ConfigError(
                source=source, key="s3_backup_enabled", problem="must be true or false"
            ) from None
        out["backup_stages"] = list(DEFAULT_BACKUP_STAGES) if enabled else []
        notes.append(
            f"{source}: s3_backup_enabled is deprecated; it is read as backup_stages = "
            f"{json.dumps(out['backup_stages'])}"
        )
    return out


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def seed_artifact_location(environ: Mapping[str, str]) -> str | None:
    """The seeds' spellings of the artifact location, below ``MODELYARD_ARTIFACT_LOCATION``:
    ``MLFLOW_ARTIFACT_ROOT`` (a location, as MLflow's server flag takes it), then
    ``MLFLOW_S3_BUCKET`` (a bucket name: ``s3://BUCKET``)."""
    found = {var.upper(): value for var, value in environ.items()
             if var.upper() in ("MLFLOW_ARTIFACT_ROOT", "MLFLOW_S3_BUCKET") and value != ""}
    root = found.get("MLFLOW_ARTIFACT_ROOT")
    if root:
        return root
    bucket = found.get("MLFLOW_S3_BUCKET")
    if bucket is None:
        return None
    name = bucket.strip().removeprefix("s3://").rstrip("/")
    if not _BUCKET.fullmatch(name) or ".." in name:
        raise ConfigError(
            source="environment", key="MLFLOW_S3_BUCKET",
            problem=f"{shorten(repr(bucket))} is not an S3 bucket name (3-63 of a-z, 0-9, "
            "'.', '-'); for a prefix set MLFLOW_ARTIFACT_ROOT=s3://BUCKET/PREFIX",
        )
    return f"s3://{name}"
