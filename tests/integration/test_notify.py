"""Signed webhooks on promotion, approval and rollback, on both backends."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.lifecycle import notify
from tests.support.webhooks import Receiver

SECRET = "whsec-9c1f-do-not-print"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def _valid(item: dict[str, Any]) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), item["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, item["signature"])


def test_signed_posts_on_promotion_approval_and_rollback(
        make_yard: Any, name: str, trained: dict[str, Any], receiver: Receiver) -> None:
    hooks = {"webhooks": [receiver.url], "webhook_secret": SECRET}
    alice = make_yard(production_approval_required=True, **hooks)
    bob = make_yard(user="bob", production_approval_required=True, **hooks)
    for _ in range(2):
        alice.register(trained["model"], name, metrics={"accuracy": 0.9},
                       input_example=trained["X"].head(3))
    assert receiver.received == []  # registration alone notifies nobody
    alice.promote(name, 1, to="staging")
    request = alice.promote(name, 1, to="production", reason="ready")
    approved = bob.approve(request.request_id)
    assert approved.webhooks == [{"url": f"http://127.0.0.1:{receiver.server.server_address[1]}"
                                  "/...", "ok": True, "status": 200, "attempts": 1,
                                  "error": None}]
    second = bob.promote(name, 2, to="production", force=True, reason="hotfix")
    alice.approve(second.request_id)
    alice.rollback(name, reason="regression")
    assert [e["action"] for e in receiver.events()] == [
        "promote", "approve", "approve", "rollback"]
    assert all(_valid(item) for item in receiver.received)
    tampered = dict(receiver.received[0], body=receiver.received[0]["body"] + b" ")
    assert not _valid(tampered)
    last = receiver.events()[-1]
    assert (last["version"], last["detail"]["rolled_back"], last["who"]) == (1, 2, "alice")


def test_failing_webhook_never_blocks_the_change(
        make_yard: Any, name: str, trained: dict[str, Any], receiver: Receiver) -> None:
    dead = "http://127.0.0.1:9/hooks/SECRET-PATH"  # nothing listens on the discard port
    yard = make_yard(webhooks=[dead, receiver.url], webhook_secret=SECRET)
    yard.register(trained["model"], name, metrics={"accuracy": 0.9},
                  input_example=trained["X"].head(3))
    receiver.statuses = [500, 503]  # two failures, then success
    change = yard.promote(name, 1, to="staging")
    assert yard.tracking.alias_holder(name, "staging") == 1
    failed, retried = change.webhooks
    assert (failed["ok"], failed["attempts"]) == (False, notify.ATTEMPTS)
    assert "SECRET-PATH" not in json.dumps(change.webhooks)
    assert (retried["ok"], retried["attempts"]) == (True, 3)
    assert len(receiver.received) == 3
    events = yard.history(name)
    assert [e["action"] for e in events] == ["register", "promote", "webhook_failed"]
    recorded = events[-1]["detail"]
    assert recorded["event"] == change.event
    assert recorded["webhooks"][0]["url"] == "http://127.0.0.1:9/..."
    yard.history(name, verify=True)
