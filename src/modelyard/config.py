"""Configuration: arguments > environment > modelyard.toml / [tool.modelyard] > defaults.

With nothing set, modelyard runs on the embedded default: MLflow on SQLite at
``./.modelyard/mlflow.db`` with artifacts and the vault under ``./.modelyard/``.

>>> settings = load_settings(overrides={"home": "/tmp/x"})
>>> settings.tracking_uri
'sqlite:////tmp/x/mlflow.db'
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelyard.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Stage = Literal["none", "staging", "production", "archived"]
STAGES: tuple[str, ...] = ("none", "staging", "production", "archived")

_CONDITION = re.compile(r"^\s*([\w.\-]+)\s*(>=|<=|>|<|==)\s*(-?[0-9.eE+-]+)\s*$")


def parse_condition(text: str) -> tuple[str, str, float]:
    """Parse ``"accuracy >= 0.85"`` into ``("accuracy", ">=", 0.85)``."""
    match = _CONDITION.match(text)
    if not match:
        raise ValueError(f"expected 'METRIC OP NUMBER' (e.g. 'accuracy >= 0.85'), got {text!r}")
    metric, op, number = match.groups()
    try:
        return metric, op, float(number)
    except ValueError as exc:
        raise ValueError(f"'{number}' is not a number in {text!r}") from exc


class Settings(BaseModel):
    """Every setting modelyard reads. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: str = ".modelyard"
    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_location: str | None = None
    s3_endpoint_url: str | None = None
    vault: str | None = None
    backup: str | None = None
    cache_dir: str | None = None
    experiment: str = "modelyard"
    user: str | None = None
    pending_timeout: float = Field(default=120.0, gt=0)

    # Policy (names follow what MLflow users already write).
    default_stage: Stage = "none"
    auto_promote: str | None = None
    auto_promote_to: Stage = "staging"
    gates: list[str] = Field(default_factory=list)
    required_tags: dict[str, str] = Field(default_factory=dict)
    beat_production_metric: str | None = None
    beat_production_margin: float = 0.0
    max_versions: int = Field(default=0, ge=0)
    archive_old_versions: bool = True
    production_approval_required: bool = False
    allow_self_approval: bool = False
    version_format: str = "v{major}.{minor}.{patch}"
    webhooks: list[str] = Field(default_factory=list)
    webhook_secret: str | None = None

    @field_validator("default_stage", "auto_promote_to", mode="before")
    @classmethod
    def _stage_alias(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() == "development":
            return "none"
        return value.lower() if isinstance(value, str) else value

    @field_validator("auto_promote")
    @classmethod
    def _check_auto_promote(cls, value: str | None) -> str | None:
        if value:
            parse_condition(value)
        return value

    @field_validator("gates")
    @classmethod
    def _check_gates(cls, value: list[str]) -> list[str]:
        for gate in value:
            parse_condition(gate)
        return value

    @field_validator("version_format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        try:
            value.format(major=1, minor=2, patch=3)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"must use only {{major}}, {{minor}}, {{patch}}: {exc}") from exc
        return value

    # Derived locations -------------------------------------------------------------------
    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser().absolute()

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.home_path / 'mlflow.db'}"

    @property
    def is_embedded(self) -> bool:
        return self.resolved_tracking_uri.startswith(("sqlite:", "file:")) or "://" not in (
            self.resolved_tracking_uri
        )

    @property
    def resolved_artifact_location(self) -> str | None:
        if self.artifact_location:
            return self.artifact_location
        if self.is_embedded:
            return (self.home_path / "artifacts").as_uri()
        return None  # the server decides (--artifacts-destination)

    @property
    def resolved_vault(self) -> str:
        return self.vault or str(self.home_path / "vault")

    @property
    def resolved_cache_dir(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "modelyard"

    def format_version(self, semver: str) -> str:
        major, minor, patch = [*semver.split("+")[0].split("-")[0].split("."), "0", "0"][:3]
        return self.version_format.format(major=major, minor=minor, patch=patch)


_NOT_SETTINGS = {"MODELYARD_CONFIG"}
_LIST_KEYS = {"gates", "webhooks"}
_FOREIGN_ENV = {
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "registry_uri": "MLFLOW_REGISTRY_URI",
    "s3_endpoint_url": "MLFLOW_S3_ENDPOINT_URL",
}


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, var in _FOREIGN_ENV.items():
        if environ.get(var):
            values[key] = environ[var]
    for var, raw in environ.items():
        if not var.startswith("MODELYARD_") or var in _NOT_SETTINGS:
            continue
        key = var[len("MODELYARD_") :].lower()
        if key in _LIST_KEYS:
            values[key] = [part.strip() for part in raw.split(";") if part.strip()]
        elif key == "required_tags":
            pairs = (part.partition("=") for part in raw.split(";") if part.strip())
            values[key] = {k.strip(): v.strip() for k, _, v in pairs}
        else:
            values[key] = raw
    return values


def find_config_file(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """Find modelyard.toml (or [tool.modelyard] in pyproject.toml) in start or its parents."""
    for folder in [start, *start.parents]:
        own = folder / "modelyard.toml"
        if own.is_file():
            return own, _read_toml(own)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            data = _read_toml(pyproject)
            section = data.get("tool", {}).get("modelyard")
            if section is not None:
                if not isinstance(section, dict):
                    raise ConfigError(
                        source=str(pyproject), key="tool.modelyard", problem="must be a table"
                    )
                return pyproject, section
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source=str(path), key="(file)", problem=f"not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(source=str(path), key="(file)", problem=f"unreadable: {exc}") from exc


def _flatten_policy(data: dict[str, Any]) -> dict[str, Any]:
    """Accept a [policy] table as well as top-level policy keys."""
    data = dict(data)
    policy = data.pop("policy", None)
    if isinstance(policy, dict):
        data.update(policy)
    elif policy is not None:
        data["policy"] = policy  # let validation name it
    return data


def _validate_layer(values: dict[str, Any], source: str) -> None:
    try:
        Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(value)"
        problem = (
            "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix(
                "Value error, "
            )
        )
        raise ConfigError(source=source, key=key, problem=problem) from None


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve settings from all sources, each layer validated so errors name their origin."""
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    config_path = environ.get("MODELYARD_CONFIG")
    found: tuple[Path, dict[str, Any]] | None
    if config_path:
        path = Path(config_path)
        if not path.is_file():
            raise ConfigError(source=str(path), key="(file)", problem="file not found")
        found = (path, _read_toml(path))
    else:
        found = find_config_file((cwd or Path.cwd()).absolute())
    if found:
        path, data = found
        file_values = _flatten_policy(data)
        _validate_layer(file_values, str(path))
        home = file_values.get("home")
        if home and not Path(str(home)).expanduser().is_absolute():
            file_values["home"] = str(path.parent / str(home))
        merged.update(file_values)
    env_values = _env_values(environ)
    _validate_layer(env_values, "environment")
    merged.update(env_values)
    explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
    if explicit:
        _validate_layer(explicit, "arguments")
    merged.update(explicit)
    try:
        return Settings(**merged)
    except ValidationError as exc:  # pragma: no cover - each layer already passed
        raise ConfigError(source="configuration", key="(merged)", problem=str(exc)) from None
