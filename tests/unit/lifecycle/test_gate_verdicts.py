"""One rendering of a gate's verdict: the condition once (the gate's text), then what was
found."""

from __future__ import annotations

from modelyard.lifecycle.gates import describe


def test_a_verdict_states_the_condition_once() -> None:
    failed = {"gate": "accuracy >= 0.95", "kind": "metric", "passed": False,
              "detail": "accuracy = 0.9"}
    assert describe(failed) == "gate 'accuracy >= 0.95' failed: accuracy = 0.9"
    assert describe({**failed, "passed": True}).startswith("gate 'accuracy >= 0.95' passed")
