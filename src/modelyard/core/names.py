"""Every name modelyard reads or writes in MLflow, and the rules those names follow.

Tag keys, stages, aliases, the model-name and alias rules, limits, and the one semver parser.
Nothing else in modelyard spells a ``modelyard.`` tag key.

>>> check_name("churn")
'churn'
>>> str(parse_semver("v1.2.0"))
'1.2.0'
"""

from __future__ import annotations

import re
from typing import Literal

import semver as _semver

from modelyard.errors import InvalidInput

# -- tags on a model version -------------------------------------------------------------
PREFIX = "modelyard."
T_SEMVER = "modelyard.semver"
T_BUMP = "modelyard.bump"
T_REASON = "modelyard.bump_reason"
T_STAGE = "modelyard.stage"
T_MANIFEST = "modelyard.manifest_sha256"
T_STATUS = "modelyard.status"
T_SCHEMA = "modelyard.schema"
T_FLAVOR = "modelyard.flavor"
T_CLASS = "modelyard.model_class"
T_PARAMS = "modelyard.params"
T_ROLLED_BACK = "modelyard.rolled_back"
T_IMPORTED_FROM = "modelyard.imported_from"
T_ADOPTED = "modelyard.adopted"
T_RESTORED_FROM = "modelyard.restored_from"
T_LINEAGE = "modelyard.lineage."  # prefix of the lineage tags
# What follows T_LINEAGE: one tag per field of ``core.lineage.Lineage``, in its order. The
# JSON-valued ones are LINEAGE_JSON; the rest are plain strings (docs/design.md, "Tag contract").
LINEAGE_KEYS = (
    "git_commit", "git_branch", "git_dirty", "dirty_paths", "data", "python", "packages",
    "seed", "trained_by", "host", "started_at", "duration_s", "duration_from", "cpu_s",
    "peak_rss_mb", "host_cpus", "host_memory_mb", "parent_run",
)
LINEAGE_JSON = ("dirty_paths", "data", "packages")
# Where ``duration_s`` came from: the caller's arguments, the active MLflow run the version is
# logged into, or the DVC stage whose process registered it.
DURATION_FROM = ("caller", "mlflow_run", "dvc_stage")
# Set when `reproduce` stores its result in the vault (its time and verdict), so `details`
# reads the vault only for versions that have one.
T_REPRODUCED = "modelyard.reproduced"
# The key id (SHA-256 of the PEM public key) of the key whose signature the vault holds for
# the version's manifest (``store/signatures.py``): a removed signature is then refused.
T_SIGNER = "modelyard.signer"
# Set when serving compiles a version (serving/compiled.py): the runtime it answers with and
# the parity figures, or why it is served through pyfunc; `details` shows it without a read
# of the vault.
T_COMPILED = "modelyard.compiled"

# -- tags on a registered model and on runs ----------------------------------------------
T_AUDIT_HEAD = "modelyard.audit_head"
# The vault this model's trail and manifests are written to: "VAULT_ID LOCATION"
# (trail/binding.py); a registry read with another vault says so instead of a false alarm.
T_VAULT = "modelyard.vault"
T_RUN_MODEL = "modelyard.model"
# The highest semver a registration confirmed (a hint: checked against the versions).
T_SEMVER_HIGH = "modelyard.semver_high"
# On a drill's run in the ``modelyard-drills`` experiment: the scenario and the model.
T_DRILL = "modelyard.drill"
T_DRILL_MODEL = "modelyard.drill.model"

STATUS_PENDING = "pending"
STATUS_READY = "ready"

# -- stages -------------------------------------------------------------------------------
Stage = Literal["none", "staging", "production", "archived"]
STAGES: tuple[str, ...] = ("none", "staging", "production", "archived")
# Stages held by exactly one version, as an MLflow alias of the same name.
STAGE_ALIASES: tuple[str, ...] = ("staging", "production")
# What each stage is called in MLflow's (deprecated) stage field.
MLFLOW_STAGE = {"none": "None", "staging": "Staging", "production": "Production",
                "archived": "Archived"}

BUMPS = ("major", "minor", "patch")

# -- rules ----------------------------------------------------------------------------------
# MLflow accepts longer names; 128 keeps names usable as S3 key parts and file names.
MAX_NAME_LEN = 128
_NAME = re.compile(rf"^[A-Za-z0-9][\w.\-]{{0,{MAX_NAME_LEN - 1}}}$", re.ASCII)
# MLflow's alias rule: word characters (unicode too) and '-', no dots; `latest` and
# `v<digits>` reserved.
MAX_ALIAS_LEN = 255
ALIAS = re.compile(rf"^[\w-]{{1,{MAX_ALIAS_LEN}}}$")
RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE | re.ASCII)
SEMVER = re.compile(r"^v?(\d{1,9})\.(\d{1,9})\.(\d{1,9})$", re.ASCII)
MAX_VERSION_NUMBER = 10**12


def check_name(name: str) -> str:
    """A registered model name: letters, digits, '.', '_' or '-'; no '/', '@' or spaces."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        shown = repr(name)[:80]
        raise InvalidInput(
            f"invalid model name {shown}: use up to {MAX_NAME_LEN} letters, digits, '.', '_' "
            "or '-' (no '/', '@' or spaces)"
        )
    return name


def check_alias(alias: str) -> str:
    """A user alias: MLflow's rule, and never a stage name (stages move through promote)."""
    if not isinstance(alias, str) or not ALIAS.match(alias):
        raise InvalidInput(f"invalid alias {alias!r:.80}: use letters, digits, '_' or '-'")
    if alias.lower() in (*STAGE_ALIASES, "archived", "none", "development"):
        raise InvalidInput(f"{alias!r} is a stage: stages move only with `modelyard promote`")
    if RESERVED_ALIAS.match(alias):
        raise InvalidInput(f"alias {alias!r} is reserved by MLflow (latest, v<digits>)")
    if alias.isdecimal():  # any script's digits: NAME@3 and NAME@٣ name version 3 alone
        raise InvalidInput(f"alias {alias!r} is all digits, which reads as a version number: "
                           "add a letter")
    return alias


def check_tag_key(key: str) -> str:
    """A user tag key: not empty, no '=', and not in the ``modelyard.`` namespace."""
    if not isinstance(key, str) or not key.strip() or "=" in key or len(key) > 250:
        raise InvalidInput(f"invalid tag key {key!r:.80}")
    if key.lower().startswith(PREFIX):
        raise InvalidInput(f"tags in the 'modelyard.' namespace are reserved: {key}")
    return key


def check_user_tags(tags: dict[str, str] | None) -> dict[str, str]:
    """User tags given at registration, as strings; the namespace stays modelyard's."""
    out = {str(k): str(v) for k, v in (tags or {}).items()}
    for key in out:
        check_tag_key(key)
    return out


def normalize_stage(stage: str) -> str:
    """``Production`` -> ``production``; MLflow's ``development`` is modelyard's ``none``."""
    value = str(stage).strip().lower()
    if value == "development":
        value = "none"
    if value not in STAGES:
        raise InvalidInput(f"unknown stage {str(stage)[:40]!r}: use one of {', '.join(STAGES)}")
    return value


def mlflow_stage(stage: str) -> str:
    """The value of MLflow's (deprecated) stage field for a modelyard stage: ``"Production"``
    for ``production``; InvalidInput for anything else than the four stages."""
    value = MLFLOW_STAGE.get(stage.lower())
    if value is None:
        raise InvalidInput(f"unknown stage {stage!r} (expected one of "
                           f"{', '.join(MLFLOW_STAGE)})")
    return value


def parse_semver(text: str) -> _semver.Version:
    """The one semver parser: ``1.2.0`` or ``v1.2.0`` (no pre-release or build parts)."""
    match = SEMVER.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise InvalidInput(
            f"{str(text)[:40]!r} is not a semantic version (expected MAJOR.MINOR.PATCH)"
        )
    major, minor, patch = (int(part) for part in match.groups())
    return _semver.Version(major, minor, patch)


def is_semver(text: str) -> bool:
    return isinstance(text, str) and SEMVER.match(text) is not None


def label(name: str, semver: str | None, version: int | None) -> str:
    """``churn v1.2.0``, or ``churn #3`` for a version modelyard does not manage."""
    return f"{name} v{semver}" if semver else f"{name} #{version}"
