"""Pure logic: names, references, semvers, bump rules, manifests, the audit chain."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.core.names import (
    check_alias,
    check_name,
    check_tag_key,
    normalize_stage,
    parse_semver,
)
from modelyard.core.records import VersionRecord
from modelyard.core.refs import VersionRef, resolve, split_target
from modelyard.core.versioning import Fingerprint, apply_bump, check_explicit, decide_bump
from modelyard.errors import AuditTampered, InvalidInput, InvalidRef, VersionConflict
from modelyard.store.storage import LocalStore
from modelyard.store.vault import Manifest
from modelyard.trail.audit import AuditLog

BOUNDED = settings(max_examples=300, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])


@BOUNDED
@given(st.text(max_size=300))
def test_any_reference_parses_or_is_refused_clearly(text: str) -> None:
    try:
        ref = VersionRef.parse(text)
    except InvalidRef as exc:
        assert "\n" not in exc.message.strip() or "\n" in text
        return
    assert ref.kind in ("number", "semver", "latest", "alias")
    if ref.kind == "number":
        assert 1 <= int(ref.value) <= 10**12


@pytest.mark.parametrize("text", ["0", "9" * 5000, "v1.2", "1.2.3.4", "@", "a b", "archived",
                                  "none"])
def test_hostile_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidRef):
        VersionRef.parse(text)


@pytest.mark.parametrize("text", ["²", "1²"])
def test_digits_that_are_not_decimal_are_never_version_numbers(text: str) -> None:
    # str.isdigit accepts them and int() then fails; they are (unicode) alias names at most.
    assert VersionRef.parse(text).kind == "alias"


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("3", "number", "3"), ("007", "number", "7"), ("v1.2.0", "semver", "1.2.0"),
    ("1.2.0", "semver", "1.2.0"), ("latest", "latest", "latest"),
    ("Production", "alias", "production"), ("@champion", "alias", "champion"),
])
def test_references(text: str, kind: str, value: str) -> None:
    ref = VersionRef.parse(text)
    assert (ref.kind, ref.value) == (kind, value)


@BOUNDED
@given(st.text(max_size=200))
def test_names_are_checked_without_surprises(text: str) -> None:
    try:
        assert check_name(text) == text
    except InvalidInput:
        return
    assert text.isascii() and len(text) <= 128 and "/" not in text and "@" not in text


def test_name_rules() -> None:
    assert check_name("churn-v2.model_1") == "churn-v2.model_1"
    for bad in ["", "-x", "a/b", "a@b", "a b", "é", "x" * 129, ".."]:
        with pytest.raises(InvalidInput):
            check_name(bad)


def test_alias_and_tag_rules() -> None:
    assert check_alias("champion") == "champion"
    for bad in ["production", "Staging", "latest", "v3", "a.b", ""]:
        with pytest.raises(InvalidInput):
            check_alias(bad)
    assert check_tag_key("team") == "team"
    for bad in ["modelyard.stage", "a=b", " ", ""]:
        with pytest.raises(InvalidInput):
            check_tag_key(bad)
    assert normalize_stage("Development") == "none"
    with pytest.raises(InvalidInput):
        normalize_stage("heaven")


@BOUNDED
@given(st.text(alphabet=st.characters(categories=["Nd"]), min_size=1, max_size=12))
def test_digits_of_any_script_are_a_version_number_never_an_alias(
        digits: str) -> None:
    with pytest.raises(InvalidInput, match="all digits"):
        check_alias(digits)
    number = int(digits)  # as MLflow reads a version number
    if 1 <= number <= 10**12:
        assert VersionRef.parse(digits) == VersionRef("number", str(number), digits)
    else:
        with pytest.raises(InvalidRef, match="run from 1"):
            VersionRef.parse(digits)
    assert VersionRef.parse("@" + digits).kind == "alias"  # one set around modelyard


@BOUNDED
@given(st.text(alphabet=string.digits + ".v-+abc ", max_size=40))
def test_semver_parser_is_the_one_rule(text: str) -> None:
    try:
        version = parse_semver(text)
    except InvalidInput:
        return
    assert str(version) == text.strip().removeprefix("v")


def test_split_target() -> None:
    assert split_target("churn@v1.2.0") == ("churn", "v1.2.0")
    assert split_target("churn") == ("churn", None)
    with pytest.raises(InvalidRef):
        split_target("@v1")
    with pytest.raises(InvalidRef):
        split_target("churn@")


def _record(number: int, semver: str, aliases: list[str] | None = None) -> VersionRecord:
    return VersionRecord(name="m", version=number, run_id=None, source="", status="READY",
                         created_ms=0, updated_ms=0, description="",
                         tags={"modelyard.semver": semver}, aliases=aliases or [])


def test_resolve_and_nearest_hint() -> None:
    versions = [_record(1, "1.0.0"), _record(2, "1.1.0", ["production"])]
    assert resolve("m", VersionRef.parse("v1.1.0"), versions).version == 2
    assert resolve("m", VersionRef.parse("production"), versions).version == 2
    assert resolve("m", VersionRef.parse("latest"), versions).version == 2
    with pytest.raises(Exception, match=r"nearest: v1\.1\.0"):
        resolve("m", VersionRef.parse("v1.1.1"), versions)


def test_bump_rules() -> None:
    base = Fingerprint(inputs=[("a", "double", True), ("b", "long", True)], data={"d": "1"},
                       params={"depth": "3"}, model_class="RF")
    assert decide_bump(base, None).bump == "initial"
    removed = Fingerprint(inputs=[("a", "double", True)], data={"d": "1"}, model_class="RF")
    assert decide_bump(removed, base).bump == "major"
    optional = Fingerprint(inputs=[*(base.inputs or []), ("c", "string", False)],
                           data={"d": "1"}, params={"depth": "3"}, model_class="RF")
    assert decide_bump(optional, base).bump == "minor"
    data = Fingerprint(inputs=base.inputs, data={"d": "2"}, params={"depth": "3"},
                       model_class="RF")
    assert decide_bump(data, base).bump == "minor"
    params = Fingerprint(inputs=base.inputs, data={"d": "1"}, params={"depth": "4"},
                         model_class="RF")
    decision = decide_bump(params, base)
    assert decision.bump == "patch" and "depth 3 -> 4" in decision.reason
    assert apply_bump(None, "patch") == "1.0.0"
    assert apply_bump("1.2.3", "minor") == "1.3.0"
    with pytest.raises(VersionConflict):
        check_explicit("m", "1.2.3", "1.2.3")


def test_manifest_catches_changed_missing_and_extra_files(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors: {}")
    (tmp_path / "model.pkl").write_bytes(b"\x00" * 10)
    manifest = Manifest.of_directory(tmp_path)
    assert json.loads(manifest.canonical())["model.pkl"]["size"] == 10
    manifest.verify_directory(tmp_path, label="m", semver="1.0.0")
    (tmp_path / "model.pkl").write_bytes(b"\x01" * 10)
    with pytest.raises(Exception, match=r"model\.pkl does not match"):
        manifest.verify_directory(tmp_path, label="m", semver="1.0.0")


def test_audit_chain_detects_edits_and_removals(tmp_path: Path) -> None:
    log = AuditLog(LocalStore(tmp_path), "m")
    for index in range(3):
        log.append(lambda prev, i=index: {"action": f"a{i}", "stages": {}}, who="alice")
    assert log.verify() == 3
    key = tmp_path / "audit" / "m" / "0000000002.json"
    body = json.loads(key.read_text())
    body["who"] = "mallory"
    key.write_text(json.dumps(body))
    with pytest.raises(AuditTampered, match="event 2 was modified"):
        log.verify()
