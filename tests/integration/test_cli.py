"""The CLI shell, configuration, doctor, and the promise that secrets never show."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelyard.core.config import load_settings
from modelyard.errors import ConfigError
from tests.support.devstack import Stack, free_port
from tests.support.helpers import run_cli, run_cli_subprocess

SECRET = "s3cr3t-VALUE-do-not-print-9f8e7d"


def test_help_does_not_import_mlflow() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from modelyard.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
        "heavy = [m for m in ('mlflow', 'boto3', 'pandas', 'sklearn') if m in sys.modules]; "
        "print(','.join(heavy) or 'none')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "none"


def test_help_has_sections_and_version() -> None:
    done = run_cli_subprocess("--help", check=True)  # the real process starts and answers
    for section in ("Read the registry", "Change the registry", "Operate"):
        assert section in done.stdout
    assert "doctor" in done.stdout and "register" in done.stdout
    assert run_cli_subprocess("--version", check=True).stdout.strip().startswith("modelyard")


def test_embedded_default_paths(isolated: Path) -> None:
    settings = load_settings(environ={}, cwd=isolated)
    assert settings.resolved_tracking_uri == f"sqlite:///{isolated / '.modelyard' / 'mlflow.db'}"
    assert settings.resolved_vault == str(isolated / ".modelyard" / "vault")
    assert settings.is_embedded


def test_precedence_arguments_env_file(isolated: Path) -> None:
    (isolated / "modelyard.toml").write_text('experiment = "from-file"\nmax_versions = 3\n'
                                              '[policy]\ndefault_stage = "development"\n')
    env = {"MODELYARD_EXPERIMENT": "from-env", "MLFLOW_TRACKING_URI": "http://example:5000"}
    settings = load_settings(environ=env, cwd=isolated)
    assert settings.experiment == "from-env"
    assert settings.max_versions == 3
    assert settings.default_stage == "none"
    assert settings.tracking_uri == "http://example:5000"
    assert load_settings({"experiment": "arg"}, environ=env, cwd=isolated).experiment == "arg"


def test_pyproject_section_is_read(isolated: Path) -> None:
    (isolated / "pyproject.toml").write_text('[tool.modelyard]\nexperiment = "pp"\n')
    assert load_settings(environ={}, cwd=isolated).experiment == "pp"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('colour = "blue"\n', "colour: unknown key"),
        ("max_versions = \"many\"\n", "max_versions:"),
        ("experiment = [\n", "not valid TOML"),
        ('gates = ["accuracy about 0.9"]\n', "gates"),
    ],
)
def test_bad_config_is_one_clear_line(isolated: Path, content: str, expected: str) -> None:
    (isolated / "modelyard.toml").write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, cwd=isolated)
    assert "modelyard.toml" in info.value.message and expected in info.value.message
    done = run_cli("list")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "modelyard.toml" in lines[0] and expected in lines[0]
    assert "Traceback" not in done.stderr


def test_bad_env_value_names_the_environment(isolated: Path) -> None:
    done = run_cli("list", env={"MODELYARD_MAX_VERSIONS": "-4"})
    assert done.returncode == 2
    assert "environment: max_versions" in done.stderr and "Traceback" not in done.stderr


def test_user_error_exit_code_and_traceback_flag(isolated: Path) -> None:
    done = run_cli_subprocess("details", "nosuchmodel")  # the real exit code and stderr
    assert done.returncode == 3
    assert "Model 'nosuchmodel' not found" in done.stderr and "Traceback" not in done.stderr
    shown = run_cli_subprocess("--traceback", "details", "nosuchmodel")
    assert "Traceback" in shown.stderr
    as_json = run_cli("details", "nosuchmodel", "--json")
    assert json.loads(as_json.stderr)["error"] == "ModelNotFound"
    # The whole of stderr is the one red line: a read never creates the embedded registry
    # (MLflow's client would, logging its migrations at INFO on stderr).
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        "Error: Model 'nosuchmodel' not found"]
    assert not (isolated / ".modelyard").exists()


def test_reads_leave_a_new_folder_as_it_was_then_see_the_first_write(
        isolated: Path, tmp_path: Path) -> None:
    """Reads on a folder with no registry answer "empty" without creating one; the same
    ``Yard`` then sees what its first registration created."""
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from modelyard import Yard
    from modelyard.errors import ModelNotFound

    features = np.random.default_rng(0).normal(size=(20, 3))
    model_dir = tmp_path / "model"
    mlflow.sklearn.save_model(LogisticRegression().fit(features, features[:, 0] > 0),
                              str(model_dir), pip_requirements=["scikit-learn"])
    yard = Yard()
    assert yard.list_models() == []
    with pytest.raises(ModelNotFound):
        yard.details("churn")
    assert not (isolated / ".modelyard").exists()
    registered = yard.register_directory(model_dir, "churn")
    # Write paths list versions through the read-only SQLite reader once the file exists
    # (MLflow's client costs about 10 ms a search).
    from modelyard.backend.lean.reader import SqliteReader

    assert isinstance(yard.ctx.listing, SqliteReader)
    assert [m.name for m in yard.list_models()] == ["churn"]
    assert yard.details("churn", "latest").version == registered.version


def test_doctor_embedded_is_healthy(isolated: Path) -> None:
    done = run_cli("doctor", "--json", check=True)
    report = json.loads(done.stdout)
    assert report["ok"] and report["mode"] == "embedded"
    assert {c["component"] for c in report["checks"]} == {"tracking", "vault", "identity"}


def _secret_env(stack: Stack) -> dict[str, str]:
    env = stack.env()
    env["MLFLOW_TRACKING_PASSWORD"] = SECRET
    env["MLFLOW_TRACKING_TOKEN"] = SECRET
    env["MODELYARD_WEBHOOK_SECRET"] = SECRET
    return env


def test_doctor_on_the_team_stack(stack: Stack) -> None:
    env = _secret_env(stack)
    done = run_cli("doctor", "--json", env=env)
    report = json.loads(done.stdout)
    assert report["mode"] == "server"
    checks = {c["component"]: c for c in report["checks"]}
    # The session's server is shared by tests that each keep a vault of their own, so its
    # models may record other vaults: doctor must then say so (that is what the check is for)
    # and exit 1; everything else is sound.
    binding = checks.pop("registry+vault")
    assert binding["ok"] or "vault" in binding["detail"], binding
    assert done.returncode == (0 if binding["ok"] else 1), done.stdout
    assert {name: c["ok"] for name, c in checks.items()} == {
        "tracking": True, "vault": True, "s3": True, "identity": True}
    assert report["credentials"]["AWS_SECRET_ACCESS_KEY"] == "set"
    for output in (done.stdout, done.stderr, run_cli("doctor", env=env).stdout):
        assert SECRET not in output
        assert env["AWS_SECRET_ACCESS_KEY"] not in output


def test_doctor_names_s3_when_the_endpoint_is_down(stack: Stack) -> None:
    env = _secret_env(stack)
    env["MLFLOW_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens
    done = run_cli("doctor", "--json", env=env)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    broken = {c["component"] for c in report["checks"] if not c["ok"]}
    assert "s3" in broken and "tracking" not in broken
    text = run_cli("doctor", env=env)
    assert text.returncode == 1 and "Broken:" in text.stderr and "s3" in text.stderr
    for output in (done.stdout, done.stderr, text.stdout, text.stderr):
        assert SECRET not in output and env["AWS_SECRET_ACCESS_KEY"] not in output


def test_tracking_password_in_uri_is_redacted(isolated: Path) -> None:
    uri = f"http://bob:{SECRET}@127.0.0.1:{free_port()}"
    done = run_cli("doctor", "--json", env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 1
    assert SECRET not in done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert "***" in report["tracking_uri"]


def test_doctor_accepts_a_credentialed_tracking_uri(stack: Any) -> None:
    from tests.support.helpers import run_cli

    uri = stack.tracking_uri.replace("http://", "http://alice:pa55word@")
    done = run_cli("doctor", "--json", env={**stack.env(), "MLFLOW_TRACKING_URI": uri})
    assert "pa55word" not in done.stdout + done.stderr
    assert '"component": "tracking"' in done.stdout
    import json

    report = json.loads(done.stdout)
    tracking = next(c for c in report["checks"] if c["component"] == "tracking")
    assert tracking["ok"], tracking
