"""Compiled serving: five model families through ONNX Runtime, pyfunc with a reason when the
converters refuse, hot reload across runtimes, and the Open Inference Protocol (v2) spoken
by tritonclient's HTTP client.

Each family is registered for real (XGBoost and LightGBM through their own MLflow flavors),
served through the same loading and scoring as the server, and compared with the model's own
predictions; the compiled copy is read back from the vault, checked by its SHA-256 (a damaged
copy is converted again, never run), backed up and restored with its version.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.integration.test_serving import _records
from tests.support.helpers import run_cli, serving

NUMERIC = ["tenure", "charges", "calls", "age", "score"]


@pytest.fixture(scope="module")
def families() -> dict[str, tuple[Any, pd.DataFrame, np.ndarray]]:
    """One small fitted model per family, with its frame and labels."""
    import lightgbm
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features, target = make_classification(n_samples=200, n_features=5, random_state=1)
    frame = pd.DataFrame(features, columns=NUMERIC)
    plans = pd.DataFrame(frame).assign(
        plan=np.random.default_rng(0).choice(["basic", "plus", "pro"], len(frame)))
    onehot = Pipeline([
        ("columns", ColumnTransformer([("num", StandardScaler(), NUMERIC),
                                       ("cat", OneHotEncoder(handle_unknown="ignore"),
                                        ["plan"])])),
        ("model", LogisticRegression())]).fit(plans, target)
    return {
        "forest": (RandomForestClassifier(n_estimators=8, random_state=0).fit(frame, target),
                   frame, target),
        "hgb": (make_pipeline(StandardScaler(), HistGradientBoostingClassifier(
            max_iter=8, random_state=0)).fit(frame, target), frame, target),
        "onehot": (onehot, plans, target),
        "xgboost": (xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(frame, target),
                    frame, target),
        "lightgbm": (lightgbm.LGBMClassifier(n_estimators=8, verbose=-1).fit(frame, target),
                     frame, target),
    }


def _register(yard: Any, name: str, model: Any, frame: pd.DataFrame, labels: Any,
              **options: Any) -> Any:
    return yard.register(model, name, input_example=frame.head(3),
                         training_data=frame.assign(label=labels), **options)


def _summary(yard: Any, name: str, version: int) -> dict[str, Any]:
    from modelyard.serving.compiled import summary

    mv = yard.get(name, version)
    return summary(yard.vault.store, name, mv.manifest_sha256)


def test_each_family_serves_compiled_with_parity(
        make_yard: Callable[..., Any], name: str,
        families: dict[str, tuple[Any, pd.DataFrame, np.ndarray]]) -> None:
    from modelyard.serving.compiled import TOLERANCE

    yard = make_yard()
    for family, (model, frame, labels) in families.items():
        model_name = f"{name}-{family}"
        mv = _register(yard, model_name, model, frame, labels, params={"family": family})
        assert mv.semver == "1.0.0"
        # Registration converts nothing: the compiled copy waits for serving or staging.
        assert _summary(yard, model_name, mv.version)["runtime"] is None
        with yard.predictor(model_name, "latest", poll_interval=0) as predictor:
            compiled = predictor._current.served.compiled
            assert predictor.runtime == "onnx", compiled.reason
            assert compiled.parity["rows"] == 3 + len(frame)  # example + sample
            assert compiled.parity["labels_equal"] == 1.0
            assert compiled.parity["max_abs_diff"] <= TOLERANCE
            result = predictor.predict(frame)
        assert result.predictions == model.predict(frame).tolist()  # every label equal
        assert np.allclose(result.confidence, model.predict_proba(frame).max(axis=1),
                           atol=TOLERANCE, rtol=0)
        about = _summary(yard, model_name, mv.version)
        assert about["runtime"] == predictor.runtime and about["exists"] == (
            predictor.runtime == "onnx")

    # XGBoost and LightGBM: their own flavors, and semver from params and schema.
    for family in ("xgboost", "lightgbm"):
        assert yard.get(f"{name}-{family}", 1).tags["modelyard.flavor"] == family
    model, frame, labels = families["xgboost"]
    again = _register(yard, f"{name}-xgboost", model, frame, labels,
                      params={"family": "xgboost", "max_depth": 3})
    assert (again.semver, again.bump) == ("1.0.1", "patch")
    import lightgbm

    narrower = frame.drop(columns=["score"])
    fewer = lightgbm.LGBMClassifier(n_estimators=8, verbose=-1).fit(narrower, labels)
    dropped = _register(yard, f"{name}-lightgbm", fewer, narrower, labels,
                        params={"family": "lightgbm"})
    assert (dropped.semver, dropped.bump) == ("2.0.0", "major")


def test_compiled_copy_is_verified_read_back_and_backed_up(
        make_yard: Callable[..., Any], name: str, trained: dict[str, Any], tmp_path: Any,
        caplog: pytest.LogCaptureFixture, backend: str) -> None:
    from modelyard.protection.backup_store import backup_store
    from modelyard.store.vault import compiled_key, object_key

    yard = make_yard(backup=str(tmp_path / "backup"))
    frame, labels = trained["X"], trained["y"]
    mv = _register(yard, name, trained["model"], frame, labels)
    yard.promote(name, mv.version, to="staging", reason="compiled on the way in")
    # Promotion to staging converted it already: the record and the object are in the vault.
    record = json.loads(yard.vault.store.get_bytes(compiled_key(name, mv.manifest_sha256)))
    assert record["runtime"] == "onnx" and record["parity"]["labels_equal"] == 1.0
    # The ONNX object is named by its compiled record, not by a manifest: never debris (the
    # vault's objects are checked for the whole registry: the embedded one is this test's own).
    debris = yard.protection.cleanup_debris(None if backend == "embedded" else [name], grace=0)
    assert debris.items == [], [i.line for i in debris.items]
    assert yard.vault.store.exists(object_key(record["object"]))
    with yard.predictor(name, "staging", poll_interval=0) as predictor:
        assert predictor.runtime == "onnx"
        assert predictor._current.served.compiled.convert_s is None  # read back, not converted

    # A damaged copy is never run: it is converted again (and the object rewritten).
    key = object_key(record["object"])
    data_ok = yard.vault.store.get_bytes(key)
    data = bytearray(data_ok)
    data[len(data) // 2] ^= 0xFF
    yard.vault.store.put_bytes(key, bytes(data))
    with yard.predictor(name, "staging", poll_interval=0) as predictor:
        assert predictor.runtime == "onnx"
        assert predictor._current.served.compiled.convert_s is not None
        assert predictor.predict(frame).predictions == trained["model"].predict(frame).tolist()
    assert "does not match its recorded SHA-256" in caplog.text

    # Backed up with the version (staging entered backup_stages after it was compiled) and
    # back with it when the version is restored.
    assert backup_store(yard.ctx).store.exists(compiled_key(name, mv.manifest_sha256))
    yard.tracking.delete_version(name, mv.version)
    yard.vault.store.delete(compiled_key(name, mv.manifest_sha256))
    yard.vault.store.delete(key)
    report = yard.protection.restore(name, "v1.0.0")
    assert report.ok
    assert yard.vault.store.exists(compiled_key(name, mv.manifest_sha256))
    assert yard.vault.store.get_bytes(key) == bytes(data_ok)
    restored = report.restored[0].version
    with yard.predictor(name, str(restored), poll_interval=0) as predictor:
        assert predictor.runtime == "onnx"
        assert predictor._current.served.compiled.convert_s is None  # the restored copy


def test_refused_conversion_serves_pyfunc_with_the_reason_and_reload_fails_nothing(
        make_yard: Callable[..., Any], name: str, trained: dict[str, Any]) -> None:
    """onnx -> pyfunc -> onnx under load: every request answered, each runtime labelled."""
    from sklearn.semi_supervised import LabelSpreading

    from modelyard.serving.app import create_app

    yard, admin = make_yard(), make_yard()
    frame, labels = trained["X"], trained["y"]
    one = _register(admin, name, trained["model"], frame, labels)
    first = one.version
    admin.promote(name, first, to="production", force=True, reason="first")
    spreading = LabelSpreading(max_iter=5).fit(frame, labels)  # no skl2onnx converter
    two = _register(admin, name, spreading, frame, labels)
    second = two.version
    admin.promote(name, second, to="staging", reason="candidate")
    refused = _summary(admin, name, second)  # decided at the staging promotion
    assert refused["exists"] is False and refused["runtime"] == "pyfunc"
    assert "skl2onnx could not convert sklearn.semi_supervised" in refused["reason"]
    shown = json.loads(run_cli("details", f"{name}@staging", "--json", check=True).stdout)
    assert shown["compiled"]["runtime"] == "pyfunc" and shown["compiled"]["exists"] is False
    assert "skl2onnx could not convert" in shown["compiled"]["reason"]
    assert "not yet" in run_cli("details", f"{name}@production", check=True).stdout

    app = create_app(yard, name, poll_interval=0.2)
    rows = {"instances": _records(frame.head(2))}
    outcomes: list[tuple[int, Any]] = []
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                try:
                    reply = client.post("/predict", json=rows)
                    outcomes.append((reply.status_code, reply.json().get("version")))
                except httpx.HTTPError:
                    outcomes.append((0, None))

    def wait_for(client: httpx.Client, version: int) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while (about := client.get("/version").json())["version"] != version:
            assert time.monotonic() < deadline, "the version never switched"
            time.sleep(0.05)
        time.sleep(0.3)  # requests keep flowing on the new version
        return dict(about)

    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/version").json()["runtime"] == "onnx"
        workers = [threading.Thread(target=load, args=(url,)) for _ in range(3)]
        for worker in workers:
            worker.start()
        try:
            time.sleep(0.3)
            admin.promote(name, second, to="production", reason="to pyfunc")
            about = wait_for(client, second)
            assert about["runtime"] == "pyfunc"
            assert "skl2onnx could not convert" in about["runtime_reason"]
            admin.promote(name, first, to="production", force=True, reason="back to onnx")
            assert wait_for(client, first)["runtime"] == "onnx"
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
        assert len(outcomes) > 20
        assert {status for status, _ in outcomes} == {200}, "a request failed during a swap"
        assert {version for _, version in outcomes} == {first, second}
        text = client.get("/metrics").text
        for runtime, version in (("onnx", first), ("pyfunc", second)):
            assert (f'modelyard_batch_size_count{{arm="production",model="{name}",'
                    f'runtime="{runtime}",semver=') in text
            semver = one.semver if version == first else two.semver
            assert f'runtime="{runtime}",semver="{semver}",version="{version}"' in text
    table = " ".join(run_cli("details", f"{name}@production", check=True).stdout.split())
    assert f"compiled onnx; parity on {3 + min(256, len(frame))} rows: labels 100% equal" in table


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # the protocol is the app's
def test_open_inference_protocol_with_tritonclient_and_bad_bodies(
        yard: Any, name: str, families: dict[str, tuple[Any, pd.DataFrame, np.ndarray]]) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    from modelyard.serving.app import create_app

    model, frame, labels = families["onehot"]
    mv = _register(yard, name, model, frame, labels)
    yard.promote(name, mv.version, to="production", force=True, reason="v2")
    expected = model.predict(frame.head(4)).tolist()
    with serving(create_app(yard, name, poll_interval=0)) as url:
        client = triton.InferenceServerClient(url=url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(name) and client.is_model_ready(name, str(mv.version))
        meta = client.get_model_metadata(name)
        assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == [str(mv.version)]
        assert [i["name"] for i in meta["inputs"]] == [*NUMERIC, "plan"]

        def inputs(binary: bool) -> list[Any]:
            out = []
            for column in [*NUMERIC, "plan"]:
                values = frame[column].head(4).to_numpy()
                kind = "BYTES" if column == "plan" else "FP64"
                tensor = triton.InferInput(column, [4, 1], kind)
                tensor.set_data_from_numpy(values.astype(object if kind == "BYTES" else
                                                         np.float64).reshape(4, 1),
                                           binary_data=binary)
                out.append(tensor)
            return out

        for binary in (True, False):  # the binary tensor extension and plain JSON
            result = client.infer(name, inputs(binary), request_id="r-1")
            assert result.as_numpy("predict").tolist() == expected
            assert result.get_response()["id"] == "r-1"
            confidence = result.as_numpy("confidence")
            assert np.allclose(confidence, model.predict_proba(frame.head(4)).max(axis=1),
                               atol=1e-5)
        by_version = client.infer(name, inputs(True), model_version=str(mv.version),
                                  outputs=[triton.InferRequestedOutput("predict")])
        assert by_version.as_numpy("predict").tolist() == expected
        assert by_version.as_numpy("confidence") is None
        with pytest.raises(InferenceServerException, match="not served here"):
            client.infer(name, inputs(True), model_version="99")
        with pytest.raises(InferenceServerException, match="not served here"):
            client.get_model_metadata("another-model")
        with pytest.raises(InferenceServerException, match="'plan'"):
            client.infer(name, inputs(True)[:-1])  # a required column missing: 422 names it
        client.close()

        # Bad bodies on every endpoint: a 4xx JSON body naming the problem, nothing else.
        infer = f"/v2/models/{name}/infer"
        bad = [
            ("/predict", b"{not json"), ("/predict", b"[]"), ("/invocations", b'{"a": 1}'),
            ("/feedback", b"\xff\xfe"), ("/feedback", b'{"label": 1}'),
            (infer, b"{not json"), (infer, b"[1, 2]"), (infer, b'{"inputs": []}'),
            (infer, b'{"inputs": [{"name": "tenure"}]}'),
            (infer, b'{"inputs": [{"name": "tenure", "shape": [2], "datatype": "FP99", '
                    b'"data": [1, 2]}]}'),
            (infer, b'{"inputs": [{"name": "tenure", "shape": [3], "datatype": "FP64", '
                    b'"data": [1, 2]}]}'),
            (infer, b'{"inputs": [{"name": "tenure", "shape": [1], "datatype": "FP64", '
                    b'"data": ["x"]}], "outputs": [{"name": "nope"}]}'),
            (f"/v2/models/{name}/versions/abc/infer", b'{"inputs": []}'),
        ]
        with httpx.Client(base_url=url, timeout=30) as http:
            for path, body in bad:
                reply = http.post(path, content=body,
                                  headers={"content-type": "application/json"})
                assert 400 <= reply.status_code < 500, (path, body, reply.status_code)
                error = reply.json()
                assert error["error"] and (error.get("message") or error["error"]), error
            header = http.post(infer, content=b'{"inputs": []}',
                               headers={"inference-header-content-length": "x"})
            assert header.status_code == 400 and "Inference-Header" in header.json()["error"]
            still = http.post("/predict", json={"instances": frame.head(1).to_dict(
                orient="records")})
            assert still.status_code == 200 and still.json()["predictions"] == expected[:1]


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # the policy is the same
def test_registration_never_converts_even_when_it_enters_staging(
        make_yard: Callable[..., Any], name: str, trained: dict[str, Any]) -> None:
    yard = make_yard(default_stage="staging")
    mv = _register(yard, name, trained["model"], trained["X"], trained["y"])
    assert yard.get(name, mv.version).stage == "staging"
    assert _summary(yard, name, mv.version)["runtime"] is None  # serving converts it later
    yard.promote(name, mv.version, to="none", reason="out")
    yard.promote(name, mv.version, to="staging", reason="back in, by hand")
    assert _summary(yard, name, mv.version)["runtime"] == "onnx"
