"""Property tests: whatever an import document holds, ``parse_export`` returns a validated
document or raises one ``InvalidInput`` line; nothing else escapes, and nothing it accepts
can name a file outside the model folder or break the audit chain check.

Documents are a valid template with one value replaced at a random place by a value of any
JSON type (deep nesting and huge numbers included), plus raw bytes and arbitrary JSON.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInput
from modelyard.registry.export_format import check_exported_trail, parse_export
from modelyard.trail.audit import AuditEvent

SHA = "a" * 64


def _template() -> dict[str, Any]:
    manifest = {"MLmodel": {"sha256": SHA, "size": 10}, "model.pkl": {"sha256": "b" * 64,
                                                                    "size": 20}}
    from modelyard.store.vault import Manifest

    manifest_sha = Manifest({p: (e["sha256"], e["size"]) for p, e in manifest.items()}).sha256
    first = AuditEvent(seq=1, who="ana", when="2026-01-01T00:00:00+00:00", action="register",
                       name="churn", version=1, semver="1.0.0")
    first.hash = first.compute_hash()
    return {
        "format": "modelyard-export", "format_version": 1, "exported_at": "now",
        "tracking_uri": "sqlite:///x.db",
        "models": [{
            "name": "churn", "description": "", "tags": {}, "aliases": {"production": 1},
            "audit": [first.to_dict()],
            "versions": [{
                "name": "churn", "version": 1, "creation_timestamp": 1,
                "last_updated_timestamp": 1, "tags": {"modelyard.semver": "1.0.0"},
                "aliases": ["production"], "semver": "1.0.0", "stage": "production",
                "manifest_sha256": manifest_sha, "manifest": manifest,
                "metrics": {"accuracy": 0.9}, "params": {"depth": "3"},
                "artifact_location": "s3://bucket/1",
            }],
        }],
    }


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
_DEEP: list[Any] = []
for _ in range(5000):
    _DEEP = [_DEEP]
HOSTILE = st.sampled_from([
    "../../etc/passwd", "/etc/passwd", "C:\\x", "", "\x00", "1.0", "01.0.0", "v1.0.0",
    "production", "latest", "v3", "a" * 300, 10**4000, -1, 1e308, float("inf"),
    _DEEP,
])


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += _paths(value, (*prefix, index))
    return out


PATHS = _paths(_template())[1:]


def _check(doc: Any) -> None:
    try:
        parsed = parse_export(doc)
    except InvalidInput as exc:
        assert "\n" not in exc.message and exc.message
        return
    for model in parsed.models:
        for version in model.versions:
            for path in version.manifest or {}:
                assert not path.startswith("/") and ".." not in path.split("/")
        try:  # the import's planning step, before anything is written
            check_exported_trail(model)
        except InvalidInput as exc:
            assert "\n" not in exc.message and exc.message


def test_the_template_is_valid() -> None:
    parsed = parse_export(_template())
    assert parsed.models[0].versions[0].semver == "1.0.0"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(where=st.sampled_from(PATHS), value=JSON | HOSTILE, delete=st.booleans())
def test_any_single_change_parses_or_is_one_line(where: tuple[Any, ...], value: Any,
                                                 delete: bool) -> None:
    doc = copy.deepcopy(_template())
    parent = doc
    for part in where[:-1]:
        parent = parent[part]
    if delete and isinstance(parent, dict):
        parent.pop(where[-1])
    else:
        parent[where[-1]] = value
    _check(doc)
    try:
        text = json.dumps(doc)
    except (ValueError, OverflowError, RecursionError):
        return
    _check(text)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=JSON | st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_input_parses_or_is_one_line(doc: Any) -> None:
    _check(doc)
