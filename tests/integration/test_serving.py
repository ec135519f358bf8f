"""Serving: a real uvicorn server on a loopback port, on the embedded default and the team stack.

The pure parts (routing, canary ramp, the batcher, payload forms) are checked in-process first;
the behaviour tests then register real versions, start the app in a server thread, and talk
HTTP to it: predictions equal MLflow's pyfunc for the same version, /invocations answers what
MLflow's own scoring server answers, a promotion under load fails no request, a tampered
version is refused at reload while the old one keeps serving, A/B stays sticky and weighted,
the shadow never answers, capture files land in the store and the monitoring verbs read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard.core.profile import build_profile
from modelyard.errors import InvalidInput
from modelyard.serving.batching import Batcher
from modelyard.serving.errors import SchemaMismatch
from modelyard.serving.monitor import ab_report, monitor
from modelyard.serving.payload import parse_body
from modelyard.serving.routing import Arm, CanaryRamp, Router
from modelyard.serving.source import Column
from tests.support.helpers import serving

TOKEN_ENV = "SERVE_TEST_TOKEN"  # outside MODELYARD_*, whose unknown keys Yard() refuses


# -- helpers -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _register(yard: Any, model: Any, name: str, frame: pd.DataFrame, stage: str | None) -> int:
    mv = yard.register(model, name, input_example=frame.head(3))
    if stage:
        yard.promote(name, mv.version, to=stage, force=stage == "production", reason="test")
    return int(mv.version)


def _flip_one_byte(location: str, filename: str, stack: Any) -> None:
    if location.startswith("file://"):
        path = Path(urlparse(location).path) / filename
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    client = stack.s3_client()
    prefix = location.split("/models/", 1)[1]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=stack.bucket)["Contents"]
            if prefix in o["Key"] and o["Key"].endswith(filename)]
    assert len(keys) == 1, keys
    body = bytearray(client.get_object(Bucket=stack.bucket, Key=keys[0])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=stack.bucket, Key=keys[0], Body=bytes(body))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: float(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _captured(yard: Any, name: str) -> list[dict[str, Any]]:
    store = yard.vault.store
    keys = store.list(f"capture/{name}/")
    out = []
    for key in keys:
        out += [json.loads(line) for line in
                gzip.decompress(store.get_bytes(key)).decode().splitlines()]
    return out


# -- pure parts --------------------------------------------------------------------------
def test_router_is_sticky_and_weighted() -> None:
    router = Router([Arm("production", 80), Arm("staging", 20)])
    picks = [router.pick(f"user-{i}") for i in range(4000)]
    share = picks.count("staging") / len(picks)
    assert abs(share - 0.2) < 4 * (0.2 * 0.8 / 4000) ** 0.5, share
    assert all(router.pick(f"user-{i}") == picks[i] for i in range(200))  # same key, same arm
    assert Router([Arm("production", 1), Arm("staging", 0)]).pick("x") == "production"
    with pytest.raises(InvalidInput):
        Arm.parse("staging")
    with pytest.raises(InvalidInput):
        Router([Arm("a", 1), Arm("a", 2)])


def test_canary_ramp_moves_and_only_takes_keys_over() -> None:
    ramp = CanaryRamp.parse("staging:5->50 over 10m")
    assert (ramp.ref, ramp.start, ramp.end, ramp.duration) == ("staging", 5.0, 50.0, 600.0)
    assert ramp.weight_at(0) == 5.0 and ramp.weight_at(300) == 27.5
    assert ramp.weight_at(600) == ramp.weight_at(10_000) == 50.0
    now = [1000.0]
    router = Router([Arm("production", 100)], canary=ramp, started_at=1000.0,
                    clock=lambda: now[0])
    keys = [f"k{i}" for i in range(3000)]
    early = {k for k in keys if router.pick(k) == "staging"}
    now[0] += 600
    late = {k for k in keys if router.pick(k) == "staging"}
    assert abs(len(early) / 3000 - 0.05) < 0.02 and abs(len(late) / 3000 - 0.5) < 0.04
    assert early <= late  # a key on the canary stays on it as the ramp grows
    assert router.weights() == {"staging": 50.0, "production": 50.0}
    with pytest.raises(InvalidInput):
        CanaryRamp.parse("staging 5->50")


def test_batcher_merges_and_a_failed_batch_fails_only_its_own_requests() -> None:
    calls: list[list[int]] = []

    def run(items: Any) -> list[int]:
        calls.append(list(items))
        time.sleep(0.01)  # a model call: requests pile up meanwhile
        if -1 in items:
            raise ValueError("poison")
        return [i * 10 for i in items]

    async def main() -> tuple[list[Any], list[Any]]:
        batcher: Batcher[int, int] = Batcher(run, max_batch=8, max_wait=0.005)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(20)),
                                       return_exceptions=True)
        mixed = await asyncio.gather(batcher.submit(1), batcher.submit(-1), batcher.submit(2),
                                     return_exceptions=True)
        await batcher.close()
        off: Batcher[int, int] = Batcher(run, enabled=False)
        assert await off.submit(3) == 30
        await off.close()
        inline: Batcher[int, int] = Batcher(run, max_batch=4, inline=True)
        inline.start()
        assert await asyncio.gather(*(inline.submit(i) for i in range(6))) == [
            i * 10 for i in range(6)]
        await inline.close()
        return results, mixed

    results, mixed = asyncio.run(main())
    assert results == [i * 10 for i in range(20)]
    assert max(len(c) for c in calls[:5]) == 8 and len(calls[0]) >= 1  # merged, capped
    assert mixed[0] == 10 and mixed[2] == 20 and isinstance(mixed[1], ValueError)


def test_payload_forms_and_schema_errors() -> None:
    columns = [Column("a", "double"), Column("b", "long"), Column("c", "string", False)]
    forms = [
        {"dataframe_split": {"columns": ["b", "a"], "data": [[1, 0.5]]}},
        {"dataframe_records": [{"a": 0.5, "b": 1}]},
        {"instances": [{"a": 0.5, "b": 1, "extra": "ignored"}]},
        {"inputs": {"a": [0.5], "b": [1]}},
        {"inputs": [[0.5, 1, None]]},
    ]
    for form in forms:
        block = parse_body(json.dumps(form).encode(), "application/json").block(columns)
        assert block.columns == ["a", "b", "c"] and block.rows == [[0.5, 1, None]], form
    with pytest.raises(SchemaMismatch, match="'b'"):
        parse_body(b'{"instances": [{"a": 1.0}]}', None).block(columns)
    with pytest.raises(SchemaMismatch, match="column 'b': expected an integer"):
        parse_body(b'{"instances": [{"a": 1.0, "b": 1.5}]}', None).block(columns)
    with pytest.raises(SchemaMismatch, match="column 'a': expected a number"):
        parse_body(b'{"instances": [{"a": "x", "b": 1}]}', None).block(columns)


def test_capture_keeps_tuples_and_writes_gzip_lines_per_day_off_the_request_path(
        tmp_path: Path) -> None:
    from modelyard.serving.capture import CaptureLog, read_records
    from modelyard.store.storage import LocalStore

    class Failing(LocalStore):
        def put_bytes(self, key: str, data: bytes) -> None:
            raise OSError("store down")

    store = LocalStore(tmp_path / "store")
    log = CaptureLog(store, "m", rate=1.0, mask=("b",), chunk=4, max_records=4)
    midnight = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC
    request_thread = threading.get_ident()
    encoders: set[int] = set()
    encode = log._encode

    def spy(items: list[Any], seal: bool) -> list[str]:
        encoders.add(threading.get_ident())
        return encode(items, seal)

    log._encode = spy  # type: ignore[method-assign]
    for i in range(9):  # the last two a second after midnight: the next day's file
        ts = midnight - 10 + i if i < 7 else midnight + 1
        log.keep(ts, f"r{i}", 3, "1.2.0", "production", 0.0042, ["a", "b"], [[i, "secret"]],
                 [i % 2], [0.9])
    assert len(log._buffer) == 1  # two chunks of 4 were handed to the writer already
    log.add({"kind": "feedback", "ts": midnight + 2, "request_id": "r1", "model": "m",
             "label": 1})
    keys = log.flush_now()
    assert encoders and request_thread not in encoders  # encoded on the writer thread
    assert log.written == 10 and log.failed == 0
    # 7 records before midnight (a file sealed when full at 4, then the other 3), 3 after it
    assert sorted(k.split("/")[2] for k in keys) == ["date=2023-11-14"] * 2 + ["date=2023-11-15"]
    records = list(read_records(store, "m", since=midnight - 10, until=midnight + 10))
    assert len(records) == 10
    first = next(r for r in records if r["request_id"] == "r0")
    assert first == {"kind": "prediction", "ts": midnight - 10, "request_id": "r0", "model": "m",
                     "version": 3, "semver": "1.2.0", "arm": "production", "shadow": False,
                     "latency_ms": 4.2, "status": 200, "error": None,
                     "inputs": {"columns": ["a", "b"], "data": [[0, "***"]]},
                     "outputs": [0], "confidence": [0.9], "replica": log.replica}
    assert not any("secret" in json.dumps(r) for r in records)
    assert log.flush_now() == []  # nothing left

    broken = CaptureLog(Failing(tmp_path / "down"), "m", rate=1.0)
    broken.keep(midnight, "x", 1, "1.0.0", "shadow", 0.001, ["a"], [[1.0]], [1], None)
    # never raised; kept for the next flush (counted as failed once dropped: test_replicas.py)
    assert broken.flush_now() == [] and (broken.unsent, broken.failed) == (1, 0)
    assert CaptureLog(None, "m", rate=1.0).flush_now() == []


# -- behaviour, on both backends ---------------------------------------------------------
def test_serving_answers_like_mlflow_and_tracks_per_version(
        make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import mlflow.pyfunc

    from modelyard.serving.app import create_app

    yard = make_yard()
    frame, labels = trained["X"], trained["y"]
    version = _register(yard, trained["model"], name, frame, "production")
    yard.vault.store.put_bytes(f"profiles/{name}/{version}.json",
                               json.dumps(build_profile(frame)).encode())
    mlflow.set_tracking_uri(yard.tracking.tracking_uri)
    reference = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    expected = reference.predict(frame).tolist()

    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    app = create_app(yard, name, token_env=TOKEN_ENV, max_body_bytes=64_000, capture_rate=1.0,
                     mask=["age"], poll_interval=0)
    auth = {"Authorization": "Bearer s3cret-token"}
    started = time.time()
    with serving(app) as url, httpx.Client(base_url=url, headers=auth, timeout=30) as client:
        assert httpx.get(f"{url}/health").status_code == 200  # liveness needs no token
        for path in ("/ready", "/version", "/metrics"):
            denied = httpx.get(f"{url}{path}")
            assert denied.status_code == 401 and denied.json()["error"] == "Unauthorized"
        denied = httpx.post(f"{url}/predict", json={"instances": _records(frame.head(1))},
                            headers={"Authorization": "Bearer wrong"})
        assert denied.status_code == 401
        assert client.get("/ready").json()["ready"] is True
        about = client.get("/version").json()
        assert (about["version"], about["semver"], about["verified"]) == (version, "1.0.0", True)
        assert (about["runtime"], about["runtime_reason"]) == ("onnx", None)  # compiled copy
        assert about["parity"]["labels_equal"] == 1.0

        # /predict, one row and many: predictions equal MLflow's pyfunc on the same version.
        answers, request_ids = [], []
        for start in range(0, 300, 100):
            reply = client.post("/predict", json={"instances": _records(
                frame.iloc[start:start + 100])})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert (body["model"], body["version"], body["semver"]) == (name, version, "1.0.0")
            assert reply.headers["x-model-version"] == str(version)
            assert all(0.5 <= c <= 1.0 for c in body["confidence"])
            answers += body["predictions"]
            request_ids.append(body["request_id"])
        assert answers == expected
        one = client.post("/predict", json={"instances": _records(frame.head(1))}).json()
        assert one["predictions"] == expected[:1]

        # /invocations: the same bodies MLflow's own scoring server answers, answered the same.
        from fastapi.testclient import TestClient
        from mlflow.pyfunc import scoring_server

        monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "false")  # init() sets it
        theirs = TestClient(scoring_server.init(reference))
        head = frame.head(7)
        bodies: list[tuple[bytes, str]] = [
            (json.dumps({"dataframe_split": json.loads(head.to_json(orient="split"))}).encode(),
             "application/json"),
            (json.dumps({"dataframe_split": {"columns": list(head.columns),
                                             "data": head.values.tolist()}}).encode(),
             "application/json"),
            (json.dumps({"dataframe_records": _records(head)}).encode(), "application/json"),
            (json.dumps({"instances": _records(head)}).encode(), "application/json"),
            (json.dumps({"inputs": {c: head[c].tolist() for c in head.columns}}).encode(),
             "application/json"),
            (json.dumps({"inputs": _records(head)}).encode(), "application/json"),
            (head.to_csv(index=False).encode(), "text/csv"),
        ]
        for content, kind in bodies:
            ours = client.post("/invocations", content=content, headers={"content-type": kind})
            mlflows = theirs.post("/invocations", content=content,
                                  headers={"content-type": kind})
            assert mlflows.status_code == ours.status_code == 200, (ours.text, mlflows.text)
            assert ours.json() == mlflows.json() == {"predictions": expected[:7]}
            assert ours.headers["x-model-semver"] == "1.0.0"
        for content in (b'{"foo": 1}', b"not json", b'[1, 2]'):
            ours = client.post("/invocations", content=content,
                               headers={"content-type": "application/json"})
            assert ours.status_code == 400 and theirs.post(
                "/invocations", content=content,
                headers={"content-type": "application/json"}).status_code == 400
            assert set(ours.json()) >= {"error", "error_code", "message"}
            assert "Traceback" not in ours.text
        wrong_type = client.post("/invocations", content=b"x", headers={"content-type": "a/b"})
        assert wrong_type.status_code == 415

        # 422 names the column; 413 on oversize bodies.
        missing = client.post("/predict", json={"instances": [{"tenure": 1.0}]})
        assert missing.status_code == 422 and "'charges'" in missing.json()["message"]
        bad = dict(_records(frame.head(1))[0], score="high")
        typed = client.post("/invocations", json={"dataframe_records": [bad]})
        assert typed.status_code == 422
        assert typed.json()["error"] == "SchemaMismatch" and "'score'" in typed.json()["message"]
        huge = client.post("/predict", json={"instances": _records(frame) * 3})
        assert huge.status_code == 413 and huge.json()["error"] == "PayloadTooLarge"

        # /metrics: series per version and arm.
        text = client.get("/metrics").text
        labels_ = (f'arm="production",model="{name}",runtime="onnx",semver="1.0.0",'
                   f'version="{version}"')
        assert f"modelyard_requests_total{{{labels_}}}" in text
        assert f'modelyard_errors_total{{{labels_[:-1]},error="SchemaMismatch"' not in text
        assert f'error="SchemaMismatch",model="{name}"' in text
        assert f"modelyard_batch_size_count{{{labels_}}}" in text
        assert f"modelyard_prediction_confidence_count{{{labels_}}}" in text

        # Feedback: the true labels of the first request's rows.
        fed = client.post("/feedback", json={"request_id": request_ids[0],
                                             "label": labels[:100].tolist()})
        assert fed.status_code == 202 and fed.json() == {"recorded": 1, "matched": 1}
        assert client.post("/feedback", json={"label": 1}).status_code == 400

        middle = time.time()
        time.sleep(0.05)
        shifted = frame.iloc[:200].assign(charges=frame["charges"].iloc[:200] + 6.0)
        for start in range(0, 200, 100):
            assert client.post("/predict", json={"instances": _records(
                shifted.iloc[start:start + 100])}).status_code == 200
    # The server has stopped: the capture log was flushed to the store on shutdown.
    keys = yard.vault.store.list(f"capture/{name}/")
    assert keys and all(k.split("/")[2].startswith("date=20") and k.endswith(".jsonl.gz")
                        for k in keys)
    records = _captured(yard, name)
    predictions = [r for r in records if r["kind"] == "prediction"]
    assert {r["version"] for r in predictions} == {version}
    ok = [r for r in predictions if r["status"] == 200]
    assert all(set(row[3:4]) == {"***"} for r in ok for row in r["inputs"]["data"])  # age
    assert any(r["kind"] == "feedback" and r["arm"] == "production" for r in records)

    before = monitor(yard, name, since=started, until=middle)
    [health] = before.versions
    assert (health.version, health.semver, health.shadow) == (version, "1.0.0", False)
    assert health.count == len([r for r in predictions if r["ts"] < middle])
    assert health.errors == 2 and 0 < health.error_rate < 1  # the two 422s (413 is pre-routing)
    assert health.p50_ms is not None and 0 < health.p50_ms <= health.p99_ms  # type: ignore[operator]
    assert health.mean_confidence is not None and 0.5 <= health.mean_confidence <= 1
    assert set(health.drift) == {"tenure", "charges", "calls", "score"}  # age is masked
    assert health.drifted == [] and "age" in (health.drift_note or "")
    after = monitor(yard, name, since=middle).versions[0]
    assert after.drifted == ["charges"], after.drift
    assert "refusing" not in caplog.text


def test_promotion_under_load_swaps_with_no_failed_request_and_refuses_tampered(
        make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
        stack_or_none: Any, caplog: pytest.LogCaptureFixture) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from modelyard.serving.app import create_app

    yard, admin = make_yard(), make_yard()
    frame, labels = trained["X"], trained["y"]
    first = _register(admin, trained["model"], name, frame, "production")
    other = RandomForestClassifier(n_estimators=5, random_state=1).fit(frame, labels)
    second = _register(admin, other, name, frame, "staging")
    app = create_app(yard, name, poll_interval=0.2)
    rows = {"instances": _records(frame.head(2))}
    outcomes: list[list[tuple[int, int | None]]] = [[] for _ in range(4)]
    stop = threading.Event()

    def load(mine: list[tuple[int, int | None]], url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                try:
                    reply = client.post("/predict", json=rows)
                    mine.append((reply.status_code, reply.json().get("version")))
                except httpx.HTTPError:
                    mine.append((0, None))

    with serving(app) as url:
        workers = [threading.Thread(target=load, args=(o, url)) for o in outcomes]
        for worker in workers:
            worker.start()
        try:
            time.sleep(0.5)
            admin.promote(name, second, to="production", reason="better")
            deadline = time.monotonic() + 30
            while not all(o and o[-1][1] == second for o in outcomes):
                assert time.monotonic() < deadline, "the version never switched"
                time.sleep(0.05)
            time.sleep(0.3)
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
        everything = [item for o in outcomes for item in o]
        assert len(everything) > 40
        assert {status for status, _ in everything} == {200}, "a request failed during the swap"
        for mine in outcomes:  # each client saw the old version, then only the new one
            versions = [v for _, v in mine]
            switch = versions.index(second)
            assert set(versions[:switch]) == {first} and set(versions[switch:]) == {second}

        # A tampered version is refused at reload; the old one keeps serving and says so.
        third = _register(admin, trained["model"], name, frame, None)
        location = admin.get(name, third).artifact_location
        _flip_one_byte(location, "model.skops", stack_or_none)
        admin.promote(name, third, to="production", force=True, reason="tampered on purpose")
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 30
            while not client.get("/ready").json()["reload_failed"]:
                assert time.monotonic() < deadline, "the reload was never attempted"
                time.sleep(0.05)
            ready = client.get("/ready")
            assert ready.status_code == 200  # still serving a verified version
            [arm] = ready.json()["arms"]
            assert arm["version"] == second and arm["reload_error"]["version"] == third
            assert arm["reload_error"]["error"] == "IntegrityError"
            about = client.get("/version").json()
            assert about["version"] == second and about["reload_error"]["version"] == third
            reply = client.post("/predict", json=rows)
            assert reply.status_code == 200 and reply.json()["version"] == second
    assert f"refusing #{third}" in caplog.text and "IntegrityError" in caplog.text


def test_ab_is_sticky_and_weighted_shadow_never_answers_and_reports_read_capture(
        make_yard: Callable[..., Any], name: str, trained: dict[str, Any]) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from modelyard.serving.app import create_app

    yard = make_yard()
    frame, labels = trained["X"], trained["y"]
    shuffled = np.random.default_rng(0).permutation(labels)  # a control that learnt noise
    weak = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(frame, shuffled)
    control = _register(yard, weak, name, frame, "production")
    challenger = _register(yard, trained["model"], name, frame, "staging")
    ab_app = create_app(yard, name, ab={"production": 70, "staging": 30}, capture_rate=1.0,
                        route_field="customer_id", poll_interval=0)
    shadow_app = create_app(yard, name, shadow="staging", capture_rate=1.0, poll_interval=0)
    records = _records(frame)
    with serving(ab_app) as ab_url, serving(shadow_app) as shadow_url, \
            httpx.Client(timeout=30) as client:
        arms: dict[str, str] = {}
        for i, record in enumerate(records):
            reply = client.post(f"{ab_url}/predict", json={"instances": [record]},
                                headers={"X-Routing-Key": f"customer-{i}"})
            body = reply.json()
            assert body["version"] == {"production": control, "staging": challenger}[body["arm"]]
            arms[f"customer-{i}"] = body["arm"]
            client.post(f"{ab_url}/feedback", json={"request_id": body["request_id"],
                                                    "label": int(labels[i])})
        share = sum(a == "staging" for a in arms.values()) / len(arms)
        assert abs(share - 0.3) < 4 * (0.3 * 0.7 / len(arms)) ** 0.5, share
        for i in range(0, 300, 15):  # the same key always lands on the same arm
            again = client.post(f"{ab_url}/predict", json={"instances": [records[i]]},
                                headers={"X-Routing-Key": f"customer-{i}"}).json()
            assert again["arm"] == arms[f"customer-{i}"]
        by_field = {client.post(f"{ab_url}/predict", json={"instances": [
            dict(records[0], customer_id="c-77")]}).json()["arm"] for _ in range(10)}
        assert len(by_field) == 1  # routed by the named field, sticky as well
        ab_status = client.get(f"{ab_url}/version").json()
        assert [(a["arm"], a["version"], a["weight"]) for a in ab_status["arms"]] == [
            ("production", control, 70.0), ("staging", challenger, 30.0)]

        for i in range(60):
            reply = client.post(f"{shadow_url}/invocations",
                                json={"dataframe_records": [records[i]]})
            assert reply.status_code == 200
            assert reply.headers["x-model-version"] == str(control)  # never the shadow
            assert reply.json() == {"predictions": weak.predict(frame.iloc[[i]]).tolist()}
        time.sleep(0.3)  # the mirrored calls run after the answers
        metrics = client.get(f"{shadow_url}/metrics").text
        assert (f'arm="shadow",model="{name}",runtime="onnx",semver="1.0.1",'
                f'version="{challenger}"') in metrics
        assert client.get(f"{shadow_url}/ready").json()["shadow"]["version"] == challenger

    captured = _captured(yard, name)
    mirrored = [r for r in captured if r.get("shadow")]
    assert len(mirrored) == 60 and {r["version"] for r in mirrored} == {challenger}
    assert {r["arm"] for r in mirrored} == {"shadow"}

    report = ab_report(yard, name, since="1h")
    by_arm = {a.arm: a for a in report.arms}
    assert report.control == "production" and report.metric == "accuracy"
    assert by_arm["staging"].labelled == sum(a == "staging" for a in arms.values())
    low, high = by_arm["staging"].ci_low, by_arm["staging"].ci_high
    assert low is not None and high is not None
    assert low <= (by_arm["staging"].value or 0) <= high
    assert by_arm["shadow"].shadow and by_arm["shadow"].share == 0.0
    [vs_staging] = [c for c in report.comparisons if c.arm == "staging"]
    assert vs_staging.significant and vs_staging.better and vs_staging.p_value < 0.01
    assert (report.recommendation, report.promote) == ("promote", "staging"), report.reason

    from click.testing import CliRunner

    from modelyard.cli import main as serving_cli

    printed = CliRunner().invoke(serving_cli, ["ab", "report", name, "--json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output)["recommendation"] == "promote"
    printed = CliRunner().invoke(serving_cli, ["monitor", name, "--since", "1h"])
    assert printed.exit_code == 0 and "v1.0.1" in printed.output, printed.output
    printed = CliRunner().invoke(serving_cli, ["serve", f"{name}@v9.9.9"])
    assert printed.exit_code == 3 and printed.output.startswith("Error: "), printed.output

    health = {(v.version, v.shadow): v for v in monitor(yard, name, since="1h").versions}
    assert health[(challenger, True)].count == 60
    assert health[(control, False)].arms["production"] > 0
    assert np.isclose(sum(h.count for h in health.values()), len(
        [r for r in captured if r["kind"] == "prediction"]))


def test_predictor_follows_promotion_in_process(
        make_yard: Callable[..., Any], name: str, trained: dict[str, Any]) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from modelyard.serving.predictor import Predictor

    yard = make_yard()
    frame, labels = trained["X"], trained["y"]
    first = _register(yard, trained["model"], name, frame, "production")
    other = RandomForestClassifier(n_estimators=4, random_state=2).fit(frame, labels)
    second = _register(yard, other, name, frame, "staging")
    with Predictor(yard, name, poll_interval=0.1, capture_rate=1.0) as predictor:
        result = predictor.predict(frame.head(5))
        assert (result.version, result.predictions) == (
            first, trained["model"].predict(frame.head(5)).tolist())
        assert predictor.predict(_records(frame.head(1))[0]).version == first
        with pytest.raises(SchemaMismatch, match="'charges'"):
            predictor.predict({"tenure": 1.0})
        yard.promote(name, second, to="production", reason="better")
        deadline = time.monotonic() + 30
        while predictor.version != second:
            assert time.monotonic() < deadline, "the predictor never reloaded"
            time.sleep(0.05)
        after = predictor.predict(frame.head(5))
        assert (after.version, after.predictions) == (second,
                                                      other.predict(frame.head(5)).tolist())
    versions = [r["version"] for r in _captured(yard, name) if r["kind"] == "prediction"]
    assert sorted(versions) == [first, first, second]


def test_serve_workers_2_share_metrics_and_all_follow_a_promotion(
        make_yard: Callable[..., Any], name: str, trained: dict[str, Any],
        tmp_path: Path) -> None:
    """The real `modelyard serve --workers 2` process: uvicorn workers, one merged /metrics.

    On both backends: on the team stack every worker reads the MLflow server and S3 on its
    own (the environment the CLI inherits names only them) and follows the alias there."""
    import os
    import signal
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.ensemble import RandomForestClassifier

    yard = make_yard()
    frame, labels = trained["X"], trained["y"]
    first = _register(yard, trained["model"], name, frame, "production")
    other = RandomForestClassifier(n_estimators=4, random_state=2).fit(frame, labels)
    second = _register(yard, other, name, frame, "staging")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    server = subprocess.Popen(
        [sys.executable, "-m", "modelyard", "serve", name, "--port", str(port), "--workers", "2",
         "--poll-interval", "0.3", "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def about() -> dict[str, Any]:  # a new connection each time: either worker may take it
        return dict(httpx.get(f"{url}/version", timeout=10).json())

    def session(_: int) -> tuple[int, int]:
        """One connection (one worker): its pid, then the predictions it answered right."""
        with httpx.Client(base_url=url, timeout=30) as client:
            pid = client.get("/version").json()["pid"]
            answered = 0
            for start in range(0, 40, 10):
                reply = client.post("/invocations", json={
                    "dataframe_records": _records(frame.iloc[start:start + 10])})
                assert reply.status_code == 200 and reply.headers["x-model-version"] == str(
                    first)
                assert reply.json()["predictions"] == trained["model"].predict(
                    frame.iloc[start:start + 10]).tolist()
                answered += 1
            return pid, answered

    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the workers never became ready"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        per_pid: dict[int, int] = {}
        with ThreadPoolExecutor(6) as pool:
            while len(per_pid) < 2:  # concurrent connections spread over both workers
                assert time.monotonic() < deadline, f"one worker answered all: {per_pid}"
                for pid, answered in pool.map(session, range(12)):
                    per_pid[pid] = per_pid.get(pid, 0) + answered
        assert server.pid not in per_pid  # workers answer, not the supervising CLI process

        # /metrics, from whichever worker, counts every worker's requests.
        series = (f'modelyard_requests_total{{arm="production",model="{name}",runtime="onnx",'
                  f'semver="1.0.0",version="{first}"}}')
        for _ in range(4):
            text = httpx.get(f"{url}/metrics", timeout=10).text
            [line] = [x for x in text.splitlines() if x.startswith(series)]
            assert float(line.split()[-1]) == sum(per_pid.values()), (line, per_pid)
            assert text.count("# TYPE modelyard_requests_total counter") == 1
            # The confidence histogram, a request's 10 rows at once, merged the same way.
            labelled = series.replace("modelyard_requests_total", "")
            [count] = [x for x in text.splitlines()
                       if x.startswith(f"modelyard_prediction_confidence_count{labelled}")]
            assert float(count.split()[-1]) == 10 * sum(per_pid.values()), (count, per_pid)
            [top] = [x for x in text.splitlines() if x.startswith(
                "modelyard_prediction_confidence_bucket") and 'le="+Inf"' in x
                and f'version="{first}"' in x]
            assert float(top.split()[-1]) == 10 * sum(per_pid.values())
            assert text.count("# TYPE modelyard_prediction_confidence histogram") == 1

        # A promotion reaches every worker (each follows the alias on its own).
        yard.promote(name, second, to="production", reason="better")
        seen: dict[int, int] = {}
        while set(seen) != set(per_pid) or set(seen.values()) != {second}:
            assert time.monotonic() < deadline + 30, f"not every worker moved: {seen}"
            with ThreadPoolExecutor(4) as pool:
                for body in pool.map(lambda _: about(), range(8)):
                    seen[body["pid"]] = body["version"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server we started and its own workers
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()
