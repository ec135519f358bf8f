"""Property tests: whatever the config file, environment or arguments hold, load_settings
returns Settings or raises one ConfigError line; nothing else escapes.

Documents are built from the real keys (plus seed-style and junk keys) with values of
every TOML type, written by the small TOML writer below; raw bytes and spliced documents
cover what no writer would produce.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.core.config import load_settings
from modelyard.core.settings import Settings, parse_condition
from modelyard.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REAL_KEYS = sorted(Settings.model_fields)
SEED_KEYS = ["max_model_versions", "default_model_stage", "s3_backup_enabled",
             "archive_old_versions", "auto_promote_threshold", "s3_model_prefix",
             "versioning_strategy", "auto_register_model", "auto_increment"]
KEYS = st.one_of(st.sampled_from([*REAL_KEYS, *SEED_KEYS, "policy"]),
                 st.text(max_size=12))
PLAUSIBLE = st.sampled_from([
    "accuracy >= 0.85", "f1 > 0.5", "loss < nan", "auc >= 1e999", "staging", "Production",
    "development", "qa", "v{major}.{minor}", "{major:99999999}", "{major:02d}", "{minor!r}",
    "s3://bucket/prefix", "http://user:pass@host:5000", "~/x", "../up", "", "true", "0",
    "team=churn;owner=ann", "a >= 1; b < 2", "[1, 2", '["accuracy >= 0.9"]',
])
CONDITIONS = st.builds(
    "{} {} {}".format,
    st.sampled_from(["accuracy", "val.loss", "f1-macro", "a b", ""]),
    st.sampled_from([">=", "<=", ">", "<", "==", "=>", "about"]),
    st.one_of(st.floats().map(repr), st.integers().map(str),
              st.sampled_from(["nan", "inf", "-inf", "1e999", "-1e400", "0.85", "1" * 400,
                               "\u00b2", "1.2.3", "--1", "1e", "0x10"])),
)
NEAR_VALID = st.one_of(
    PLAUSIBLE, CONDITIONS, st.lists(st.one_of(PLAUSIBLE, CONDITIONS), max_size=3),
    st.floats(), st.integers(min_value=-3, max_value=20), st.booleans(),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.integers(min_value=-3, max_value=20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    PLAUSIBLE,
    st.dates(),
    st.datetimes(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=8,
)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=8)
HYPOTHESIS = settings(max_examples=200, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture,
                                             HealthCheck.too_slow])


# A tiny TOML writer -----------------------------------------------------------------------
def toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\' or not (" " <= char <= "~"):
            out.append(f"\\U{ord(char):08X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    pairs = (f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items())
    return "{" + ", ".join(pairs) + "}"


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in data.items())


def test_the_writer_writes_toml() -> None:
    data = {"a": [1, 2.5, float("inf")], "b\n": {"c": "\u00e9\"\\"}, "d": datetime.date(2024, 1, 2)}
    text = toml_document(data)
    assert tomllib.loads(text)["b\n"] == {"c": "\u00e9\"\\"}
    assert "nan" in toml_value(float("nan"))


# The property -----------------------------------------------------------------------------
def _loads_or_refuses(load: Callable[[], Settings], outcomes: list[str]) -> None:
    try:
        loaded = load()
    except ConfigError as exc:
        message = exc.message
        assert message and "\n" not in message and len(message) < 5000, message
        outcomes.append("refused")
        return
    # What was accepted is usable: no traceback later either.
    assert loaded.home_path.is_absolute()
    assert isinstance(loaded.format_version("1.2.3"), str)
    for condition in [*loaded.gates, *([loaded.auto_promote] if loaded.auto_promote else [])]:
        assert math.isfinite(parse_condition(condition)[2])
    for number in (loaded.pending_timeout, loaded.http_timeout, loaded.serve_poll_interval,
                   loaded.beat_production_margin):
        assert math.isfinite(number)
    repr(loaded)
    outcomes.append("loaded")


def test_random_documents_load_or_give_one_line(tmp_path: Path) -> None:
    outcomes: list[str] = []

    @HYPOTHESIS
    @given(data=DOCUMENTS,
           plausible=st.dictionaries(st.sampled_from([*REAL_KEYS, *SEED_KEYS]), NEAR_VALID,
                                     max_size=6),
           where=st.sampled_from(["modelyard.toml", "policy", "pyproject.toml"]))
    def check(data: dict[str, Any], plausible: dict[str, Any], where: str) -> None:
        data = {**data, **plausible}
        if where == "policy":
            data = {"policy": data}
        elif where == "pyproject.toml":
            data = {"project": {"name": "x"}, "tool": {"modelyard": data}}
        text = toml_document(data)
        assert tomllib.loads(text) is not None  # the writer wrote TOML: the test reaches us
        name = "pyproject.toml" if where == "pyproject.toml" else "modelyard.toml"
        for stale in folder.iterdir():
            stale.unlink()
        (folder / name).write_text(text, encoding="utf-8")
        _loads_or_refuses(lambda: load_settings(environ={}, cwd=folder), outcomes)

    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder: each example rewrites the file
    check()
    assert {"loaded", "refused"} <= set(outcomes)


def test_random_bytes_and_spliced_documents_give_one_line(tmp_path: Path) -> None:
    outcomes: list[str] = []

    def spliced(document: dict[str, Any], cut: int, junk: bytes) -> bytes:
        text = b"[tool.modelyard]\n" + toml_document(document).encode()
        cut = min(cut, len(text))
        return text[:cut] + junk + text[cut:]

    @HYPOTHESIS
    @given(
        name=st.sampled_from(["modelyard.toml", "pyproject.toml"]),
        raw=st.one_of(
            st.binary(max_size=2000),
            st.builds(spliced, DOCUMENTS, st.integers(min_value=0, max_value=2000),
                      st.binary(max_size=64)),
        ),
    )
    def check(name: str, raw: bytes) -> None:
        if name == "modelyard.toml":
            raw = raw.removeprefix(b"[tool.modelyard]\n")
        for stale in folder.iterdir():
            stale.unlink()
        (folder / name).write_bytes(raw)
        _loads_or_refuses(lambda: load_settings(environ={}, cwd=folder), outcomes)

    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    check()
    assert "refused" in outcomes


ENV_NAMES = st.one_of(
    st.sampled_from([f"MODELYARD_{key.upper()}" for key in [*REAL_KEYS, *SEED_KEYS]]),
    st.sampled_from(["MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_S3_ENDPOINT_URL",
                     "HOME", "XDG_CACHE_HOME", "modelyard_home", "MODELYARD_"]),
    st.text(max_size=10).map(lambda tail: "MODELYARD_" + tail),
    st.text(max_size=10),
)
ENV_VALUES = st.one_of(
    st.text(max_size=40), PLAUSIBLE, CONDITIONS,
    st.lists(CONDITIONS, max_size=3).map("; ".join),
    st.lists(CONDITIONS, max_size=3).map(json.dumps),
    VALUES.map(lambda v: json.dumps(v, default=str)),
    st.integers().map(str), st.floats().map(str),
)
CONFIG_NAMES = st.one_of(
    st.none(),
    st.sampled_from(["modelyard.toml", "missing.toml", ".", "", "~/x.toml", "pyproject.toml",
                     "a\x00b.toml", "../" * 40 + "x.toml", "/dev/null", "/etc"]),
    st.text(max_size=20),
)


def test_random_environments_load_or_give_one_line(tmp_path: Path) -> None:
    outcomes: list[str] = []

    @HYPOTHESIS
    @given(environ=st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=6), config=CONFIG_NAMES)
    def check(environ: dict[str, str], config: str | None) -> None:
        if config is not None:
            environ = {**environ, "MODELYARD_CONFIG": config}
        _loads_or_refuses(lambda: load_settings(environ=environ, cwd=tmp_path), outcomes)

    (tmp_path / "modelyard.toml").write_text('experiment = "file"\n')
    check()
    assert {"loaded", "refused"} <= set(outcomes)


def test_random_arguments_load_or_give_one_line(tmp_path: Path) -> None:
    outcomes: list[str] = []

    @HYPOTHESIS
    @given(overrides=st.dictionaries(KEYS, st.one_of(st.none(), VALUES), max_size=5))
    def check(overrides: dict[str, Any]) -> None:
        _loads_or_refuses(lambda: load_settings(overrides, environ={}, cwd=tmp_path),
                          outcomes)

    check()
    assert {"loaded", "refused"} <= set(outcomes)


@HYPOTHESIS
@given(text=st.one_of(CONDITIONS, st.text(max_size=40)))
def test_parse_condition_gives_a_finite_number_or_refuses(text: str) -> None:
    try:
        _metric, _op, number = parse_condition(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(number)


@pytest.mark.parametrize("environ", [
    {"MODELYARD_CONFIG": "~\x00"},  # found by the property above: expanduser raised ValueError
    {"MODELYARD_HOME": "~\x00"},
    {"MODELYARD_CACHE_DIR": "cache\x00"},
    {"MODELYARD_VAULT": "vault\x00"},
])
def test_a_nul_in_a_path_is_refused_in_one_line(tmp_path: Path, environ: dict[str, str]
                                                ) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(environ=environ, cwd=tmp_path)
    assert "\n" not in refused.value.message


def test_random_profiles_and_seed_variables_load_or_give_one_line(tmp_path: Path) -> None:
    """[profile.NAME] tables chosen by ENVIRONMENT / MODELYARD_PROFILE, and the seeds'
    artifact variables, with any values."""
    outcomes: list[str] = []
    names = st.sampled_from(["production", "Production", "dev", "", "a b", "\u00e9"])

    @HYPOTHESIS
    @given(base=st.dictionaries(st.sampled_from([*REAL_KEYS, *SEED_KEYS]), NEAR_VALID,
                                max_size=3),
           profiles=st.dictionaries(names, st.one_of(
               st.dictionaries(st.sampled_from([*REAL_KEYS, *SEED_KEYS, "policy"]), NEAR_VALID,
                               max_size=3), SCALARS), max_size=3),
           environ=st.dictionaries(
               st.sampled_from(["ENVIRONMENT", "MODELYARD_PROFILE", "MLFLOW_S3_BUCKET",
                                "MLFLOW_ARTIFACT_ROOT", "MODELYARD_ARTIFACT_LOCATION"]),
               st.one_of(names, st.text(max_size=20),
                         st.sampled_from(["my-bucket", "s3://b/p", "gs://b/p", "a/b"])),
               max_size=3))
    def check(base: dict[str, Any], profiles: dict[str, Any], environ: dict[str, str]) -> None:
        text = toml_document({**base, "profile": profiles} if profiles else base)
        (folder / "modelyard.toml").write_text(text, encoding="utf-8")
        environ = {k: v for k, v in environ.items() if "\x00" not in v}
        _loads_or_refuses(lambda: load_settings(environ=environ, cwd=folder), outcomes)

    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    check()
    assert {"loaded", "refused"} <= set(outcomes)
