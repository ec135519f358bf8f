"""What replicas must agree on without talking to each other (pure logic, no services).

The routing key's point is the same in every process whatever its hash seed; a canary ramp is
measured from a moment given to every replica alike (``--canary-start``), never from each
process's own start; the routing header is configurable and refused in one line when it is
not a header name. The end-to-end check with three serve processes is
tests/integration/test_replicas.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInput
from modelyard.serving.app import check_header
from modelyard.serving.routing import (
    Arm,
    CanaryRamp,
    Router,
    key_point,
    parse_moment,
    ramp_id,
)

KEYS = ["customer-42", "", "ü-ключ-鍵", "x" * 500, "\ud800 lone surrogate"]


def test_key_point_is_the_same_in_processes_with_different_hash_seeds() -> None:
    """Python's own hash() of a str differs per process (PYTHONHASHSEED); the key's point
    must not, or a user would be bounced between arms by whichever replica answers."""
    script = ("import json, sys; from modelyard.serving.routing import key_point; "
              "print(json.dumps([key_point(k) for k in json.loads(sys.argv[1])]))")
    here = [key_point(k) for k in KEYS]
    seen = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script, json.dumps(KEYS)], env=env,
                             capture_output=True, text=True, check=True, timeout=60)
        seen.append(json.loads(out.stdout))
    assert seen[0] == seen[1] == here
    # Fixed for good: a release that changed the hash would reshuffle every sticky user.
    assert key_point("customer-42") == int.from_bytes(
        hashlib.blake2b(b"customer-42", digest_size=8).digest(), "big") / 2**64


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_key_has_one_point_in_the_unit_interval(key: str) -> None:
    point = key_point(key)
    assert 0.0 <= point < 1.0 and point == key_point(str(key))


def test_a_ramp_given_one_start_picks_the_same_arm_for_every_key_whenever_each_began() -> None:
    """Two routers built an hour apart (two replicas) with the same anchor agree on every key
    at the same moment; measured from their own starts they would not."""
    ramp = CanaryRamp.parse("staging:10->90 over 2h")
    now = [1_800_000_000.0]

    def clock() -> float:
        return now[0]

    anchor = now[0] - 1800
    early = Router([Arm("production", 100)], canary=ramp, clock=clock)
    early.anchor(anchor)
    now[0] += 3600  # the second replica starts an hour later
    late = Router([Arm("production", 100)], canary=ramp, clock=clock)
    own_start = late.weights()
    late.anchor(anchor)
    keys = [f"user-{i}" for i in range(2000)]
    assert [early.pick(k) for k in keys] == [late.pick(k) for k in keys]
    assert early.weights() == late.weights() == {"staging": 70.0, "production": 30.0}
    assert own_start["staging"] == 10.0  # without the shared anchor it would start over


def test_ramp_id_names_the_model_the_arms_the_version_and_the_shape() -> None:
    ramp = CanaryRamp.parse("staging:5->50 over 10m")
    same = ramp_id("churn", "production", ramp, 3)
    assert same == ramp_id("churn", "production", CanaryRamp.parse("staging:5->50 over 600s"), 3)
    others = {ramp_id("churn", "production", ramp, 4), ramp_id("other", "production", ramp, 3),
              ramp_id("churn", "champion", ramp, 3),
              ramp_id("churn", "production", CanaryRamp.parse("staging:5->60 over 10m"), 3)}
    assert same not in others and len(others) == 4


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-05-01T09:00:00Z", datetime(2026, 5, 1, 9, tzinfo=timezone.utc).timestamp()),
    ("2026-05-01T11:00:00+02:00", datetime(2026, 5, 1, 9, tzinfo=timezone.utc).timestamp()),
    ("2026-05-01T09:00:00", datetime(2026, 5, 1, 9, tzinfo=timezone.utc).timestamp()),
    ("1777626000", 1777626000.0), (" 1777626000.5 ", 1777626000.5),
])
def test_a_canary_start_is_an_iso_moment_or_epoch_seconds(text: str, expected: float) -> None:
    assert parse_moment(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.floats(allow_nan=True, allow_infinity=True).map(str),
                 st.sampled_from(["10m", "1h", "-5", "nan", "inf", "1e30", "tomorrow"])))
def test_a_canary_start_is_parsed_or_refused_in_one_line(text: str) -> None:
    try:
        moment = parse_moment(text)
    except InvalidInput as exc:
        assert "\n" not in exc.message and exc.message.startswith("invalid moment")
    else:
        assert math.isfinite(moment) and moment >= 0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=140))
def test_a_route_header_is_an_http_field_name_or_refused(name: str) -> None:
    token = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    if name and len(name) <= 128 and set(name) <= token:
        assert check_header(name) == name.lower()
    else:
        with pytest.raises(InvalidInput, match="invalid route header"):
            check_header(name)


@pytest.mark.parametrize("options", [
    ["--canary-start", "2026-05-01T09:00:00Z"],  # no ramp to start
    ["--canary", "staging:5->50 over 10m", "--canary-start", "10m"],  # a duration ago
    ["--canary", "staging:5->50 over 10m", "--canary-start", "yesterday"],
    ["--route-header", "X Routing Key"], ["--route-header", ""],
    ["--drain-timeout", "-1"], ["--drain-timeout", "inf"], ["--drain-timeout", "1e9"],
])
def test_serve_refuses_a_routing_option_in_one_line(options: list[str]) -> None:
    from click.testing import CliRunner

    from modelyard.cli import main

    result = CliRunner().invoke(main, ["serve", "churn", *options])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
