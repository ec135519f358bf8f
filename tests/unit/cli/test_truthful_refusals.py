"""User numbers are finite and refusals tell the truth (#31.12): pure checks, no services."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInput
from modelyard.registry.registration import check_request
from tests.support.helpers import run_cli


@settings(max_examples=200, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_a_registration_takes_finite_metrics_only(value: float) -> None:
    if math.isfinite(value):
        assert check_request("churn", None, None, {"accuracy": value}) == {"accuracy": value}
        return
    with pytest.raises(InvalidInput) as caught:
        check_request("churn", None, None, {"accuracy": value})
    assert caught.value.message == (f"metric 'accuracy' must be a finite number, not "
                                    f"{value!r}")


@settings(max_examples=30, deadline=None)
@given(text=st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-Infinity",
                             "1e999", "-1e400", "+inf", " inf "]))
def test_the_metric_option_refuses_a_value_that_is_not_finite(text: str) -> None:
    model = Path.cwd() / "model"
    done = run_cli("register", str(model), "--name", "churn", "-m", f"accuracy={text}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"Error: --metric accuracy: {text!r} is not a finite number"]
    assert not (Path.cwd() / ".modelyard").exists()


def test_the_metric_option_still_takes_a_finite_number_written_any_way() -> None:
    from modelyard.cli.shell import _number

    assert _number("a", "1e308") == 1e308
    assert _number("a", "-0.5") == -0.5


@pytest.mark.parametrize("target", ["/", "."])
def test_health_prometheus_names_a_folder_in_one_line(target: str) -> None:
    done = run_cli("health", "--prometheus", target)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"Error: --prometheus {target}: a folder, not a file to write; give the file's path, "
        "e.g. /var/lib/node_exporter/modelyard.prom"]
    assert "Traceback" not in done.stdout + done.stderr


def test_register_offers_the_option_its_symlink_refusal_recommends() -> None:
    done = run_cli("register", "--help")
    assert done.returncode == 0
    assert "--follow-links" in done.stdout
    refused = run_cli("register", "models:/m-0123abcd", "--name", "churn", "--follow-links")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "Error: --follow-links applies to a model folder, not to an MLflow URI"]
