"""Configuration: arguments > environment > modelyard.toml / [tool.modelyard] > defaults.

With nothing set, modelyard runs on the embedded default: MLflow on SQLite at
``<project root>/.modelyard/mlflow.db`` with artifacts and the vault beside it. The project
root is the nearest folder upwards holding ``modelyard.toml`` or a ``pyproject.toml`` with a
``[tool.modelyard]`` table (as git and DVC find theirs); without one, the working folder.

Each layer is validated on its own, so an error names where the bad value came from
(``modelyard.toml: colour: unknown key``, ``environment: max_versions: ...``). Relative
paths are anchored where they were written: in a config file, at that file's folder; in
the environment or arguments, at the working folder. Nothing here reads the process's
environment except through the ``environ`` mapping given to :func:`load_settings`.

>>> settings = load_settings(overrides={"home": "/tmp/x"}, environ={})
>>> settings.resolved_tracking_uri
'sqlite:////tmp/x/mlflow.db'
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import string
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo

from modelyard.core.names import Stage
from modelyard.errors import ConfigError

CONFIG_FILE = "modelyard.toml"
_ENV_PREFIX = "MODELYARD_"
# Variables of the MODELYARD_ namespace that are not settings (read where they are used).
_NOT_SETTINGS = {"MODELYARD_CONFIG", "MODELYARD_SERVE_TOKEN"}
_MAX_CONFIG_BYTES = 1 << 20
_MAX_FORMAT_LENGTH = 100
_MAX_FORMAT_DIGITS = 2  # width and precision up to 99: rendering stays cheap
_MAX_PROBLEM_LENGTH = 300

_CONDITION = re.compile(r"^\s*([\w.\-]+)\s*(>=|<=|>|<|==)\s*(-?[0-9.eE+-]+)\s*$")
# [[fill]align][sign][z][#][0][width][grouping][.precision][type], as str.format reads it.
_FORMAT_SPEC = re.compile(
    r"(?:.?[<>=^])?[+\- ]?z?#?0?(?P<width>[0-9]*)[,_]?(?:\.(?P<precision>[0-9]*))?"
    r"[bcdeEfFgGnosxX%]?",
    re.DOTALL,
)
_VERSION_FIELDS = ("major", "minor", "patch")
_DEFAULT_BACKUP_STAGES: tuple[Stage, ...] = ("staging", "production")


def parse_condition(text: str) -> tuple[str, str, float]:
    """Parse ``"accuracy >= 0.85"`` into ``("accuracy", ">=", 0.85)``; the number must be finite.

    >>> parse_condition("accuracy >= 0.85")
    ('accuracy', '>=', 0.85)
    """
    match = _CONDITION.match(text)
    if not match:
        raise ValueError(
            f"expected 'METRIC OP NUMBER' (e.g. 'accuracy >= 0.85'), got {_shorten(repr(text))}"
        )
    metric, op, number = match.groups()
    try:
        value = float(number)
    except ValueError as exc:
        raise ValueError(f"'{_shorten(number)}' is not a number in {_shorten(repr(text))}") from exc
    if not math.isfinite(value):
        raise ValueError(f"'{_shorten(number)}' is not a finite number in {_shorten(repr(text))}")
    return metric, op, value


def _check_version_format(value: str) -> None:
    """Refuse a display format that is not plain ``{major}``/``{minor}``/``{patch}`` fields.

    The spec is checked without rendering it, so ``{major:99999999}`` costs nothing.
    """
    if len(value) > _MAX_FORMAT_LENGTH:
        raise ValueError(f"must be at most {_MAX_FORMAT_LENGTH} characters")
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(f"not a format string: {exc}") from None
    for _literal, field, spec, _conversion in parts:
        if field is None:
            continue
        if field not in _VERSION_FIELDS:
            raise ValueError(f"must use only {{major}}, {{minor}}, {{patch}}, not {{{field}}}")
        spec = spec or ""
        match = _FORMAT_SPEC.fullmatch(spec)
        if "{" in spec or match is None:
            raise ValueError(f"{{{field}:{spec}}} is not a format spec for a number")
        if any(len(match[part] or "") > _MAX_FORMAT_DIGITS for part in ("width", "precision")):
            raise ValueError(f"{{{field}:{spec}}}: width and precision must be below 100")
    try:
        value.format(major=1, minor=2, patch=3)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot show a version with it: {exc}") from None


def _lower_stage(value: Any) -> Any:
    if isinstance(value, str):
        return "none" if value.lower() == "development" else value.lower()
    return value


# Settings that name a local path (anchored at the project root; no NUL).
_PATH_KEYS = ("home", "vault", "backup", "cache_dir", "artifact_location")


class Settings(BaseModel):
    """Every setting modelyard reads. Unknown keys are refused; built by :func:`load_settings`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: str = ".modelyard"
    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_location: str | None = None
    s3_endpoint_url: str | None = None
    vault: str | None = None
    backup: str | None = None
    # The backup store's own S3 endpoint and AWS profile (default: the vault's endpoint and
    # the default credential chain), so it can live on another provider or account.
    backup_endpoint_url: str | None = None
    backup_profile: str | None = None
    cache_dir: str | None = None
    experiment: str = "modelyard"
    user: str | None = None
    pending_timeout: float = Field(default=120.0, gt=0, allow_inf_nan=False)
    http_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    http_retries: int = Field(default=2, ge=0, le=10)
    serve_poll_interval: float = Field(default=5.0, gt=0, allow_inf_nan=False)

    # Policy (names follow what MLflow users already write).
    default_stage: Stage = "none"
    auto_promote: str | None = None
    auto_promote_to: Stage = "staging"
    gates: list[str] = Field(default_factory=list)
    required_tags: dict[str, str] = Field(default_factory=dict)
    beat_production_metric: str | None = None
    beat_production_margin: float = Field(default=0.0, allow_inf_nan=False)
    max_versions: int = Field(default=0, ge=0, le=1_000_000)
    archive_old_versions: bool = True
    production_approval_required: bool = False
    allow_self_approval: bool = False
    version_format: str = "v{major}.{minor}.{patch}"
    backup_stages: list[Stage] = Field(default_factory=lambda: list(_DEFAULT_BACKUP_STAGES))
    webhooks: list[str] = Field(default_factory=list)
    webhook_secret: str | None = Field(default=None, repr=False)
    audit_key: SecretStr | None = None

    # Set by load_settings; not keys anyone can write.
    _project_root: str | None = PrivateAttr(default=None)
    _notes: tuple[str, ...] = PrivateAttr(default=())
    _cache_home: str | None = PrivateAttr(default=None)

    @field_validator("default_stage", "auto_promote_to", mode="before")
    @classmethod
    def _stage_alias(cls, value: Any) -> Any:
        return _lower_stage(value)

    @field_validator("backup_stages", mode="before")
    @classmethod
    def _stage_aliases(cls, value: Any) -> Any:
        return [_lower_stage(item) for item in value] if isinstance(value, list) else value

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

    @field_validator(*_PATH_KEYS)
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("a path cannot hold a NUL character")
        return value

    @field_validator("version_format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        _check_version_format(value)
        return value

    # Where the settings came from ----------------------------------------------------------
    @property
    def project_root(self) -> str | None:
        """The folder holding the config file in use (None: no project, the working folder)."""
        return self._project_root

    @property
    def notes(self) -> tuple[str, ...]:
        """Things worth telling the user (deprecated keys accepted); the CLI prints them."""
        return self._notes

    # Derived locations -------------------------------------------------------------------
    @property
    def home_path(self) -> Path:
        # load_settings always stores an absolute home; a Settings built by hand with a
        # relative one falls back on the process's working folder.
        return _expand(self.home).absolute()

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
            return _expand(self.cache_dir)
        if self._cache_home:
            return Path(self._cache_home) / "modelyard"
        # A Settings built by hand: the process's own environment is the default one.
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "modelyard"

    def format_version(self, semver: str) -> str:
        """Show a semver with ``version_format`` (``"1.2.3"`` -> ``"v1.2.3"`` by default)."""
        parts = [*semver.split("+")[0].split("-")[0].split("."), "0", "0"][:3]
        numbers: dict[str, int | str] = {
            field: int(part) if part.isascii() and part.isdigit() and len(part) < 19 else part
            for field, part in zip(_VERSION_FIELDS, parts, strict=True)
        }
        try:
            return self.version_format.format(**numbers)
        except (ValueError, TypeError):  # a non-numeric part under a numeric spec
            return "v" + ".".join(parts)


# The environment ----------------------------------------------------------------------------
# pydantic-settings reads the environment. It is imported (and its classes built) only when
# the environment holds a variable it would read: a command on the embedded default with
# nothing set skips its import (asyncio, argparse, every source provider).
_MLFLOW_KEYS = ("tracking_uri", "registry_uri", "s3_endpoint_url")


@functools.cache
def _environment_sources() -> tuple[type[Any], type[Any], type[Any], type[Exception]]:
    """(environment of Settings, MLflow's variables, the mapping source, SettingsError)."""
    from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
    from pydantic_settings import SettingsError as PydanticSettingsError

    class _ModelyardEnvironment(Settings, BaseSettings):  # type: ignore[misc]
        """Where pydantic-settings looks: ``MODELYARD_<KEY>`` for every key of Settings."""

        model_config = SettingsConfigDict(env_prefix=_ENV_PREFIX, case_sensitive=False)

    class _MlflowEnvironment(BaseSettings):
        """MLflow's own variables for the keys they mean (``MODELYARD_*`` wins over them)."""

        model_config = SettingsConfigDict(env_prefix="MLFLOW_", case_sensitive=False)

        tracking_uri: str | None = None
        registry_uri: str | None = None
        s3_endpoint_url: str | None = None

    class _MappingEnvSource(EnvSettingsSource):
        """pydantic-settings' environment source over a given mapping instead of
        ``os.environ``. Lists and tables are JSON (``["a", "b"]``) or, as before, ``a;b`` and
        ``k=v;k2=v2``. An empty variable counts as unset."""

        def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]
                     ) -> None:
            self._environ = environ
            super().__init__(settings_cls, env_ignore_empty=True)

        def _load_env_vars(self) -> Mapping[str, str | None]:
            return {var.lower(): value for var, value in self._environ.items() if value != ""}

        def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
            return _decode_complex(field_name, value)

    return _ModelyardEnvironment, _MlflowEnvironment, _MappingEnvSource, PydanticSettingsError


def _decode_complex(field_name: str, value: Any) -> Any:
    text = str(value).strip()
    if text.startswith(("[", "{", '"')):
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ConfigError(
                source="environment", key=field_name, problem=f"not valid JSON: {problem}"
            ) from None
    parts = [part.strip() for part in text.split(";") if part.strip()]
    if field_name == "required_tags":
        pairs = (part.partition("=") for part in parts)
        return {key.strip(): tag.strip() for key, _, tag in pairs}
    return parts


def _read_by_pydantic_settings(environ: Mapping[str, str]) -> bool:
    """Whether the environment holds a non-empty variable pydantic-settings would read."""
    wanted = {f"{_ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    wanted |= {f"MLFLOW_{name}".upper() for name in _MLFLOW_KEYS}
    return any(value != "" and var.upper() in wanted for var, value in environ.items())


def _read_environment(environ: Mapping[str, str], notes: list[str]) -> dict[str, Any]:
    source = "environment"
    known = {f"{_ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    others: dict[str, Any] = {}
    for var, raw in environ.items():
        upper = var.upper()
        ours = upper.startswith(_ENV_PREFIX) and upper not in _NOT_SETTINGS
        if ours and upper not in known and raw != "":
            others[upper[len(_ENV_PREFIX):].lower()] = raw
    others = _translate_seed_keys(others, source, notes)
    unknown = sorted(set(others) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(source=source, key=_show_key(unknown[0]), problem="unknown key")
    values: dict[str, Any] = {}
    own: dict[str, Any] = {}
    if _read_by_pydantic_settings(environ):
        modelyard_env, mlflow_env, mapping_source, settings_error = _environment_sources()
        try:
            values = dict(mapping_source(mlflow_env, environ)())
            own = mapping_source(modelyard_env, environ)()
        except settings_error as exc:  # pragma: no cover - decoding errors are ConfigErrors
            raise ConfigError(source=source, key="(value)", problem=_one_line(str(exc))
                              ) from None
    clash = sorted(set(others) & set(own))
    if clash:
        raise ConfigError(
            source=source, key=clash[0], problem="set twice (by a seed-style key too)"
        )
    values.update(others)
    values.update(own)
    return values


# Seed-style keys ----------------------------------------------------------------------------
_SEED_RENAMED = {"max_model_versions": "max_versions", "default_model_stage": "default_stage"}
_SEED_REFUSED = {
    "auto_promote_threshold": "use auto_promote = 'accuracy >= 0.85' (a metric and a threshold)",
    "s3_model_prefix": "use vault = 's3://bucket/prefix'",
    "versioning_strategy": (
        "semvers are worked out automatically; use bump/version at registration"
    ),
    "auto_register_model": "registration is explicit (Yard.register / modelyard register)",
}


@functools.cache
def _bool() -> TypeAdapter[bool]:
    """pydantic's lax bool (built on first use: only the seeds' s3_backup_enabled needs it)."""
    return TypeAdapter(bool)


def _translate_seed_keys(values: dict[str, Any], source: str, notes: list[str]) -> dict[str, Any]:
    """Accept the seeds' keys that map one-to-one (with a note); refuse the rest, naming ours."""
    out = dict(values)
    for key in values:
        if key in _SEED_REFUSED:
            raise ConfigError(
                source=source, key=key, problem=f"not a modelyard key; {_SEED_REFUSED[key]}"
            )
    for old, new in _SEED_RENAMED.items():
        if old in out:
            if new in out:
                raise ConfigError(source=source, key=old, problem=f"set only {new} (both are set)")
            out[new] = out.pop(old)
            notes.append(f"{source}: {old} is deprecated; it is read as {new}")
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
        out["backup_stages"] = list(_DEFAULT_BACKUP_STAGES) if enabled else []
        notes.append(
            f"{source}: s3_backup_enabled is deprecated; it is read as backup_stages = "
            f"{json.dumps(out['backup_stages'])}"
        )
    return out


# Config files -------------------------------------------------------------------------------
def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # an unsearchable folder (or a NUL in a name): nothing here
        return False


def _find(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest config file from start upwards, with its modelyard settings."""
    start = start.resolve()  # lexical parents of "." or "a/.." are not the folders above
    for folder in [start, *start.parents]:
        own = folder / CONFIG_FILE
        if _is_file(own):
            return own, _read_toml(own)
        pyproject = folder / "pyproject.toml"
        if _is_file(pyproject):
            section = _pyproject_section(pyproject, required=False)
            if section is not None:
                return pyproject, section
    return None


def find_project_root(start: Path) -> Path | None:
    """The nearest folder from start upwards (start included) that holds modelyard.toml or a
    pyproject.toml with [tool.modelyard]; None outside any project."""
    found = _find(start)
    return found[0].parent if found else None


def find_config_file(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """Find modelyard.toml (or [tool.modelyard] in pyproject.toml) in start or its parents."""
    return _find(start)


def _pyproject_section(path: Path, *, required: bool) -> dict[str, Any] | None:
    raw = _read_bytes(path)
    if not required and b"modelyard" not in raw:
        return None  # somebody else's pyproject.toml: not ours to parse, or to refuse
    data = _parse_toml(raw, path)
    tool = data.get("tool")
    section = tool.get("modelyard") if isinstance(tool, dict) else None
    if section is None:
        if required:
            raise ConfigError(source=_source(path), key="tool.modelyard", problem="no such table")
        return None
    if not isinstance(section, dict):
        raise ConfigError(source=_source(path), key="tool.modelyard", problem="must be a table")
    return section


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            source=_source(path), key="(file)", problem=f"unreadable: {exc.strerror or exc}"
        ) from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(source=_source(path), key="(file)", problem="larger than 1 MiB")
    return raw


def _parse_toml(raw: bytes, path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):  # imported here: most commands find no config file
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source=_source(path), key="(file)", problem=f"not valid UTF-8 (byte {exc.start})"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = f"not valid TOML: {_one_line(str(exc))}"
    except RecursionError:
        problem = "not valid TOML: nested too deeply"
    except ValueError as exc:  # Python's limit on the digits of an integer
        problem = f"not valid TOML: {_one_line(str(exc).split(':')[0])}"
    raise ConfigError(source=_source(path), key="(file)", problem=problem)


def _read_toml(path: Path) -> dict[str, Any]:
    return _parse_toml(_read_bytes(path), path)


def _flatten_policy(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Accept a [policy] table as well as top-level policy keys."""
    data = dict(data)
    policy = data.pop("policy", None)
    if isinstance(policy, dict):
        data.update(policy)
    elif policy is not None:
        raise ConfigError(source=source, key="policy", problem="must be a table")
    return data


# Layers -------------------------------------------------------------------------------------


def _anchor_paths(values: dict[str, Any], base: Path, user_home: str | None) -> None:
    """Make relative local paths absolute against base (URIs are left alone)."""
    for key in _PATH_KEYS:
        value = values.get(key)
        if not isinstance(value, str) or not value or "://" in value or value.startswith("file:"):
            continue
        values[key] = str(_local_path(value, base, user_home))


def _expand(value: str) -> Path:
    try:
        return Path(value).expanduser()
    except (RuntimeError, ValueError):
        # "~name" of a user this machine does not know, or a NUL after "~": a plain name
        # (a file by that name is never found; a path setting refuses the NUL itself)
        return Path(value)


def _local_path(value: str, base: Path, user_home: str | None) -> Path:
    """``~`` expanded with the given home, then anchored at base if still relative."""
    if user_home and (value == "~" or value.startswith("~/")):
        path = Path(user_home) / value[2:]
    else:
        path = _expand(value)
    return path if path.is_absolute() else base / path


def _user_home(environ: Mapping[str, str]) -> str | None:
    """The user's home folder, from the given environment (else the password database)."""
    home = environ.get("HOME") or environ.get("USERPROFILE")
    if home:
        return home
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError, AttributeError):  # pragma: no cover - Windows, odd systems
        return None


def _one_line(text: str) -> str:
    return _shorten(" ".join(text.split()))


def _shorten(text: str) -> str:
    if len(text) <= _MAX_PROBLEM_LENGTH:
        return text
    return text[: _MAX_PROBLEM_LENGTH - 3] + "..."


def _source(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() else repr(text)


def _show_key(key: str) -> str:
    return _shorten(key if key and key.isprintable() else repr(key))


def _validate_layer(values: dict[str, Any], source: str) -> None:
    try:
        Settings(**values)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        key = ".".join(_show_key(str(part)) for part in first["loc"]) or "(value)"
        if first["type"] == "extra_forbidden":
            problem = "unknown key"
        else:
            problem = _one_line(first["msg"].removeprefix("Value error, "))
        raise ConfigError(source=source, key=key, problem=problem) from None


def _config_layer(
    environ: Mapping[str, str], cwd: Path, user_home: str | None
) -> tuple[Path | None, Path | None, dict[str, Any]]:
    """The config file in use (named by MODELYARD_CONFIG, or found upwards from cwd)."""
    named = environ.get("MODELYARD_CONFIG")
    if named:
        path = _local_path(named, cwd, user_home)
        if not _is_file(path):
            raise ConfigError(source=_source(path), key="(file)", problem="file not found")
        path = path.resolve()  # no "..": its folder is the root
        if path.name == "pyproject.toml":
            data = _pyproject_section(path, required=True) or {}
        else:
            data = _read_toml(path)
        return path, path.parent, data
    found = _find(cwd)
    if found is None:
        return None, None, {}
    return found[0], found[0].parent, found[1]


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve settings from all sources, each layer validated so errors name their origin.

    ``environ`` defaults to ``os.environ`` (only read); ``cwd`` to the working folder, which
    is the only thing here that depends on the process.
    """
    environ = os.environ if environ is None else environ
    cwd = (Path.cwd() if cwd is None else cwd).resolve()  # physical, as os.getcwd() gives
    user_home = _user_home(environ)
    notes: list[str] = []
    merged: dict[str, Any] = {}

    path, root, data = _config_layer(environ, cwd, user_home)
    if path is not None and root is not None:
        source = _source(path)
        file_values = _translate_seed_keys(_flatten_policy(data, source), source, notes)
        _validate_layer(file_values, source)
        _anchor_paths(file_values, root, user_home)
        merged.update(file_values)

    env_values = _read_environment(environ, notes)
    _validate_layer(env_values, "environment")
    _anchor_paths(env_values, cwd, user_home)
    merged.update(env_values)

    explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
    if explicit:
        explicit = _translate_seed_keys(explicit, "arguments", notes)
        _validate_layer(explicit, "arguments")
        _anchor_paths(explicit, cwd, user_home)
    merged.update(explicit)

    # The embedded home: at the project root, so a subfolder opens the same registry.
    merged.setdefault("home", ".modelyard")
    _anchor_paths(merged, root or cwd, user_home)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:  # pragma: no cover - each layer already passed
        first = exc.errors(include_url=False, include_input=False)[0]
        raise ConfigError(
            source="configuration", key="(merged)", problem=_one_line(first["msg"])
        ) from None
    settings._project_root = str(root) if root is not None else None
    settings._notes = tuple(notes)
    xdg = environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        settings._cache_home = xdg
    elif user_home:
        settings._cache_home = str(Path(user_home) / ".cache")
    return settings
