"""The settings model: every key modelyard reads, its type, default and checks, and the
locations derived from it (the embedded home, the tracking URI, the vault, the cache).

A ``Settings`` holds one resolved configuration; ``config.load_settings`` builds it from
arguments, the environment and config files. Built by hand, relative paths fall back on the
process's working folder and home.

>>> Settings(home="/tmp/x").resolved_tracking_uri
'sqlite:////tmp/x/mlflow.db'
"""

from __future__ import annotations

import math
import os
import re
import string
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from modelyard.core.names import Stage

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
DEFAULT_BACKUP_STAGES: tuple[Stage, ...] = ("staging", "production")


def parse_condition(text: str) -> tuple[str, str, float]:
    """Parse ``"accuracy >= 0.85"`` into ``("accuracy", ">=", 0.85)``; the number must be finite.

    >>> parse_condition("accuracy >= 0.85")
    ('accuracy', '>=', 0.85)
    """
    match = _CONDITION.match(text)
    if not match:
        raise ValueError(
            f"expected 'METRIC OP NUMBER' (e.g. 'accuracy >= 0.85'), got {shorten(repr(text))}"
        )
    metric, op, number = match.groups()
    try:
        value = float(number)
    except ValueError as exc:
        raise ValueError(f"'{shorten(number)}' is not a number in {shorten(repr(text))}") from exc
    if not math.isfinite(value):
        raise ValueError(f"'{shorten(number)}' is not a finite number in {shorten(repr(text))}")
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
PATH_KEYS = ("home", "vault", "backup", "cache_dir", "artifact_location", "signing_key")
# Settings that list local paths (each anchored the same way).
PATH_LIST_KEYS = ("trusted_keys", "retired_keys")


class Settings(BaseModel):
    """Every setting modelyard reads. Unknown keys are refused; built by
    ``config.load_settings``, which also records where the settings came from."""

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
    # An annotated git tag NAME@vX.Y.Z (GTO's convention) on each promotion to production.
    release_tags: bool = False
    backup_stages: list[Stage] = Field(default_factory=lambda: list(DEFAULT_BACKUP_STAGES))
    webhooks: list[str] = Field(default_factory=list)
    webhook_secret: str | None = Field(default=None, repr=False)
    audit_key: SecretStr | None = None
    # Signed versions (store/signatures.py): the EC private key (PEM file) registrations are
    # signed with, the public keys whose signatures are trusted (PEM files; several at once
    # while keys rotate), keys retired but still trusted, and the stages a version may only
    # enter (and be loaded from) signed by one of them.
    signing_key: str | None = None
    trusted_keys: list[str] = Field(default_factory=list)
    retired_keys: list[str] = Field(default_factory=list)
    require_signature: list[Stage] = Field(default_factory=list)
    # Globals (``module.Name``) a pickle in an adopted, imported or registered folder may name
    # beyond the built-in allowlist (registry/pickles.py).
    trusted_pickle_types: list[str] = Field(default_factory=list)

    # Set by load_settings; not keys anyone can write.
    _project_root: str | None = PrivateAttr(default=None)
    _notes: tuple[str, ...] = PrivateAttr(default=())
    _cache_home: str | None = PrivateAttr(default=None)

    @field_validator("default_stage", "auto_promote_to", mode="before")
    @classmethod
    def _stage_alias(cls, value: Any) -> Any:
        return _lower_stage(value)

    @field_validator("backup_stages", "require_signature", mode="before")
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

    @field_validator(*PATH_KEYS)
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("a path cannot hold a NUL character")
        return value

    @field_validator(*PATH_LIST_KEYS)
    @classmethod
    def _check_paths(cls, value: list[str]) -> list[str]:
        if any("\x00" in item for item in value):
            raise ValueError("a path cannot hold a NUL character")
        return value

    @field_validator("version_format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        _check_version_format(value)
        return value

    # Where the settings came from ----------------------------------------------------------
    def record_origin(self, *, project_root: str | None, notes: tuple[str, ...],
                      cache_home: str | None) -> None:
        """What the loader found (``config.load_settings``): the project root, notes for the
        user, and the cache's base folder from the environment it was given."""
        self._project_root = project_root
        self._notes = notes
        self._cache_home = cache_home

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
        return expand_path(self.home).absolute()

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
            return expand_path(self.cache_dir)
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


def expand_path(value: str) -> Path:
    """``~`` expanded with the process's home folder; a value it cannot expand, as written."""
    try:
        return Path(value).expanduser()
    except (RuntimeError, ValueError):
        # "~name" of a user this machine does not know, or a NUL after "~": a plain name
        # (a file by that name is never found; a path setting refuses the NUL itself)
        return Path(value)


def shorten(text: str) -> str:
    """A value as an error message quotes it: at most 300 characters."""
    if len(text) <= _MAX_PROBLEM_LENGTH:
        return text
    return text[: _MAX_PROBLEM_LENGTH - 3] + "..."
