"""The export document: its format marker, limits and validation.

An import validates the whole document (sizes, names, paths, semvers, aliases, manifests)
before anything is written; ``parse_export`` raises ``InvalidInput`` naming the first problem.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from modelyard.core.names import ALIAS, RESERVED_ALIAS, check_name, parse_semver
from modelyard.errors import AuditTampered, InvalidInput
from modelyard.store.vault import Manifest

FORMAT = "modelyard-export"
FORMAT_VERSION = 1

# Limits of an import document (MLflow's own limits where it has them).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_MODELS = 10_000
MAX_VERSIONS_PER_MODEL = 10_000
MAX_FILES_PER_VERSION = 100_000
MAX_TAGS = 1_000
MAX_METRICS = 10_000
MAX_PARAMS = 1_000
MAX_AUDIT_EVENTS = 1_000_000
MAX_DEPTH = 64  # containers inside containers (the format itself uses 6)
_KEY_LEN = 250  # MLflow: tag, param and metric keys
_DESCRIPTION_LEN = 5_000  # MLflow's registry column
_MODEL_TAG_VALUE_LEN = 5_000  # MLflow's registered_model_tags.value column
_VERSION_TAG_VALUE_LEN = 100_000  # MLflow: MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH
_PARAM_VALUE_LEN = 6_000  # MLflow: MAX_PARAM_VAL_LENGTH
_URI_LEN = 4_000
_SIGNATURE_LEN = 64 * 1024 * 1024  # one digest per file: within the document's own limit
_SHA256 = r"^[0-9a-f]{64}$"

Key = Annotated[str, StringConstraints(min_length=1, max_length=_KEY_LEN)]
ShortText = Annotated[str, StringConstraints(max_length=256)]
UriText = Annotated[str, StringConstraints(max_length=_URI_LEN)]
Description = Annotated[str, StringConstraints(max_length=_DESCRIPTION_LEN)]
Sha256 = Annotated[str, StringConstraints(pattern=_SHA256)]



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)



class ManifestEntry(_Strict):
    sha256: Sha256
    size: int = Field(ge=0)



def _check_model_name(value: str) -> str:
    try:
        check_name(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    return value



def _check_relative_path(path: str) -> str:
    """A manifest path must stay inside the model folder."""
    if not path or len(path) > 1024 or "\x00" in path or "\\" in path:
        raise ValueError(f"unsafe file path {path[:80]!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", path) or any(
        part in ("", ".", "..") for part in path.split("/")
    ):
        raise ValueError(f"unsafe file path {path[:80]!r} (absolute or leaves the model folder)")
    return path



class VersionDoc(_Strict):
    name: str
    version: int = Field(ge=1)
    creation_timestamp: int = Field(ge=0)
    last_updated_timestamp: int = Field(ge=0)
    description: Description = ""
    user_id: ShortText | None = None
    source: UriText = ""
    run_id: ShortText | None = None
    status: ShortText = ""
    tags: dict[Key, Annotated[str, StringConstraints(max_length=_VERSION_TAG_VALUE_LEN)]] = (
        Field(default_factory=dict, max_length=MAX_TAGS)
    )
    aliases: list[str] = Field(default_factory=list, max_length=100)
    semver: str | None = None
    bump: ShortText | None = None
    bump_reason: Annotated[str, StringConstraints(max_length=_VERSION_TAG_VALUE_LEN)] | None = None
    stage: Literal["none", "staging", "production", "archived"] = "none"
    manifest_sha256: Sha256 | None = None
    manifest: dict[str, ManifestEntry] | None = Field(default=None,
                                                      max_length=MAX_FILES_PER_VERSION)
    lineage: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[Key, float] = Field(default_factory=dict, max_length=MAX_METRICS)
    params: dict[Key, Annotated[str, StringConstraints(max_length=_PARAM_VALUE_LEN)]] = Field(
        default_factory=dict, max_length=MAX_PARAMS
    )
    artifact_location: UriText = ""
    # The version's OpenSSF signature bundle (JSON text), checked against the importing
    # registry's trusted keys before any file is fetched.
    signature: Annotated[str, StringConstraints(max_length=_SIGNATURE_LEN)] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_model_name(value)

    @field_validator("semver")
    @classmethod
    def _semver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"\d+\.\d+\.\d+", value):
            raise ValueError(f"{value[:40]!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        try:
            return str(parse_semver(value))
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        for alias in value:
            if not ALIAS.match(alias) or RESERVED_ALIAS.match(alias):
                raise ValueError(f"invalid alias {alias[:40]!r}")
        if len(set(value)) != len(value):
            raise ValueError("duplicate alias")
        return value

    @field_validator("manifest")
    @classmethod
    def _manifest_paths(cls, value: dict[str, ManifestEntry] | None
                        ) -> dict[str, ManifestEntry] | None:
        for path in value or {}:
            _check_relative_path(path)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> VersionDoc:
        if self.manifest is not None:
            if self.manifest_sha256 is None:
                raise ValueError("a manifest is given without its manifest_sha256")
            if self.manifest_object().sha256 != self.manifest_sha256:
                raise ValueError("the manifest's files do not hash to its manifest_sha256")
        elif self.signature is not None:
            raise ValueError("a signature is given without the manifest it signs")
        return self

    def manifest_object(self) -> Manifest:
        return Manifest({p: (e.sha256, e.size) for p, e in (self.manifest or {}).items()})

    @property
    def label(self) -> str:
        return f"{self.name} v{self.semver}" if self.semver else f"{self.name} #{self.version}"



class ModelDoc(_Strict):
    name: str
    description: Description = ""
    creation_timestamp: int = Field(default=0, ge=0)
    last_updated_timestamp: int = Field(default=0, ge=0)
    tags: dict[Key, Annotated[str, StringConstraints(max_length=_MODEL_TAG_VALUE_LEN)]] = Field(
        default_factory=dict, max_length=MAX_TAGS
    )
    aliases: dict[str, int] = Field(default_factory=dict, max_length=100)
    versions: list[VersionDoc] = Field(default_factory=list, max_length=MAX_VERSIONS_PER_MODEL)
    # The model's audit trail, oldest first (events as stored; the chain is re-verified on
    # import before anything is written).
    audit: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_AUDIT_EVENTS)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_model_name(value)

    @model_validator(mode="after")
    def _consistent(self) -> ModelDoc:
        semvers: set[str] = set()
        numbers: set[int] = set()
        holders: dict[str, int] = {}
        for version in self.versions:
            if version.name != self.name:
                raise ValueError(f"version {version.version} names model {version.name!r}")
            if version.version in numbers:
                raise ValueError(f"duplicate version number {version.version}")
            numbers.add(version.version)
            if version.semver is not None:
                if version.semver in semvers:
                    raise ValueError(f"duplicate semver {version.semver}")
                semvers.add(version.semver)
            for alias in version.aliases:
                if alias in holders:
                    raise ValueError(f"alias {alias!r} is held by more than one version")
                holders[alias] = version.version
        for alias, number in self.aliases.items():
            if not ALIAS.match(alias) or RESERVED_ALIAS.match(alias):
                raise ValueError(f"invalid alias {alias[:40]!r}")
            if holders.get(alias, number) != number:
                raise ValueError(f"alias {alias!r} points at two different versions")
        return self



class ExportDoc(_Strict):
    format: Literal["modelyard-export"]
    format_version: Literal[1]
    exported_at: ShortText
    tracking_uri: UriText
    models: list[ModelDoc] = Field(max_length=MAX_MODELS)

    @model_validator(mode="after")
    def _unique(self) -> ExportDoc:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("a model appears more than once")
        return self



def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ""
    for part in error.get("loc", ()):
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"



def _too_deep(doc: Any) -> bool:
    """Whether any value sits more than MAX_DEPTH containers deep (checked without
    recursion, so a hostile document cannot exhaust the stack here or later)."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth >= MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_export(doc: Any) -> ExportDoc:
    """Validate a whole export document (a dict, or its JSON text); InvalidInput if it is not
    one modelyard can import safely."""
    if isinstance(doc, (bytes, bytearray)):
        if len(doc) > MAX_DOCUMENT_BYTES:
            raise InvalidInput(f"export document too large ({len(doc)} bytes; the limit is "
                               f"{MAX_DOCUMENT_BYTES})")
        try:
            doc = doc.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("export document is not UTF-8 text") from None
    if isinstance(doc, str):
        if len(doc) > MAX_DOCUMENT_BYTES:
            raise InvalidInput(f"export document too large ({len(doc)} characters; the limit is "
                               f"{MAX_DOCUMENT_BYTES})")
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise InvalidInput(f"export document is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidInput("export document is nested too deeply") from None
    if _too_deep(doc):
        raise InvalidInput(f"export document is nested too deeply (more than {MAX_DEPTH} "
                           "levels)")
    if not isinstance(doc, dict):
        raise InvalidInput("export document must be a JSON object, not "
                           f"{type(doc).__name__}")
    if doc.get("format") != FORMAT:
        found = doc.get("format")
        shown = repr(found)[:60] if found is not None else "missing"
        raise InvalidInput(f"not a modelyard export: format marker is {shown}, "
                           f"expected {FORMAT!r}")
    if doc.get("format_version") != FORMAT_VERSION:
        shown = repr(doc.get("format_version"))[:30]
        raise InvalidInput(f"unsupported export format_version {shown} "
                           f"(this modelyard reads {FORMAT_VERSION})")
    try:
        return ExportDoc.model_validate(doc)
    except ValidationError as exc:
        raise InvalidInput(f"invalid export document: {_first_error(exc)}") from None


def check_exported_trail(model: ModelDoc) -> None:
    """The exported audit trail must be an intact chain, or the import is refused."""
    from modelyard.trail.audit import AuditEvent, check_chain

    try:
        check_chain(model.name, [AuditEvent.from_dict(e) for e in model.audit])
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"invalid export document: the audit trail of {model.name!r} is "
                           f"unreadable ({str(exc)[:120]})") from None
    except AuditTampered as exc:
        raise InvalidInput(f"invalid export document: {exc.message}") from None
