"""Replicas that agree: three `modelyard serve` processes following one registry.

On the embedded default (three processes over one SQLite registry and one vault folder) and
on the team stack (each replica reading the MLflow server and S3 on its own). Under light load
a promotion and then a rollback reach every replica within the reload interval with no failed
request; a key gets the same arm on every replica, whether it comes as a header or as a field,
and the canary ramp is measured from one start that the vault records once; a replica is not
ready until it has loaded and verified every arm's holder; SIGTERM during a request still
answers it, and `--drain-timeout` bounds a request that never ends; and the capture files of
all three land side by side, named by replica and numbered without gaps, with every answered
request captured once, which `monitor` and `ab report` read back whole. The three start
together (one start-up, for the test's time); replicas started apart, and one started after a
promotion, are the in-process test at the end.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard.serving.routing import CanaryRamp, key_point
from tests.support.replicas import Replica

POLL = 0.3  # the replicas' reload interval (--poll-interval)
DRAIN = 5  # seconds a request in flight may take after SIGTERM (--drain-timeout)
RAMP = "staging:20->60 over 10m"
# uvicorn ends on SIGTERM by raising it again once it has shut down (so the default handler
# runs): a replica that drained and stopped exits 0 or by SIGTERM, never anything else.
STOPPED = {0, -signal.SIGTERM}
ROUTING = ["--canary", RAMP, "--route-header", "X-User", "--route-field", "customer"]


def _frame() -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.datasets import make_classification

    features, target = make_classification(n_samples=400, n_features=4, random_state=3)
    return pd.DataFrame(features, columns=["tenure", "charges", "calls", "score"]), target


class Load:
    """One client per replica sending back-to-back predictions, keyed by user, until stopped.

    Even requests carry the key as the X-User header, odd ones as the ``customer`` field."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.rows = [{k: float(v) for k, v in r.items()} for r in frame.to_dict("records")]
        self.answers: list[dict[str, Any]] = []  # every answer, from every replica
        self.failures: list[tuple[int, Any]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def ask(self, client: httpx.Client, replica: int, i: int, user: str) -> dict[str, Any]:
        row = i % len(self.rows)
        if i % 2:
            reply = client.post("/predict", json={"instances": [dict(self.rows[row],
                                                                     customer=user)]})
        else:
            reply = client.post("/predict", json={"instances": [self.rows[row]]},
                                headers={"X-User": user})
        if reply.status_code != 200:
            with self.lock:
                self.failures.append((replica, reply.text))
            return {}
        body = dict(reply.json())
        answer = {"replica": replica, "t": time.monotonic(), "row": row, "user": user, **body}
        with self.lock:
            self.answers.append(answer)
        return answer

    def _run(self, replica: int, url: str) -> None:
        rng = np.random.default_rng(replica)
        with httpx.Client(base_url=url, timeout=30) as client:
            i = 0
            while not self.stop.is_set():
                try:
                    self.ask(client, replica, i, f"user-{rng.integers(1000)}")
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append((replica, repr(exc)))
                i += 1

    def start(self, replica: int, url: str) -> None:
        thread = threading.Thread(target=self._run, args=(replica, url), daemon=True)
        thread.start()
        self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def reached(self, since: float, version: int) -> dict[int, float]:
        """Per replica, seconds from ``since`` to its first production answer by ``version``
        after which it answered production with nothing else."""
        with self.lock:
            answers = [a for a in self.answers if a["t"] > since and a["arm"] == "production"]
        first: dict[int, float] = {}
        for a in answers:
            if a["version"] == version:
                first.setdefault(a["replica"], a["t"] - since)
            elif a["replica"] in first:
                raise AssertionError(f"replica {a['replica']} went back to v{a['version']}")
        return first


def _wait_reached(load: Load, since: float, version: int, replicas: set[int]) -> dict[int, float]:
    deadline = time.monotonic() + 60
    while True:
        seen = load.reached(since, version)
        if set(seen) >= replicas:
            return seen
        assert time.monotonic() < deadline, f"#{version} never reached every replica: {seen}"
        time.sleep(0.05)


def _drained_request(replica: Replica, row: dict[str, Any]) -> httpx.Response:
    """A request whose body is still arriving when the replica gets SIGTERM: half is sent,
    the replica is told to stop and stops accepting connections, then the rest is sent."""
    body = json.dumps({"instances": [row]}).encode()

    def chunks() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        # Answered after the replica read the half above: the request is in flight when the
        # signal comes (a connection whose request it has not read yet is simply closed).
        assert httpx.get(f"{replica.url}/health", timeout=30).status_code == 200
        replica.terminate()
        deadline = time.monotonic() + 30
        while True:  # until the listening socket is closed: the replica is draining
            try:
                socket.create_connection(("127.0.0.1", replica.port), timeout=1).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "the replica kept accepting after SIGTERM"
            time.sleep(0.02)
        yield body[len(body) // 2:]

    return httpx.post(f"{replica.url}/predict", content=chunks(), timeout=30,
                      headers={"content-type": "application/json", "x-request-id": "drained-1"})


@contextlib.contextmanager
def _hung_request(replica: Replica) -> Iterator[None]:
    """A request whose body never arrives in full, open on ``replica`` while the block runs."""
    with socket.create_connection(("127.0.0.1", replica.port), timeout=30) as hung:
        hung.sendall(b"POST /predict HTTP/1.1\r\nHost: replica\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100000\r\n\r\n{\"instances\": [")
        # Answered after the replica read the bytes above: the hung request is in flight.
        assert httpx.get(f"{replica.url}/health", timeout=30).status_code == 200
        yield


@pytest.mark.slow
def test_three_replicas_follow_one_registry_agree_on_arms_and_lose_no_capture(
        make_yard: Callable[..., Any], name: str, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from modelyard.serving.capture import read_records
    from modelyard.serving.monitor import ab_report, monitor

    began = time.time()
    yard = make_yard()
    frame, labels = _frame()

    def register(model: Any, stage: str | None) -> int:
        mv = yard.register(model, name, input_example=frame.head(3))
        if stage:
            yard.promote(name, mv.version, to=stage, force=stage == "production",
                         reason="test")
        return int(mv.version)

    first = register(LogisticRegression(C=1.0).fit(frame, labels), "production")
    canary = register(LogisticRegression(C=0.001).fit(frame, labels), "staging")
    args = [*ROUTING, "--capture-rate", "1", "--poll-interval", str(POLL),
            "--drain-timeout", str(DRAIN)]
    replicas = [Replica(name, args, tmp_path / f"replica-{i}.log") for i in range(3)]
    load = Load(frame)
    try:
        # Registered while the replicas start: it holds no stage yet, so nothing follows it.
        third = register(LogisticRegression(C=0.05, fit_intercept=False).fit(frame, labels),
                         None)
        for i, replica in enumerate(replicas):
            # Ready only once it has loaded and verified every arm's holder (until then the
            # port refuses): the first ready answer names them, verified.
            ready, _ = replica.wait_ready()
            assert [(a["arm"], a["version"], a["verified"]) for a in ready["arms"]] == [
                ("staging", canary, True), ("production", first, True)]
            load.start(i, replica.url)
        while len({a["replica"] for a in load.answers}) < 3:
            assert not load.failures, load.failures
            time.sleep(0.05)

        # A promotion reaches every replica within the reload interval, no request failing.
        promoted = time.monotonic()
        yard.promote(name, third, to="production", force=True, reason="better")
        promotion = _wait_reached(load, promoted, third, {0, 1, 2})

        rolled = time.monotonic()
        yard.rollback(name, reason="back to the first")
        rollback = _wait_reached(load, rolled, first, {0, 1, 2})
        while min(sum(1 for a in load.answers if a["replica"] == i and a["t"] > rolled)
                  for i in range(3)) < 10:
            assert not load.failures, load.failures
            time.sleep(0.05)
        load.finish()
        assert not load.failures, load.failures
        print(f"reload interval {POLL}s: promotion reached the replicas in "
              f"{sorted(round(s, 2) for s in promotion.values())} s, rollback in "
              f"{sorted(round(s, 2) for s in rollback.values())} s")  # the README's figure
        assert max([*promotion.values(), *rollback.values()]) < POLL + 15

        # One ramp start for all three, from the vault: of the three starting together, one
        # created the record and the others read it back.
        abouts = [r.about() for r in replicas]
        starts = {a["canary"]["started_at"] for a in abouts}
        assert len(starts) == 1 and {a["canary"]["anchor"] for a in abouts} == {"vault"}
        ids = [a["replica"] for a in abouts]
        assert len(set(ids)) == 3

        # The same key gets the same arm on every replica, by header or by field.
        ramp = CanaryRamp.parse(RAMP)
        with httpx.Client(timeout=30) as client:
            clients = [httpx.Client(base_url=r.url, timeout=30) for r in replicas]
            agreed = 0
            started = pd.Timestamp(next(iter(starts))).timestamp()
            for u in range(60):
                user = f"agree-{u}"
                boundary = ramp.weight_at(time.time() - started) / 100
                if abs(key_point(user) - boundary) < 0.01:
                    continue  # the ramp may move past this key while it is asked around
                # by header on one replica, by field on the next (i + u: both forms each)
                arms = {load.ask(c, i, u + i, user)["arm"] for i, c in enumerate(clients)}
                assert len(arms) == 1, (user, arms)
                agreed += 1
            assert agreed > 45
            # Feedback may reach another replica than the one that answered: the A/B report
            # joins it through the captured prediction.
            labelled: dict[str, int] = defaultdict(int)
            for answer in load.answers[:90]:
                other = replicas[(answer["replica"] + 1) % 3]
                reply = client.post(f"{other.url}/feedback", json={
                    "request_id": answer["request_id"], "label": int(labels[answer["row"]])})
                assert reply.status_code == 202
                labelled[answer["arm"]] += 1
            for c in clients:
                c.close()

        # SIGTERM during a request: the replica stops accepting, answers it, then exits.
        drained = _drained_request(replicas[0], load.rows[0])
        assert drained.status_code == 200, drained.text
        assert drained.json()["request_id"] == "drained-1"
        assert replicas[0].wait() in STOPPED, replicas[0].output()
        # A request that never finishes keeps a replica no longer than --drain-timeout: then
        # it is cancelled and the replica still writes its last capture files.
        with _hung_request(replicas[1]):
            stopping = time.monotonic()
            for replica in replicas[1:]:
                replica.terminate()
            assert {r.wait() for r in replicas[1:]} <= STOPPED
            assert time.monotonic() - stopping < DRAIN + 30
        assert "timeout graceful shutdown exceeded" in replicas[1].output()
    finally:
        load.finish()
        for replica in replicas:
            replica.stop()

    # Every answer captured once, by the replica that gave it; no file missing or clobbered.
    answered = {a["request_id"]: a for a in load.answers}
    answered["drained-1"] = {**drained.json(), "replica": 0}
    assert len(answered) == len(load.answers) + 1  # request ids are unique across replicas
    store = yard.vault.store
    records = [r for r in read_records(store, name, since=began - 60)
               if r["kind"] == "prediction"]
    by_id = {r["request_id"]: r for r in records}
    assert len(by_id) == len(records) == len(answered)
    for request_id, answer in answered.items():
        record = by_id[request_id]
        assert (record["replica"], record["version"], record["arm"]) == (
            ids[answer["replica"]], answer["version"], answer["arm"]), request_id
    files: dict[str, list[int]] = defaultdict(list)
    for key in store.list(f"capture/{name}/"):
        stem = key.rsplit("/", 1)[1].removesuffix(".jsonl.gz")
        replica_id, _, number = stem.rpartition("-")
        files[replica_id].append(int(number))
    assert set(files) == set(ids)
    assert all(sorted(n) == list(range(1, len(n) + 1)) for n in files.values()), files

    per_replica = {ids[i]: sum(1 for a in answered.values() if a["replica"] == i)
                   for i in range(3)}
    health = monitor(yard, name, since=began - 60)
    assert health.records == len(answered) and health.replicas == per_replica
    assert sum(v.count for v in health.versions) == len(answered)
    assert {v.version for v in health.versions} == {first, canary, third}
    report = ab_report(yard, name, since=began - 60)
    assert report.replicas == per_replica
    arms = {a.arm: a for a in report.arms}
    assert {arm: arms[arm].labelled for arm in labelled} == dict(labelled)
    assert sum(a.requests for a in report.arms) == len(answered)


def test_replicas_started_apart_measure_the_canary_ramp_from_one_recorded_start(
        make_yard: Callable[..., Any], name: str) -> None:
    """In-process replicas (the app under uvicorn in a thread): the second starts after the
    first serves and after a promotion, is ready with the new holder, and yet measures the ramp
    from the start the first recorded in the vault; a new canary version is a new ramp,
    anchored alike on both; a start given is used as is."""
    from sklearn.linear_model import LogisticRegression

    from modelyard.serving.app import create_app
    from tests.support.helpers import serving

    yard = make_yard()
    frame, labels = _frame()
    for stage, c in (("production", 1.0), ("staging", 0.01)):
        mv = yard.register(LogisticRegression(C=c).fit(frame, labels), name,
                           input_example=frame.head(3))
        yard.promote(name, mv.version, to=stage, force=stage == "production", reason="test")

    def canary(url: str) -> dict[str, Any]:
        about = httpx.get(f"{url}/version", timeout=10).json()
        return {**about["canary"], "version": about["arms"][0]["version"]}

    given = create_app(yard, name, canary=RAMP, canary_started_at=1_777_626_000.0)
    assert given.state.runtime.status()["canary"]["anchor"] == "given"
    with serving(create_app(make_yard(), name, canary=RAMP, poll_interval=0.2)) as one:
        before = canary(one)
        promoted = yard.register(LogisticRegression(C=0.3).fit(frame, labels), name,
                                 input_example=frame.head(3))
        yard.promote(name, promoted.version, to="production", force=True, reason="newer")
        with serving(create_app(make_yard(), name, canary=RAMP, poll_interval=0.2)) as two:
            ready = httpx.get(f"{two}/ready", timeout=10)
            assert ready.status_code == 200 and [
                (a["arm"], a["version"], a["verified"]) for a in ready.json()["arms"]] == [
                ("staging", before["version"], True),
                ("production", int(promoted.version), True)]
            assert canary(two) == before and before["anchor"] == "vault"
            mv = yard.register(LogisticRegression(C=0.1).fit(frame, labels), name,
                               input_example=frame.head(3))
            yard.promote(name, mv.version, to="staging", reason="a new candidate")
            deadline = time.monotonic() + 60
            while True:  # each swaps the version in, then reads the new ramp's start
                now = [canary(one), canary(two)]
                if all(c["version"] == int(mv.version) and c["started_at"] != before[
                        "started_at"] for c in now):
                    break
                assert time.monotonic() < deadline, f"no new ramp: {now}"
                time.sleep(0.05)
            assert now[0] == now[1] and now[0]["started_at"] > before["started_at"]
