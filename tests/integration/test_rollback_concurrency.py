"""Rollback is serialised like promote: concurrent rollbacks leave one holder, each move
audited once, the ``rolled_back`` guard on the right version, and no re-promotion of the
version just rolled back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelyard.core.names import T_ROLLED_BACK, T_STAGE
from tests.support import processes
from tests.support.workers import rollback_once


def test_concurrent_rollbacks_move_production_once(
    yard: Any, name: str, trained: dict[str, Any], isolated: Path,
) -> None:
    for _ in range(3):
        mv = yard.register(trained["model"], name, params={"n": _},
                           input_example=trained["X"].head(3))
        yard.promote(name, mv.version, to="production", force=True, reason="ship")
    assert yard.resolve(name, "production").version == 3
    env = dict(os.environ)
    workers = 4
    context = processes.context()
    with context.Manager() as manager:
        barrier = manager.Barrier(workers)
        with context.Pool(workers) as pool:
            results = pool.map(processes.call,
                               [(env, str(isolated), rollback_once,
                                 (name, env, str(isolated), barrier, i))
                                for i in range(workers)])
    done = [r for r in results if r[1] == "ok"]
    refused = [r for r in results if r[1] == "refused"]
    assert len(done) == 1 and done[0][2] == "2", results
    assert len(refused) == workers - 1, results
    assert all("rolled back" in message for _, _, message in refused), results

    holder = yard.resolve(name, "production")
    assert holder.version == 2 and holder.tags[T_STAGE] == "production"
    three = yard.resolve(name, 3)
    assert three.tags[T_STAGE] == "archived" and three.tags.get(T_ROLLED_BACK)
    assert not yard.resolve(name, 2).tags.get(T_ROLLED_BACK)
    events = yard.history(name, verify=True)  # chain, anchors and holders all agree
    assert [e.action for e in events].count("rollback") == 1
    assert events[-1].stages["production"] == 2
    stage_field = yard.tracking.get_version(name, 2)
    assert stage_field.tags[T_STAGE] == "production"
