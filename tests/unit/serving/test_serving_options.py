"""Every numeric serving option is finite and within its stated range (pure logic)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInput
from modelyard.serving.app import OPTION_RANGES, check_options, parse_arms
from modelyard.serving.routing import MAX_WEIGHT, Arm

NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30))


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(sorted(OPTION_RANGES)), value=NUMBERS)
def test_an_option_is_accepted_exactly_when_finite_and_in_range(key: str, value: float) -> None:
    low, high = OPTION_RANGES[key]
    fits = math.isfinite(value) and low <= value <= high
    if fits:
        check_options(**{key: value})
    else:
        with pytest.raises(InvalidInput, match=key.replace("_", "-")):
            check_options(**{key: value})


@pytest.mark.parametrize("text", ["production=nan", "production=inf", "staging=1e999",
                                  "staging=-1", f"staging={MAX_WEIGHT * 2}"])
def test_an_arm_weight_that_is_not_a_finite_share_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="invalid"):
        parse_arms([text])


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_arm_weights(weight: float) -> None:
    if math.isfinite(weight) and 0 <= weight <= MAX_WEIGHT:
        assert Arm("production", weight).weight == weight
    else:
        with pytest.raises(InvalidInput):
            Arm("production", weight)


@pytest.mark.parametrize("options", [["--max-wait-ms", "inf"], ["--poll-interval", "nan"],
                                     ["--ab", "production=1e999", "--ab", "staging=1e999"],
                                     ["--max-wait-ms", "1e9"], ["--poll-interval", "-1"]])
def test_serve_refuses_an_option_out_of_range_in_one_line(options: list[str]) -> None:
    from click.testing import CliRunner

    from modelyard.cli import main

    result = CliRunner().invoke(main, ["serve", "churn", *options])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
