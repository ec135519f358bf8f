"""Exchange verbs: compare, export, import and adopt.

>>> table = yard.compare("churn")                     # every visible version side by side
>>> doc = yard.export(["churn"])                      # one JSON-ready document
>>> other.import_registry(doc)                        # recreate it on another tracking server
>>> yard.adopt("legacy-model")                        # bring plain-MLflow versions under modelyard
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from modelyard.config import STAGES
from modelyard.entities import (
    STATUS_PENDING,
    STATUS_READY,
    T_BUMP,
    T_CLASS,
    T_FLAVOR,
    T_MANIFEST,
    T_PARAMS,
    T_REASON,
    T_SCHEMA,
    T_SEMVER,
    T_STAGE,
    T_STATUS,
    ModelVersion,
)
from modelyard.errors import (
    Conflict,
    InvalidInput,
    ModelNotFound,
    StorageError,
    UserError,
    YardError,
)
from modelyard.lineage import Lineage
from modelyard.tracking import VersionRecord, redact
from modelyard.vault import Manifest
from modelyard.versioning import Fingerprint, parse_semver

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.config import Settings
    from modelyard.tracking import Tracking
    from modelyard.vault import Vault

log = logging.getLogger("modelyard")

FORMAT = "modelyard-export"
FORMAT_VERSION = 1
T_IMPORTED_FROM = "modelyard.imported_from"
T_ADOPTED = "modelyard.adopted"

# Limits of an import document (MLflow's own limits where it has them).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_MODELS = 10_000
MAX_VERSIONS_PER_MODEL = 10_000
MAX_FILES_PER_VERSION = 100_000
MAX_TAGS = 1_000
MAX_METRICS = 10_000
MAX_PARAMS = 1_000
_KEY_LEN = 250  # MLflow: tag, param and metric keys
_DESCRIPTION_LEN = 5_000  # MLflow's registry column
_MODEL_TAG_VALUE_LEN = 5_000  # MLflow's registered_model_tags.value column
_VERSION_TAG_VALUE_LEN = 100_000  # MLflow: MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH
_PARAM_VALUE_LEN = 6_000  # MLflow: MAX_PARAM_VAL_LENGTH
_URI_LEN = 4_000
_ALIAS = re.compile(r"^[\w-]{1,255}$")
_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)
_SHA256 = r"^[0-9a-f]{64}$"

Key = Annotated[str, StringConstraints(min_length=1, max_length=_KEY_LEN)]
ShortText = Annotated[str, StringConstraints(max_length=256)]
UriText = Annotated[str, StringConstraints(max_length=_URI_LEN)]
Description = Annotated[str, StringConstraints(max_length=_DESCRIPTION_LEN)]
Sha256 = Annotated[str, StringConstraints(pattern=_SHA256)]


# -- compare ------------------------------------------------------------------------------
def _schema_columns(record: VersionRecord) -> list[dict[str, Any]] | None:
    inputs, _ = Fingerprint.parse_schema(record.tags.get(T_SCHEMA))
    if inputs is None:
        return None
    return [{"name": n, "type": t, "required": r} for n, t, r in inputs]


def _differences(rows: list[dict[str, Any]]) -> list[str]:
    """Keys (``stage``, ``input_schema``, ``metrics.X``, ``params.X``, ``data.X``) whose
    values are not the same in every compared version."""
    if len(rows) < 2:
        return []
    keys: list[str] = ["stage", "input_schema"]
    for group in ("metrics", "params", "data"):
        names = sorted({k for row in rows for k in row[group]})
        keys.extend(f"{group}.{k}" for k in names)
    differ = []
    for key in keys:
        values = [json.dumps(_value_at(row, key), sort_keys=True, default=str) for row in rows]
        if len(set(values)) > 1:
            differ.append(key)
    return differ


def _value_at(row: dict[str, Any], key: str) -> Any:
    group, _, sub = key.partition(".")
    if not sub:
        return row.get(group)
    return row.get(group, {}).get(sub)


def plot_comparison(comparison: dict[str, Any], path: Path) -> list[str]:
    """Draw each metric across the compared versions into a PNG; returns the metrics drawn.

    The metric names are also written into the PNG's metadata (``Description``).
    """
    rows = comparison["versions"]
    metrics = sorted({k for row in rows for k in row["metrics"]})
    if not metrics:
        raise UserError(f"{comparison['name']}: the compared versions have no metrics to plot")
    if path.suffix.lower() != ".png":
        raise InvalidInput(f"--plot writes a PNG file; give a name ending in .png, not {path}")
    try:
        import matplotlib
    except ImportError:
        from modelyard.errors import MissingDependency

        raise MissingDependency(feature="plotting", package="matplotlib",
                                install="modelyard[plot]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"v{row['semver']}" if row["semver"] else f"#{row['version']}" for row in rows]
    figure, axes = plt.subplots(len(metrics), 1, figsize=(max(4.0, 1.2 * len(rows) + 2), 2.6 *
                                len(metrics)), squeeze=False)
    try:
        for axis, metric in zip(axes[:, 0], metrics, strict=True):
            values = [row["metrics"].get(metric, math.nan) for row in rows]
            axis.plot(range(len(rows)), values, marker="o")
            axis.set_xticks(range(len(rows)))
            axis.set_xticklabels(labels)
            axis.set_ylabel(metric)
            axis.grid(True, alpha=0.3)
        axes[0, 0].set_title(f"{comparison['name']}: metrics by version")
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", metadata={
            "Title": f"{comparison['name']} metrics",
            "Description": "metrics: " + ", ".join(metrics),
        })
    except OSError as exc:
        raise UserError(f"cannot write the plot to {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)
    return metrics


# -- the import document ------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ManifestEntry(_Strict):
    sha256: Sha256
    size: int = Field(ge=0)


def _check_model_name(value: str) -> str:
    from modelyard.yard import check_name

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
            if not _ALIAS.match(alias) or _RESERVED_ALIAS.match(alias):
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
            if not _ALIAS.match(alias) or _RESERVED_ALIAS.match(alias):
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


# -- the mixin ----------------------------------------------------------------------------
class ExchangeMixin:
    """Methods of ``Yard`` for comparing and moving registries."""

    if TYPE_CHECKING:  # provided by Yard
        settings: Settings
        tracking: Tracking

        @property
        def vault(self) -> Vault: ...
        @property
        def user(self) -> str: ...
        def versions(self, name: str) -> list[VersionRecord]: ...
        def _model_version(self, record: VersionRecord, *, full: bool) -> ModelVersion: ...
        def _discard_version(self, name: str, version: int) -> None: ...
        def _fingerprint_of_dir(self, local: Path, lineage: Lineage, flavor: str | None,
                                model_class: str, params: dict[str, str]) -> Fingerprint: ...
        def _semver_after(self, name: str, earlier: list[VersionRecord], fp: Fingerprint,
                          bump: str | None, explicit: str | None) -> tuple[str, str, str]: ...

    # What the mixin uses of Yard (checked by tests/test_exchange.py).
    _YARD_API = ("settings", "tracking", "vault", "user", "versions", "_model_version",
                 "_discard_version", "_fingerprint_of_dir", "_semver_after")

    # compare -----------------------------------------------------------------------------
    def compare(self, name: str, refs: list[str] | None = None) -> dict[str, Any]:
        """Versions side by side: semver, stage, metrics, params, data hashes, input schema,
        bump and reason; ``differences`` lists the keys whose values are not all the same.

        >>> yard.compare("churn", ["v1.0.0", "production"])["differences"]
        ['metrics.accuracy', 'params.depth']
        """
        from modelyard.refs import VersionRef, resolve

        visible = self.versions(name)
        if refs:
            parsed = [VersionRef.parse(ref) for ref in refs]  # all refs checked first
            records: list[VersionRecord] = []
            for ref in parsed:
                record = resolve(name, ref, visible)
                if all(r.version != record.version for r in records):
                    records.append(record)
        else:
            records = list(visible)
        if not records:
            raise UserError(f"{name} has no versions to compare")
        rows = []
        for record in records:
            mv = self._model_version(record, full=True)
            params = dict(mv.params)
            if not params and record.tags.get(T_PARAMS):
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    params = {str(k): str(v)
                              for k, v in json.loads(record.tags[T_PARAMS]).items()}
            rows.append({
                "version": mv.version,
                "semver": mv.semver,
                "stage": mv.stage,
                "aliases": mv.aliases,
                "created_at": mv.created_at,
                "metrics": mv.metrics,
                "params": params,
                "data": mv.lineage.data_hashes(),
                "input_schema": _schema_columns(record),
                "bump": mv.bump,
                "bump_reason": mv.bump_reason,
            })
        return {"name": name, "versions": rows, "differences": _differences(rows)}

    # export ------------------------------------------------------------------------------
    def export(self, names: list[str] | None = None) -> dict[str, Any]:
        """The whole registry (or some models) as one JSON-ready document.

        Holds MLflow's registry records, modelyard's tags, manifests, metrics and params; never
        environment variables or credentials (the tracking URI's password is redacted).
        """
        from modelyard.yard import check_name, is_visible

        if names:
            for model_name in names:
                check_name(model_name)
            models = [self.tracking.get_model(n) for n in dict.fromkeys(names)]
        else:
            models = sorted(self.tracking.list_models(), key=lambda m: m.name)
        out_models = []
        for model in models:
            records = [r for r in self.tracking.versions(model.name) if is_visible(r)]
            out_models.append({
                "name": model.name,
                "description": model.description,
                "creation_timestamp": model.created_ms,
                "last_updated_timestamp": model.updated_ms,
                "tags": dict(model.tags),
                "aliases": dict(model.aliases),
                "versions": [self._export_version(r) for r in records],
            })
        log.info("exported %d model(s)", len(out_models))
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tracking_uri": redact(self.tracking.tracking_uri),
            "models": out_models,
        }

    def _export_version(self, record: VersionRecord) -> dict[str, Any]:
        mv = self._model_version(record, full=True)
        manifest: dict[str, Any] | None = None
        if mv.manifest_sha256:
            try:
                found = self.vault.read_manifest(mv.name, mv.version, mv.manifest_sha256,
                                                 mv.semver or "?")
                manifest = json.loads(found.canonical())
            except YardError as exc:
                log.warning("%s: manifest not exported: %s", mv.label, exc.message)
        return {
            "name": record.name,
            "version": record.version,
            "creation_timestamp": record.created_ms,
            "last_updated_timestamp": record.updated_ms,
            "description": record.description,
            "user_id": record.user_id,
            "source": redact(record.source),
            "run_id": record.run_id,
            "status": record.status,
            "tags": dict(record.tags),
            "aliases": list(record.aliases),
            "semver": mv.semver,
            "bump": mv.bump,
            "bump_reason": mv.bump_reason,
            "stage": mv.stage if mv.stage in STAGES else "none",
            "manifest_sha256": mv.manifest_sha256,
            "manifest": manifest,
            "lineage": mv.lineage.to_dict(),
            "metrics": mv.metrics,
            "params": mv.params,
            "artifact_location": redact(mv.artifact_location),
        }

    # import ------------------------------------------------------------------------------
    def import_registry(
        self,
        doc: dict[str, Any] | str | bytes,
        *,
        dry_run: bool = False,
        source_tracking_uri: str | None = None,
    ) -> dict[str, Any]:
        """Recreate an export here: same semvers, stages, aliases, tags, metrics and params,
        with the files copied in and checked against their manifests.

        The whole document is validated, and compared with this registry, before anything is
        written. Versions already here (same model, semver and manifest hash) are skipped, so
        importing a file twice creates nothing the second time. A version whose files cannot
        be fetched or do not match their manifest is reported in ``failed``; nothing
        unverifiable is created.
        """
        parsed = parse_export(doc)
        plan = self._plan_import(parsed)
        summary: dict[str, Any] = {
            "dry_run": dry_run,
            "source": parsed.tracking_uri,
            "models": len(parsed.models),
            "created": [],
            "skipped": [
                {"name": v.name, "version": v.version, "semver": v.semver, "reason": why}
                for _, _, skipped in plan for v, why in skipped
            ],
            "failed": [],
            "aliases": [],
            "warnings": [],
        }
        if dry_run:
            summary["would_create"] = [
                {"name": v.name, "semver": v.semver, "source_version": v.version}
                for _, todo, _ in plan for v in todo
            ]
            return summary
        source = self._source_tracking(source_tracking_uri or parsed.tracking_uri)
        for model, todo, _ in plan:
            if not todo:
                continue
            created_here = self._ensure_imported_model(model)
            made: dict[int, int] = {}
            for version in todo:
                try:
                    mv = self._import_version(version, parsed.tracking_uri, source)
                except YardError as exc:
                    log.warning("import of %s failed: %s", version.label, exc.message)
                    summary["failed"].append({"name": version.name, "semver": version.semver,
                                              "source_version": version.version,
                                              "error": exc.message})
                    continue
                made[version.version] = mv.version
                summary["created"].append({"name": mv.name, "semver": mv.semver,
                                           "version": mv.version,
                                           "source_version": version.version})
            self._import_aliases(model, made, summary, created_here)
        log.info("import: %d created, %d skipped, %d failed", len(summary["created"]),
                 len(summary["skipped"]), len(summary["failed"]))
        return summary

    def _plan_import(
        self, parsed: ExportDoc
    ) -> list[tuple[ModelDoc, list[VersionDoc], list[tuple[VersionDoc, str]]]]:
        """What to create and what to skip per model; Conflict if a semver is already taken
        here by a version with other contents. Reads the target only."""
        plan = []
        conflicts: list[str] = []
        for model in parsed.models:
            try:
                existing = self.versions(model.name)
            except ModelNotFound:
                existing = []
            by_semver = {r.tags[T_SEMVER]: r for r in existing if r.tags.get(T_SEMVER)}
            todo: list[VersionDoc] = []
            skipped: list[tuple[VersionDoc, str]] = []
            for version in sorted(model.versions, key=lambda v: v.version):
                if version.semver is None:
                    skipped.append((version, "not managed by modelyard in the source "
                                             "(run `modelyard adopt` there first)"))
                    continue
                if version.manifest_sha256 is None:
                    skipped.append((version, "no manifest hash recorded: cannot be verified"))
                    continue
                here = by_semver.get(version.semver)
                if here is None:
                    todo.append(version)
                elif here.tags.get(T_MANIFEST) == version.manifest_sha256:
                    skipped.append((version, f"already present as version {here.version}"))
                else:
                    conflicts.append(f"{model.name} v{version.semver} exists here (version "
                                     f"{here.version}) with different contents")
            plan.append((model, todo, skipped))
        if conflicts:
            more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            raise Conflict(f"import refused, nothing changed: {conflicts[0]}{more}")
        return plan

    def _source_tracking(self, uri: str) -> Tracking | None:
        """A Tracking for the exporting server, used only to download its artifacts."""
        from modelyard.config import Settings
        from modelyard.tracking import Tracking

        if not uri or "***" in uri:
            return None
        if uri.startswith("sqlite:"):
            path = Path(uri.removeprefix("sqlite:///"))
            if not path.is_file():  # never create an empty database by asking it
                return None
        try:
            return Tracking(Settings(tracking_uri=uri))
        except ValueError:
            return None

    def _fetch_exported(self, version: VersionDoc, source: Tracking | None,
                        dest: Path) -> Path:
        """Download the exported version's files from wherever they are reachable."""
        candidates: list[str] = []
        location = version.artifact_location
        if location and "***" not in location:
            candidates.append(location)
        if version.source.startswith(("models:/m-", "runs:/")) and source is not None and (
            source.tracking_uri.startswith(("http://", "https://", "sqlite:"))
        ):
            candidates.append(version.source)
        problems: list[str] = []
        for index, uri in enumerate(candidates):
            if uri.startswith("mlflow-artifacts:") and source is None:
                problems.append(f"{uri}: the source tracking server is unknown")
                continue
            target = dest / f"try{index}"
            try:
                if source is not None:
                    local = source.download(uri, target)
                else:
                    local = self.tracking.download(uri, target)
            except YardError as exc:
                problems.append(f"{uri}: {exc.message}")
                continue
            if local.is_dir() and any(local.iterdir()):
                return local
            problems.append(f"{uri}: nothing there")
        detail = "; ".join(problems) if problems else "no artifact location in the export"
        raise StorageError(
            detail=f"the artifacts of {version.label} are unreachable, so it was not imported "
            f"({detail[:400]})"
        )

    def _ensure_imported_model(self, model: ModelDoc) -> bool:
        try:
            self.tracking.get_model(model.name)
            return False
        except ModelNotFound:
            pass
        self.tracking.ensure_registered_model(model.name, model.description or None)
        for key, value in model.tags.items():
            self.tracking.set_model_tag(model.name, key, value)
        return True

    def _import_version(self, version: VersionDoc, source_uri: str,
                        source: Tracking | None) -> ModelVersion:
        from modelyard.errors import IntegrityError

        semver = version.semver or "?"
        with tempfile.TemporaryDirectory(prefix="modelyard-import-") as tmp:
            local = self._fetch_exported(version, source, Path(tmp))
            if version.manifest is not None:
                version.manifest_object().verify_directory(local, label=version.name,
                                                           semver=semver)
            manifest = Manifest.of_directory(local)
            if manifest.sha256 != version.manifest_sha256:
                raise IntegrityError(name=version.name, semver=semver,
                                     detail="the fetched files do not match the exported "
                                     "manifest hash")
            flavor = version.tags.get(T_FLAVOR) or _flavor_of(local)
            run_id = self.tracking.create_run(
                self.settings.experiment, run_name=f"{version.name}-import",
                tags={"mlflow.user": self.user, "modelyard.model": version.name,
                      T_IMPORTED_FROM: f"{source_uri} version {version.version}"},
            )
            model_id: str | None = None
            try:
                metrics = list(version.metrics.items())
                params = list(version.params.items())
                for start in range(0, max(len(metrics), len(params), 1), 100):
                    self.tracking.log_batch(run_id, metrics=dict(metrics[start:start + 100]),
                                            params=dict(params[start:start + 100]))
                model_id, _ = self.tracking.create_logged_model(
                    self.settings.experiment, run_id, flavor, {}
                )
                self.tracking.upload_logged_model(model_id, run_id, local)
                self.vault.store_objects(local, manifest)
                mv = self._create_imported_version(version, source_uri, model_id, run_id,
                                                   manifest)
            except BaseException:
                if model_id:
                    self.tracking.fail_logged_model(model_id)
                with contextlib.suppress(Exception):
                    self.tracking.end_run(run_id, "FAILED")
                raise
        with contextlib.suppress(YardError):
            self.tracking.end_run(run_id)
        mv.metrics = dict(version.metrics)
        mv.params = dict(version.params)
        return mv

    def _create_imported_version(self, version: VersionDoc, source_uri: str,
                                 model_id: str, run_id: str, manifest: Manifest
                                 ) -> ModelVersion:
        final = {
            T_SEMVER: version.semver or "",
            T_BUMP: version.bump or "",
            T_REASON: version.bump_reason or "",
            T_STAGE: version.stage,
            T_STATUS: STATUS_READY,  # last: makes the version visible
        }
        tags = {k: v for k, v in version.tags.items() if k not in final}
        tags.update({T_STATUS: STATUS_PENDING, T_MANIFEST: manifest.sha256,
                     T_IMPORTED_FROM: f"{source_uri} version {version.version}"[:5000]})
        self.tracking.ensure_registered_model(version.name)
        record = self.tracking.create_version(
            version.name, f"models:/{model_id}", run_id, tags, version.description or None,
            model_id,
        )
        try:
            self.vault.write_manifest(
                version.name, record.version, manifest,
                {"semver": version.semver, "source": f"models:/{model_id}", "run_id": run_id,
                 "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "imported_from": f"{source_uri} version {version.version}"},
            )
            self.tracking.set_version_tags(version.name, record.version, final)
        except BaseException:
            self._discard_version(version.name, record.version)
            raise
        record.tags.update(tags)
        record.tags.update(final)
        return ModelVersion.from_record(record)

    def _import_aliases(self, model: ModelDoc, made: dict[int, int],
                        summary: dict[str, Any], created_here: bool) -> None:
        """Give imported versions their aliases; an alias already held here is not moved."""
        if not made:
            return
        current = self.tracking.get_model(model.name).aliases
        wanted: dict[str, int] = dict(model.aliases)
        for version in model.versions:
            for alias in version.aliases:
                wanted[alias] = version.version
        for alias, source_number in sorted(wanted.items()):
            if source_number not in made:
                continue
            holder = current.get(alias)
            if holder is not None and holder != made[source_number]:
                summary["warnings"].append(
                    f"{model.name}: alias {alias!r} is held here by version {holder}; not moved"
                )
                continue
            self.tracking.set_alias(model.name, alias, made[source_number])
            summary["aliases"].append({"name": model.name, "alias": alias,
                                       "version": made[source_number]})

    # adopt -------------------------------------------------------------------------------
    def adopt(self, name: str) -> list[ModelVersion]:
        """Bring versions registered by plain MLflow under modelyard, in version-number order:
        semver (1.0.0 first, then bumped by the registration rules), manifest in the vault,
        stage from the production / staging aliases. Managed versions are left alone."""
        from modelyard.yard import check_name

        check_name(name)
        records = self.tracking.versions(name)
        managed = [r for r in records if r.tags.get(T_SEMVER)]
        todo = [r for r in records if not r.tags.get(T_SEMVER)
                and r.tags.get(T_STATUS) != STATUS_PENDING
                and r.status.upper() in ("READY", "")]
        if not todo:
            return []
        newest_managed = max(managed, key=lambda r: r.version, default=None)
        if newest_managed is not None:
            older = [r.version for r in todo if r.version < newest_managed.version]
            if older:
                shown = ", ".join(f"#{n}" for n in older[:5])
                raise Conflict(
                    f"{name}: version(s) {shown} are older than the managed version "
                    f"#{newest_managed.version} (v{newest_managed.tags[T_SEMVER]}); semvers "
                    "follow MLflow version numbers, so they cannot be adopted"
                )
        adopted: list[ModelVersion] = []
        for record in todo:
            # Earlier records carry the tags of the versions adopted before this one.
            earlier = [r for r in records if r.version < record.version
                       and r.tags.get(T_STATUS) != STATUS_PENDING]
            adopted.append(self._adopt_version(record, earlier))
        log.info("adopted %d version(s) of %s", len(adopted), name)
        return adopted

    def _adopt_version(self, record: VersionRecord, earlier: list[VersionRecord]
                       ) -> ModelVersion:
        name = record.name
        params: dict[str, str] = {}
        if record.run_id:
            with contextlib.suppress(YardError):
                params = self.tracking.get_run(record.run_id)["params"]
        with tempfile.TemporaryDirectory(prefix="modelyard-adopt-") as tmp:
            local = self.tracking.download(record.source, Path(tmp))
            manifest = Manifest.of_directory(local)
            if not manifest.files:
                raise UserError(f"{name} #{record.version}: no files at {record.source}")
            known = (local / "MLmodel").is_file()
            try:
                fingerprint = (self._fingerprint_of_dir(local, Lineage(), None, "", params)
                               if known else Fingerprint(params=params))
            except Exception as exc:  # noqa: BLE001 - a malformed MLmodel written by others
                log.warning("%s #%s: MLmodel unreadable (%s); comparing as unknown", name,
                            record.version, exc)
                fingerprint = Fingerprint(params=params)
            self.vault.store_objects(local, manifest)
        semver, bump, reason = self._semver_after(name, earlier, fingerprint, None, None)
        reason = f"adopted from plain MLflow; {reason}"
        stage = ("production" if "production" in record.aliases
                 else "staging" if "staging" in record.aliases else "none")
        self.vault.write_manifest(
            name, record.version, manifest,
            {"semver": semver, "source": record.source, "run_id": record.run_id,
             "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "adopted": True},
        )
        tags = {
            T_MANIFEST: manifest.sha256,
            T_SCHEMA: fingerprint.schema_json(),
            T_FLAVOR: fingerprint.flavor,
            T_CLASS: fingerprint.model_class,
            T_PARAMS: json.dumps(fingerprint.params, sort_keys=True),
            T_BUMP: bump,
            T_REASON: reason,
            T_STAGE: stage,
            T_ADOPTED: datetime.now(timezone.utc).isoformat(timespec="seconds"),
            T_STATUS: STATUS_READY,
        }
        self.tracking.set_version_tags(name, record.version, tags)
        self.tracking.set_version_tags(name, record.version, {T_SEMVER: semver})  # last
        record.tags.update(tags)
        record.tags[T_SEMVER] = semver
        return ModelVersion.from_record(record)


def _flavor_of(local: Path) -> str:
    import yaml

    try:
        data = yaml.safe_load((local / "MLmodel").read_text())
        flavors = list((data or {}).get("flavors", {}))
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return "python_function"
    return next((f for f in flavors if f != "python_function"), "python_function")
