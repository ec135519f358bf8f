"""Configuration: precedence, the project root, seed-style keys, new keys, hostile files.

Pure logic: no services, no subprocesses (the CLI's one-line errors are in
tests/integration/test_cli.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from modelyard.core.config import find_config_file, find_project_root, load_settings
from modelyard.core.settings import Settings, parse_condition
from modelyard.errors import ConfigError

SECRET = "audit-k3y-do-not-print-5a4b3c"


def _error(tmp: Path, content: str | bytes, *, name: str = "modelyard.toml",
           environ: dict[str, str] | None = None) -> str:
    path = tmp / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ or {}, cwd=tmp)
    message = info.value.message
    assert "\n" not in message and "Traceback" not in message
    return message


# Precedence --------------------------------------------------------------------------------
def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text(
        'experiment = "file"\nuser = "file"\nmax_versions = 3\nhttp_retries = 1\n'
    )
    env = {"MODELYARD_EXPERIMENT": "env", "MODELYARD_USER": "env"}
    settings = load_settings({"experiment": "arg"}, environ=env, cwd=tmp_path)
    assert settings.experiment == "arg"  # arguments > environment
    assert settings.user == "env"  # environment > file
    assert settings.max_versions == 3 and settings.http_retries == 1  # file > defaults
    assert settings.pending_timeout == 120.0  # defaults
    assert load_settings({"experiment": None}, environ=env, cwd=tmp_path).experiment == "env"


def test_modelyard_variables_win_over_mlflow_ones(tmp_path: Path) -> None:
    env = {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLFLOW_REGISTRY_URI": "http://registry:5000",
        "MLFLOW_S3_ENDPOINT_URL": "http://s3:9000",
    }
    settings = load_settings(environ=env, cwd=tmp_path)
    assert settings.tracking_uri == "http://mlflow:5000"
    assert settings.registry_uri == "http://registry:5000"
    assert settings.s3_endpoint_url == "http://s3:9000"
    assert not settings.is_embedded
    env["MODELYARD_TRACKING_URI"] = "http://ours:5000"
    assert load_settings(environ=env, cwd=tmp_path).tracking_uri == "http://ours:5000"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("accuracy >= 0.8; f1 > 0.5", ["accuracy >= 0.8", "f1 > 0.5"]),
        ('["accuracy >= 0.8", "f1 > 0.5"]', ["accuracy >= 0.8", "f1 > 0.5"]),
        ("accuracy >= 0.8", ["accuracy >= 0.8"]),
    ],
)
def test_environment_lists_take_semicolons_or_json(tmp_path: Path, raw: str,
                                                   expected: list[str]) -> None:
    settings = load_settings(environ={"MODELYARD_GATES": raw}, cwd=tmp_path)
    assert settings.gates == expected


def test_environment_tables_and_stage_lists(tmp_path: Path) -> None:
    env = {
        "MODELYARD_REQUIRED_TAGS": "team=churn; owner = ann",
        "MODELYARD_BACKUP_STAGES": "Production",
        "MODELYARD_WEBHOOKS": '["http://a/hook", "http://b/hook"]',
    }
    settings = load_settings(environ=env, cwd=tmp_path)
    assert settings.required_tags == {"team": "churn", "owner": "ann"}
    assert settings.backup_stages == ["production"]
    assert settings.webhooks == ["http://a/hook", "http://b/hook"]
    as_json = load_settings(environ={"MODELYARD_REQUIRED_TAGS": '{"team": "x"}',
                                     "MODELYARD_BACKUP_STAGES": "[]"}, cwd=tmp_path)
    assert as_json.required_tags == {"team": "x"} and as_json.backup_stages == []


def test_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text('experiment = "file"\n')
    env = {"MODELYARD_EXPERIMENT": "", "MLFLOW_TRACKING_URI": ""}
    settings = load_settings(environ=env, cwd=tmp_path)
    assert settings.experiment == "file" and settings.tracking_uri is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MODELYARD_MAX_VERSIONS": "-4"}, "environment: max_versions:"),
        ({"MODELYARD_COLOUR": "blue"}, "environment: colour: unknown key"),
        ({"MODELYARD_GATES": '["accuracy >= 0.8"'}, "environment: gates: not valid JSON"),
        ({"MODELYARD_GATES": "accuracy about 0.8"}, "environment: gates"),
        ({"MODELYARD_HTTP_TIMEOUT": "inf"}, "environment: http_timeout:"),
        ({"MODELYARD_HTTP_RETRIES": "11"}, "environment: http_retries:"),
        ({"MODELYARD_BACKUP_STAGES": "staging;prod"}, "environment: backup_stages"),
        ({"MODELYARD_GATES": "[" * 5000}, "environment: gates: not valid JSON"),
    ],
)
def test_bad_environment_names_the_environment_and_key(tmp_path: Path, env: dict[str, str],
                                                       expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env, cwd=tmp_path)
    assert info.value.message.startswith(expected)
    assert "\n" not in info.value.message


def test_bad_argument_names_the_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^arguments: max_versions: "):
        load_settings({"max_versions": -1}, environ={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"^arguments: colour: unknown key$"):
        load_settings({"colour": "blue"}, environ={}, cwd=tmp_path)


def test_the_process_environment_is_never_read_when_a_mapping_is_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_EXPERIMENT", "leaked")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://leaked:5000")
    monkeypatch.setenv("MODELYARD_CONFIG", str(tmp_path / "nowhere.toml"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "leaked-cache"))
    before = dict(os.environ)
    settings = load_settings(environ={"HOME": str(tmp_path / "me")}, cwd=tmp_path)
    assert settings.experiment == "modelyard" and settings.tracking_uri is None
    assert settings.resolved_cache_dir == tmp_path / "me" / ".cache" / "modelyard"
    xdg = load_settings(environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    assert xdg.resolved_cache_dir == tmp_path / "xdg" / "modelyard"
    assert dict(os.environ) == before  # nothing written either


def test_the_default_environment_is_the_process_one(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_EXPERIMENT", "from-process")
    assert load_settings(cwd=tmp_path).experiment == "from-process"


# The project root -------------------------------------------------------------------------
def test_nearest_project_wins_from_a_subfolder(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = outer / "libs" / "inner"
    deep = inner / "src" / "pkg"
    deep.mkdir(parents=True)
    (outer / "modelyard.toml").write_text('experiment = "outer"\n')
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.modelyard]\n'
                                          'experiment = "inner"\n')
    assert find_project_root(deep) == inner
    assert find_project_root(inner) == inner
    assert find_project_root(outer / "libs") == outer
    assert find_project_root(deep / ".." / ".." / "..") == outer  # physical, not lexical
    settings = load_settings(environ={}, cwd=deep)
    assert settings.experiment == "inner"
    assert settings.project_root == str(inner)
    assert settings.home_path == inner / ".modelyard"
    assert settings.resolved_tracking_uri == f"sqlite:///{inner / '.modelyard' / 'mlflow.db'}"
    from_outer = load_settings(environ={}, cwd=outer / "libs")
    assert from_outer.experiment == "outer" and from_outer.home_path == outer / ".modelyard"


def test_a_subfolder_opens_the_same_registry_as_the_root(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text("")
    (tmp_path / "notebooks" / "eda").mkdir(parents=True)
    at_root = load_settings(environ={}, cwd=tmp_path)
    below = load_settings(environ={}, cwd=tmp_path / "notebooks" / "eda")
    assert below.resolved_tracking_uri == at_root.resolved_tracking_uri
    assert below.resolved_vault == at_root.resolved_vault == str(tmp_path / ".modelyard" / "vault")
    assert below.resolved_artifact_location == (tmp_path / ".modelyard" / "artifacts").as_uri()


def test_pyproject_without_our_table_is_passed_over(tmp_path: Path) -> None:
    sub = tmp_path / "pkg"
    sub.mkdir()
    (tmp_path / "modelyard.toml").write_text('experiment = "top"\n')
    (sub / "pyproject.toml").write_text('[project]\nname = "pkg"\n[tool.ruff]\nline-length = 1\n')
    assert find_project_root(sub) == tmp_path
    assert load_settings(environ={}, cwd=sub).experiment == "top"
    # Somebody else's broken pyproject.toml is not ours to refuse.
    (sub / "pyproject.toml").write_bytes(b"[project\n\xff\xfe")
    assert load_settings(environ={}, cwd=sub).experiment == "top"


def test_modelyard_toml_wins_over_pyproject_in_the_same_folder(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text('experiment = "own"\n')
    (tmp_path / "pyproject.toml").write_text('[tool.modelyard]\nexperiment = "pp"\n')
    found = find_config_file(tmp_path)
    assert found is not None and found[0] == tmp_path / "modelyard.toml"
    assert load_settings(environ={}, cwd=tmp_path).experiment == "own"


def test_outside_any_project_the_home_is_at_the_working_folder(tmp_path: Path) -> None:
    assert find_project_root(tmp_path) is None and find_config_file(tmp_path) is None
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.project_root is None
    assert settings.home_path == tmp_path / ".modelyard"
    assert Path(settings.home).is_absolute()


def test_relative_paths_are_anchored_where_they_were_written(tmp_path: Path) -> None:
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (tmp_path / "modelyard.toml").write_text(
        'home = "registry"\nvault = "store/vault"\nbackup = "s3://bucket/backup"\n'
        'cache_dir = "~/cache"\n'
    )
    settings = load_settings(environ={"HOME": str(tmp_path / "me")}, cwd=sub)
    assert settings.home_path == tmp_path / "registry"
    assert settings.resolved_vault == str(tmp_path / "store" / "vault")
    assert settings.backup == "s3://bucket/backup"
    assert settings.resolved_cache_dir == tmp_path / "me" / "cache"
    from_env = load_settings(environ={"MODELYARD_HOME": "mine"}, cwd=sub)
    assert from_env.home_path == sub / "mine"
    from_args = load_settings({"home": "args"}, environ={}, cwd=sub)
    assert from_args.home_path == sub / "args"


def test_modelyard_config_names_the_file_and_the_root(tmp_path: Path) -> None:
    elsewhere = tmp_path / "conf"
    work = tmp_path / "project"
    elsewhere.mkdir()
    work.mkdir()
    (work / "modelyard.toml").write_text('experiment = "found"\n')
    (elsewhere / "team.toml").write_text('experiment = "named"\n')
    settings = load_settings(environ={"MODELYARD_CONFIG": "../conf/team.toml"}, cwd=work)
    assert settings.experiment == "named"
    assert settings.project_root == str(elsewhere.resolve())
    assert settings.home_path == elsewhere.resolve() / ".modelyard"
    (elsewhere / "pyproject.toml").write_text('[tool.modelyard]\nexperiment = "pp"\n')
    named_pp = {"MODELYARD_CONFIG": str(elsewhere / "pyproject.toml")}
    assert load_settings(environ=named_pp, cwd=work).experiment == "pp"
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(environ={"MODELYARD_CONFIG": str(tmp_path / "missing.toml")}, cwd=work)
    with pytest.raises(ConfigError, match=r"^'.*a\\x00b\.toml': \(file\): file not found$"):
        load_settings(environ={"MODELYARD_CONFIG": "a\x00b.toml"}, cwd=work)
    (elsewhere / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"tool\.modelyard: no such table"):
        load_settings(environ=named_pp, cwd=work)


def test_where_settings_came_from_is_not_a_key(tmp_path: Path) -> None:
    assert "colour" not in Settings.model_fields
    for key in ("project_root", "notes"):
        message = _error(tmp_path, f'{key} = "x"\n')
        assert message.endswith(f"{key}: unknown key")


# Seed-style keys --------------------------------------------------------------------------
def test_seed_keys_that_map_one_to_one_are_read_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text(
        "max_model_versions = 7\narchive_old_versions = false\ns3_backup_enabled = false\n"
        '[policy]\ndefault_model_stage = "Staging"\n'
    )
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.max_versions == 7
    assert settings.default_stage == "staging"
    assert settings.backup_stages == []
    assert settings.archive_old_versions is False
    notes = " | ".join(settings.notes)
    for old, new in [("max_model_versions", "max_versions"),
                     ("default_model_stage", "default_stage"),
                     ("s3_backup_enabled", "backup_stages")]:
        assert f"{old} is deprecated; it is read as {new}" in notes
    assert all(note.startswith(str(tmp_path / "modelyard.toml")) for note in settings.notes)
    assert load_settings(environ={}, cwd=tmp_path / "..").notes == ()


def test_seed_backup_switch_and_environment_spelling(tmp_path: Path) -> None:
    env = {"MODELYARD_S3_BACKUP_ENABLED": "true", "MODELYARD_MAX_MODEL_VERSIONS": "4"}
    settings = load_settings(environ=env, cwd=tmp_path)
    assert settings.backup_stages == ["staging", "production"]
    assert settings.max_versions == 4
    assert all(note.startswith("environment: ") for note in settings.notes)
    assert len(settings.notes) == 2
    with pytest.raises(ConfigError, match=r"^environment: s3_backup_enabled: must be true"):
        load_settings(environ={"MODELYARD_S3_BACKUP_ENABLED": "sometimes"}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("content", "names"),
    [
        ("auto_promote_threshold = 0.9\n", "use auto_promote = 'accuracy >= 0.85'"),
        ('s3_model_prefix = "models/"\n', "use vault = 's3://bucket/prefix'"),
        ('versioning_strategy = "semantic"\n', "use bump/version at registration"),
        ("auto_register_model = true\n", "registration is explicit (Yard.register"),
    ],
)
def test_seed_keys_without_a_twin_are_refused_naming_ours(tmp_path: Path, content: str,
                                                          names: str) -> None:
    key = content.split(" ")[0]
    message = _error(tmp_path, content)
    assert f"modelyard.toml: {key}: not a modelyard key; " in message and names in message


def test_a_seed_key_and_its_twin_together_are_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, "max_model_versions = 3\nmax_versions = 4\n")
    assert "max_model_versions: set only max_versions" in message
    message = _error(tmp_path, 's3_backup_enabled = true\nbackup_stages = ["production"]\n')
    assert "s3_backup_enabled: set only backup_stages" in message


def test_seed_keys_in_arguments(tmp_path: Path) -> None:
    settings = load_settings({"max_model_versions": 2}, environ={}, cwd=tmp_path)
    assert settings.max_versions == 2 and settings.notes[0].startswith("arguments: ")
    with pytest.raises(ConfigError, match=r"^arguments: auto_register_model: "):
        load_settings({"auto_register_model": True}, environ={}, cwd=tmp_path)


# New keys ---------------------------------------------------------------------------------
def test_new_keys_defaults(tmp_path: Path) -> None:
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.backup_stages == ["staging", "production"]
    assert settings.http_timeout == 10.0 and settings.http_retries == 2
    assert settings.serve_poll_interval == 5.0 and settings.audit_key is None
    assert settings.notes == ()
    # Each Settings has its own list.
    assert Settings().backup_stages is not Settings().backup_stages


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("http_timeout = 0\n", "http_timeout"),
        ("http_timeout = inf\n", "http_timeout"),
        ("http_timeout = nan\n", "http_timeout"),
        ("http_retries = -1\n", "http_retries"),
        ("http_retries = 11\n", "http_retries"),
        ("serve_poll_interval = -1.0\n", "serve_poll_interval"),
        ('backup_stages = ["qa"]\n', "backup_stages"),
        ('backup_stages = "production"\n', "backup_stages"),
        ("pending_timeout = inf\n", "pending_timeout"),
        ("beat_production_margin = -inf\n", "beat_production_margin"),
    ],
)
def test_new_keys_are_bounded(tmp_path: Path, content: str, key: str) -> None:
    assert f"modelyard.toml: {key}" in _error(tmp_path, content)


def test_new_keys_in_range_are_read(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text(
        'http_timeout = 2.5\nhttp_retries = 0\nserve_poll_interval = 0.5\n'
        'backup_stages = ["Production", "development"]\n'
    )
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.http_timeout == 2.5 and settings.http_retries == 0
    assert settings.serve_poll_interval == 0.5
    assert settings.backup_stages == ["production", "none"]


def test_secrets_never_show(tmp_path: Path) -> None:
    env = {"MODELYARD_AUDIT_KEY": SECRET, "MODELYARD_WEBHOOK_SECRET": SECRET}
    settings = load_settings(environ=env, cwd=tmp_path)
    assert settings.audit_key is not None and settings.audit_key.get_secret_value() == SECRET
    assert settings.webhook_secret == SECRET
    for shown in (repr(settings), str(settings)):
        assert SECRET not in shown
    assert SECRET not in settings.model_dump_json(include={"audit_key"})
    # An error elsewhere in the same layer does not echo the secret either.
    env["MODELYARD_MAX_VERSIONS"] = SECRET
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env, cwd=tmp_path)
    assert SECRET not in info.value.message and "max_versions" in info.value.message


# Hostile input ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["accuracy >= nan", "accuracy >= inf", "accuracy > 1e999",
                                  "accuracy <= -1e400", "loss < NaN"])
def test_non_finite_thresholds_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError):
        parse_condition(text)
    assert "gates" in _error(tmp_path, f'gates = ["{text}"]\n')
    assert "auto_promote" in _error(tmp_path, f'auto_promote = "{text}"\n')


def test_parse_condition_reads_finite_numbers() -> None:
    assert parse_condition(" f1>=-0.5 ") == ("f1", ">=", -0.5)
    assert parse_condition("val.loss < 1e-3") == ("val.loss", "<", 0.001)


@pytest.mark.parametrize(
    "fmt",
    ["{major:99999999}", "{major:.99999999}", "{major:>999}", "{major:0100}",
     "{major:{minor}}", "{major.__class__}", "{0}", "{}", "{major:s}", "{major", "x" * 101,
     "{major!z}"],
)
def test_version_format_is_checked_without_rendering(tmp_path: Path, fmt: str) -> None:
    started = time.perf_counter()
    message = _error(tmp_path, f"version_format = '{fmt}'\n")
    assert time.perf_counter() - started < 0.5
    assert "modelyard.toml: version_format: " in message


def test_version_format_renders_numbers(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text("version_format = 'release-{major}.{minor:02d}'\n")
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.format_version("2.3.1") == "release-2.03"
    assert settings.format_version("2.3.1-rc.1+build") == "release-2.03"
    assert Settings().format_version("1.2.3") == "v1.2.3"
    assert Settings().format_version("4") == "v4.0.0"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'experiment = "\xff\xfe"\n', "(file): not valid UTF-8"),
        (b"x = " + b"[" * 5000, "(file): not valid TOML: nested too deeply"),
        (b"x = " + b"{a = " * 3000, "(file): not valid TOML"),
        (b"\x00\x01\x02\x89PNG\r\n\x1a\n", "(file): not valid UTF-8"),
        (b"\x00\x01\x02 = 3", "(file): not valid TOML"),
        (b"max_versions = 1" + b"0" * 5000, "(file): not valid TOML"),
        (b"max_versions = 1" + b"0" * 400, "max_versions:"),
        (b"pending_timeout = 1" + b"0" * 400, "pending_timeout:"),
        (b"experiment = 3\n", "experiment: Input should be a valid string"),
        (b"gates = 'accuracy > 1'\n", "gates: Input should be a valid list"),
        (b"required_tags = {a = {b = 1}}\n", "required_tags.a:"),
        (b"policy = 3\n", "policy: must be a table"),
        (b'"a\\nb" = 1\n', "'a\\nb': unknown key"),
        (b"a" + b".a" * 3000 + b" = 1\n", "a: unknown key"),
        (b"# " + b"x" * (1 << 20) + b"\n",
         "(file): larger than 1048576 bytes (the limit for a config file)"),
        (b"home = 2024-01-01\n", "home: Input should be a valid string"),
    ],
)
def test_hostile_config_files_give_one_line_naming_the_file(tmp_path: Path, content: bytes,
                                                            expected: str) -> None:
    message = _error(tmp_path, content)
    assert message.startswith(str(tmp_path / "modelyard.toml") + ": ")
    assert expected in message
    assert len(message) < 500


def test_hostile_pyproject_of_ours_names_the_file(tmp_path: Path) -> None:
    message = _error(tmp_path, b"[tool.modelyard]\nx = \xff\n", name="pyproject.toml")
    assert "pyproject.toml: (file): not valid UTF-8" in message
    message = _error(tmp_path, "[tool]\nmodelyard = 3\n", name="pyproject.toml")
    assert "pyproject.toml: tool.modelyard: must be a table" in message


def test_settings_stay_frozen_and_strict() -> None:
    settings = Settings()
    with pytest.raises(ValueError):
        settings.experiment = "changed"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Settings(colour="blue")  # type: ignore[call-arg]


# The seeds' variables, profiles and remaining keys ------------------------------------------
def test_seed_artifact_variables_map_to_the_artifact_location(tmp_path: Path) -> None:
    root = {"MLFLOW_ARTIFACT_ROOT": "s3://team/mlflow-artifacts"}
    bucket = {"MLFLOW_S3_BUCKET": "your-bucket"}
    assert load_settings(environ=root, cwd=tmp_path).artifact_location == (
        "s3://team/mlflow-artifacts")
    assert load_settings(environ=bucket, cwd=tmp_path).artifact_location == "s3://your-bucket"
    assert load_settings(environ={**bucket, **root}, cwd=tmp_path).artifact_location == (
        "s3://team/mlflow-artifacts")  # the full location wins over the bare bucket
    ours = {**root, **bucket, "MODELYARD_ARTIFACT_LOCATION": "gs://ours/artifacts"}
    assert load_settings(environ=ours, cwd=tmp_path).artifact_location == "gs://ours/artifacts"
    relative = load_settings(environ={"MLFLOW_ARTIFACT_ROOT": "mlruns"}, cwd=tmp_path)
    assert relative.artifact_location == str(tmp_path / "mlruns")
    assert load_settings(environ=bucket, cwd=tmp_path).resolved_artifact_location == (
        "s3://your-bucket")


@pytest.mark.parametrize("bucket", ["a/b", "UPPER", "x", "bad..dots", "with space", "-x-"])
def test_a_bucket_variable_that_is_no_bucket_is_refused(tmp_path: Path, bucket: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"MLFLOW_S3_BUCKET": bucket}, cwd=tmp_path)
    assert info.value.message.startswith("environment: MLFLOW_S3_BUCKET: ")
    assert "MLFLOW_ARTIFACT_ROOT=s3://BUCKET/PREFIX" in info.value.message


PROFILED = """max_versions = 3
vault = "vault"
[profile.production]
max_versions = 9
vault = "s3://team/vault"
[profile.production.policy]
gates = ["accuracy >= 0.9"]
[profile.dev]
default_stage = "Development"
"""


def test_environment_selects_a_profile(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text(PROFILED)
    plain = load_settings(environ={}, cwd=tmp_path)
    assert (plain.max_versions, plain.vault, plain.gates) == (3, str(tmp_path / "vault"), [])
    production = load_settings(environ={"ENVIRONMENT": "Production"}, cwd=tmp_path)
    assert production.max_versions == 9 and production.vault == "s3://team/vault"
    assert production.gates == ["accuracy >= 0.9"]
    ours = {"ENVIRONMENT": "production", "MODELYARD_PROFILE": "dev"}
    dev = load_settings(environ=ours, cwd=tmp_path)  # ours wins over the seeds' variable
    assert dev.max_versions == 3 and dev.default_stage == "none"
    assert any("Development is read as none" in note for note in dev.notes)
    # the environment still wins over the profile, as over the rest of the file
    env = {"ENVIRONMENT": "production", "MODELYARD_MAX_VERSIONS": "4"}
    assert load_settings(environ=env, cwd=tmp_path).max_versions == 4


def test_an_unknown_profile_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"ENVIRONMENT": "production"}, cwd=tmp_path)
    assert info.value.message == (
        "environment: ENVIRONMENT: no config file here has [profile.production]; add that "
        "table to modelyard.toml or unset ENVIRONMENT")
    (tmp_path / "modelyard.toml").write_text(PROFILED)
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"MODELYARD_PROFILE": "staging"}, cwd=tmp_path)
    assert info.value.message == (
        f"environment: MODELYARD_PROFILE: {tmp_path / 'modelyard.toml'} has no "
        "[profile.staging] (profiles: dev, production); add that table to modelyard.toml or "
        "unset MODELYARD_PROFILE")


@pytest.mark.parametrize(
    ("content", "wanted"),
    [
        ("[profile.production]\ncolour = 1\n", "[profile.production]: colour: unknown key"),
        ("[profile.production]\nmax_versions = -1\n", "[profile.production]: max_versions: "),
        ("profile = 3\n", "modelyard.toml: profile: must hold tables: [profile.NAME]"),
        ("[profile]\nmax_versions = 3\n", "profile: must hold tables"),
        ("[profile.production]\nauto_register_model = true\n",
         "[profile.production]: auto_register_model: not a modelyard key"),
    ],
)
def test_bad_profiles_are_refused_even_when_not_chosen(tmp_path: Path, content: str,
                                                       wanted: str) -> None:
    assert wanted in _error(tmp_path, content)


def test_auto_increment_is_accepted_when_true_and_refused_when_false(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text("auto_increment = true\n")
    notes = load_settings(environ={}, cwd=tmp_path).notes
    assert len(notes) == 1 and "auto_increment is always on" in notes[0]
    message = _error(tmp_path, "auto_increment = false\n")
    assert message.endswith("auto_increment: not a modelyard key; versions are always numbered "
                            "automatically: choose one with bump/version at registration")
    assert _error(tmp_path, 'auto_increment = "often"\n').endswith(
        "auto_increment: must be true or false")
    env = {"MODELYARD_AUTO_INCREMENT": "true"}
    assert load_settings(environ=env, cwd=tmp_path / "..").notes[0].startswith("environment: ")


def test_every_key_of_the_seed_config_is_accepted_or_answered(tmp_path: Path) -> None:
    """The seed's MLFLOW_CONFIG, key by key: read (maybe with a note) or refused naming ours."""
    seed = {
        "auto_register_model": ("true", "registration is explicit"),
        "default_model_stage": ('"Staging"', None),
        "auto_promote_threshold": ("0.85", "use auto_promote"),
        "max_model_versions": ("10", None),
        "archive_old_versions": ("true", None),
        "production_approval_required": ("false", None),
        "versioning_strategy": ('"semantic"', "use bump/version at registration"),
        "version_format": ('"v{major}.{minor}.{patch}"', None),
        "auto_increment": ("true", None),
        "s3_model_prefix": ('"models/openstack_rca"', "use vault = 's3://bucket/prefix'"),
        "s3_backup_enabled": ("true", None),
    }
    for key, (value, refusal) in seed.items():
        (tmp_path / "modelyard.toml").write_text(f"{key} = {value}\n")
        if refusal is None:
            load_settings(environ={}, cwd=tmp_path)
        else:
            message = _error(tmp_path, f"{key} = {value}\n")
            assert f"{key}: not a modelyard key; " in message and refusal in message


def test_mlflow_run_default_tracking_uri_does_not_replace_the_projects_registry(
        tmp_path: Path) -> None:
    """`mlflow run` passes MLflow's default (./mlflow.db at the project) to its entry points
    (issue #24.10): inside a modelyard project the project's registry is used; a tracking URI
    the user chose, or one outside `mlflow run`, is kept."""
    (tmp_path / "modelyard.toml").write_text("[policy]\n")
    launcher = {"MLFLOW_RUN_ID": "abc", "MLFLOW_EXPERIMENT_ID": "0",
                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    settings = load_settings(environ=launcher, cwd=tmp_path)
    assert settings.resolved_tracking_uri == f"sqlite:///{tmp_path / '.modelyard' / 'mlflow.db'}"
    files = {**launcher, "MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri()}
    assert ".modelyard" in load_settings(environ=files, cwd=tmp_path).resolved_tracking_uri
    chosen = {**launcher, "MLFLOW_TRACKING_URI": "http://mlflow.example.com:5000"}
    assert load_settings(environ=chosen, cwd=tmp_path).resolved_tracking_uri == \
        "http://mlflow.example.com:5000"
    plain = {"MLFLOW_TRACKING_URI": launcher["MLFLOW_TRACKING_URI"]}
    assert load_settings(environ=plain, cwd=tmp_path).resolved_tracking_uri == \
        launcher["MLFLOW_TRACKING_URI"]
