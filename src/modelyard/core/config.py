"""Loading the settings: arguments > environment > modelyard.toml / [tool.modelyard] > defaults.

With nothing set, modelyard runs on the embedded default: MLflow on SQLite at
``<project root>/.modelyard/mlflow.db`` with artifacts and the vault beside it. The project
root is the nearest folder upwards holding ``modelyard.toml`` or a ``pyproject.toml`` with a
``[tool.modelyard]`` table (as git and DVC find theirs); without one, the working folder.

Each layer is validated on its own, so an error names where the bad value came from
(``modelyard.toml: colour: unknown key``, ``environment: max_versions: ...``). Relative
paths are anchored where they were written: in a config file, at that file's folder; in
the environment or arguments, at the working folder. Nothing here reads the process's
environment except through the ``environ`` mapping given to :func:`load_settings`. The keys
themselves, their checks and the locations derived from them are ``settings.Settings``.

>>> settings = load_settings(overrides={"home": "/tmp/x"}, environ={})
>>> settings.resolved_tracking_uri
'sqlite:////tmp/x/mlflow.db'
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from modelyard.core.reading import read_capped
from modelyard.core.settings import (
    PATH_KEYS,
    PATH_LIST_KEYS,
    Settings,
    expand_path,
    shorten,
)
from modelyard.core.spellings import seed_artifact_location, translate_foreign_keys
from modelyard.errors import ConfigError, InvalidInput

CONFIG_FILE = "modelyard.toml"
_ENV_PREFIX = "MODELYARD_"
# Variables of the MODELYARD_ namespace that are not settings (read where they are used).
_NOT_SETTINGS = {"MODELYARD_CONFIG", "MODELYARD_SERVE_TOKEN", "MODELYARD_PROFILE"}
_MAX_CONFIG_BYTES = 1 << 20


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
    others = translate_foreign_keys(others, source, notes)
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
            source=source, key=clash[0], problem="set twice (by another tool's spelling too)"
        )
    values.update(others)
    values.update(own)
    if "artifact_location" not in values:
        artifact_location = seed_artifact_location(environ)
        if artifact_location:
            values["artifact_location"] = artifact_location
    return values


# Config files -------------------------------------------------------------------------------
def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # an unsearchable folder (or a NUL in a name): nothing here
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # an unsearchable folder (or a NUL in a name)
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
    """A config file's bytes, at most 1 MiB however it is served (a FIFO, a device)."""
    try:
        return read_capped(path, _MAX_CONFIG_BYTES, "a config file")
    except InvalidInput as exc:
        problem = str(exc.fields.get("problem", exc.message)).removeprefix("is ")
        raise ConfigError(source=_source(path), key="(file)", problem=problem) from None


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


# Profiles -----------------------------------------------------------------------------------
# ``[profile.NAME]`` tables of the config file override its other keys when NAME is chosen by
# MODELYARD_PROFILE or, the seeds' spelling, ENVIRONMENT (ours wins).
_PROFILE_VARIABLES = ("MODELYARD_PROFILE", "ENVIRONMENT")


def _profile_name(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(the variable that chose it, the profile's name), or None when neither is set."""
    upper = {var.upper(): value for var, value in environ.items() if value.strip() != ""}
    for var in _PROFILE_VARIABLES:
        if var in upper:
            return var, upper[var].strip()
    return None


def _split_profiles(data: dict[str, Any], source: str
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    data = dict(data)
    profiles = data.pop("profile", {})
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise ConfigError(source=source, key="profile",
                          problem="must hold tables: [profile.NAME]")
    return data, profiles


def _profile_values(profiles: dict[str, Any], source: str,
                    notes: list[str]) -> dict[str, dict[str, Any]]:
    """Every profile's keys, each checked now (a typo in [profile.production] is caught on
    the machine that does not use it too), by lower-cased name."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in profiles.items():
        where = f"{source} [profile.{_show_key(name)}]"
        if name.lower() in out:
            raise ConfigError(source=where, key="(table)",
                              problem="another profile has the same name in other letter case")
        values = translate_foreign_keys(_flatten_policy(table, where), where, notes)
        _validate_layer(values, where)
        out[name.lower()] = values
    return out


def _refuse_profile(profile: tuple[str, str], source: str | None, known: list[str]) -> None:
    var, name = profile
    if source is None:
        problem = f"no config file here has [profile.{shorten(name)}]"
    else:
        listed = ", ".join(known) if known else "none"
        problem = f"{source} has no [profile.{shorten(name)}] (profiles: {listed})"
    raise ConfigError(
        source="environment", key=var,
        problem=f"{problem}; add that table to modelyard.toml or unset {var}",
    )


# Layers -------------------------------------------------------------------------------------


def _anchor_paths(values: dict[str, Any], base: Path, user_home: str | None) -> None:
    """Make relative local paths absolute against base (URIs are left alone)."""
    for key in PATH_KEYS:
        value = values.get(key)
        if not isinstance(value, str) or not value or "://" in value or value.startswith("file:"):
            continue
        values[key] = str(_local_path(value, base, user_home))
    for key in PATH_LIST_KEYS:
        items = values.get(key)
        if isinstance(items, list):
            values[key] = [str(_local_path(item, base, user_home))
                           if isinstance(item, str) and item else item for item in items]


def _local_path(value: str, base: Path, user_home: str | None) -> Path:
    """``~`` expanded with the given home, then anchored at base if still relative."""
    if user_home and (value == "~" or value.startswith("~/")):
        path = Path(user_home) / value[2:]
    else:
        path = expand_path(value)
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
    return shorten(" ".join(text.split()))


def _source(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() else repr(text)


def _show_key(key: str) -> str:
    return shorten(key if key and key.isprintable() else repr(key))


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
        if not _exists(path):
            raise ConfigError(source=_source(path), key="(file)", problem="file not found")
        # Not only a regular file: ``<(generate-config)`` is a FIFO. Whatever it is, the
        # read stops one byte past the limit (``/dev/zero`` is refused, not read forever).
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


def _without_launcher_default(environ: Mapping[str, str], root: Path,
                              notes: list[str]) -> Mapping[str, str]:
    """``mlflow run`` hands its entry point MLFLOW_TRACKING_URI whatever the launcher had: with
    nothing configured, MLflow's own default at the project folder (``./mlflow.db``,
    ``./mlruns``). Inside a modelyard project that is no choice of the user's, and the
    project's own registry is the one to register into (the run's ``MLFLOW_RUN_ID`` says the
    variable came from the launcher)."""
    uri = environ.get("MLFLOW_TRACKING_URI", "")
    if not environ.get("MLFLOW_RUN_ID") or not uri:
        return environ
    defaults = {f"sqlite:///{root / 'mlflow.db'}", (root / "mlruns").as_uri(), "./mlruns",
                "sqlite:///mlflow.db"}
    if uri not in defaults:
        return environ
    notes.append(f"MLFLOW_TRACKING_URI {uri} is MLflow's default that `mlflow run` passed on: "
                 "the project's registry is used")
    return {k: v for k, v in environ.items() if k != "MLFLOW_TRACKING_URI"}


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
    profile = _profile_name(environ)
    if path is not None and root is not None:
        source = _source(path)
        data, profiles = _split_profiles(data, source)
        file_values = translate_foreign_keys(_flatten_policy(data, source), source, notes)
        _validate_layer(file_values, source)
        chosen = _profile_values(profiles, source, notes)
        if profile is not None:
            if profile[1].lower() not in chosen:
                _refuse_profile(profile, source, sorted(chosen))
            file_values.update(chosen[profile[1].lower()])
        _anchor_paths(file_values, root, user_home)
        merged.update(file_values)
    elif profile is not None:
        _refuse_profile(profile, None, [])

    if path is not None and root is not None:
        environ = _without_launcher_default(environ, root, notes)
    env_values = _read_environment(environ, notes)
    _validate_layer(env_values, "environment")
    _anchor_paths(env_values, cwd, user_home)
    merged.update(env_values)

    explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
    if explicit:
        explicit = translate_foreign_keys(explicit, "arguments", notes)
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
    xdg = environ.get("XDG_CACHE_HOME")
    cache_home = xdg if xdg and Path(xdg).is_absolute() else (
        str(Path(user_home) / ".cache") if user_home else None)
    settings.record_origin(project_root=str(root) if root is not None else None,
                           notes=tuple(notes), cache_home=cache_home)
    return settings
