"""Serving speed: `mlflow models serve` beside `modelyard serve`, one run, same workers.

Five model families, each trained on scikit-learn's breast-cancer set (30 numeric features):
a RandomForest of 100 trees; a pipeline of a scaler and HistGradientBoosting (100
iterations); a pipeline one-hot encoding two text columns before a logistic regression;
XGBoost and LightGBM (100 trees each, through their own MLflow flavors). Per family, both
servers start on 127.0.0.1 with the same number of workers and are measured interleaved,
round after round, each a closed loop of 32 concurrent clients posting JSON to /invocations
for a fixed time after a warm-up: single rows and 100-row batches, on the machine as it is
and beside one CPU-bound neighbour process (a shared host). Each figure is the median of its
rounds. On the first family it also measures two more servers against the plain one,
single rows, back to back: A/B 50/50 (production and a second version in staging) and capture
of every request (``--no-costs`` skips them). Per family it also reports which runtime answers
(ONNX Runtime or pyfunc, and why),
the promotion to staging that converts the model, parity on the held-out rows, the serving
processes' resident memory and the mean rows per model call.

The default load generator is a lean keep-alive HTTP/1.1 client (little CPU per request, as
wrk); ``--client aiohttp`` uses aiohttp, whose own CPU caps what a 2-core machine can show.
Both servers run under the same uvicorn; with ``modelyard[serve]`` (uvicorn[standard]) it uses
uvloop and httptools, and the header line says whether they are present.

    python benchmarks/serve.py                     # 3 rounds of 5 s per set-up, 2 workers
    python benchmarks/serve.py --family forest --family xgboost --rounds 5
    python benchmarks/serve.py --predict           # conversion and one call, per family
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
NAME = "bench-serve"


@dataclass
class Result:
    label: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    versions: dict[str, int]
    cpu_ms: float = float("nan")  # the server's CPU (all its processes) per answered request

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


FAMILIES = ("forest", "hgb", "onehot", "xgboost", "lightgbm")


def _family(family: str) -> tuple[Any, Any, Any, Any, Any]:
    """(model, train frame, train labels, held-out frame, held-out labels) of one family, on
    scikit-learn's breast-cancer set (30 numeric features; ``onehot`` adds two text columns)."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    frame = pd.DataFrame(data.data, columns=[c.replace(" ", "_") for c in data.feature_names])
    if family == "onehot":
        rng = np.random.default_rng(0)
        frame["segment"] = rng.choice(["retail", "sme", "corporate", "public"], len(frame))
        frame["region"] = rng.choice(["north", "south", "east", "west", "centre"], len(frame))
    train, held, y_train, y_held = train_test_split(frame, data.target, test_size=0.3,
                                                    random_state=0)
    if family == "forest":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(n_estimators=100, random_state=0)
    elif family == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=100))
    elif family == "onehot":
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        numeric = [c for c in frame.columns if c not in ("segment", "region")]
        model = Pipeline([
            ("columns", ColumnTransformer([
                ("num", StandardScaler(), numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["segment", "region"])])),
            ("model", LogisticRegression(max_iter=1000))])
    elif family == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier(n_estimators=100, max_depth=6)
    else:
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=100, verbose=-1)
    return model.fit(train, y_train), train, y_train, held, y_held


def _bodies(frame: Any, rows: int, count: int = 64) -> list[bytes]:
    columns = list(frame.columns)
    values = frame.astype(object).values.tolist()
    bodies = []
    for i in range(count):
        chunk = [values[(i * rows + j) % len(values)] for j in range(rows)]
        bodies.append(json.dumps({"dataframe_split": {"columns": columns, "data": chunk}})
                      .encode())
    return bodies


# -- servers ------------------------------------------------------------------------------
class Server:
    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, ready_path: str,
                 log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://{HOST}:{self.port}"
        command = [part.replace("{port}", str(self.port)) for part in command]
        self._path = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self._wait(ready_path)

    def _wait(self, path: str, timeout: float = 240.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = "\n".join(self._path.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server and its own workers only
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


# -- load ---------------------------------------------------------------------------------
async def _load(url: str, bodies: list[bytes], clients: int, duration: float,
                warmup: float) -> tuple[int, int, list[float], dict[str, int]]:
    import aiohttp

    latencies: list[float] = []
    versions: dict[str, int] = {}
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration

        async def client(index: int) -> None:
            nonlocal errors
            i = index
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                body = bodies[i % len(bodies)]
                i += clients
                try:
                    async with session.post(url + "/invocations", data=body,
                                            headers=headers) as reply:
                        await reply.read()
                        ok = reply.status == 200
                        version = reply.headers.get("x-model-version", "-")
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok, version = False, "-"
                done = time.perf_counter()
                if sent < measure_from:
                    continue
                if ok:
                    latencies.append(done - sent)
                    versions[version] = versions.get(version, 0) + 1
                else:
                    errors += 1

        await asyncio.gather(*(client(i) for i in range(clients)))
    return len(latencies), errors, latencies, versions


async def _load_raw(url: str, bodies: list[bytes], clients: int, duration: float,
                    warmup: float) -> tuple[int, int, list[float], dict[str, int]]:
    """The same closed loop over plain keep-alive HTTP/1.1 connections, with prepared requests.

    A load generator in Python spends CPU per request that the servers then lack on a small
    machine; this one (like wrk) does little more than write bytes and read Content-Length
    bytes back, so more of the machine goes to the server under test, whichever it is.
    """
    host, port = url.rsplit("//", 1)[1].split(":")
    requests = [(f"POST /invocations HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 "Content-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n").encode() + body for body in bodies]
    latencies: list[float] = []
    versions: dict[str, int] = {}
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def client(index: int) -> None:
        nonlocal errors
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        i = index
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                break
            request = requests[i % len(requests)]
            i += clients
            ok, version = False, "-"
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                assert reader is not None
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    key, _, value = line.partition(b":")
                    key = key.strip().lower()
                    if key == b"content-length":
                        length = int(value)
                    elif key == b"x-model-version":
                        version = value.strip().decode()
                await reader.readexactly(length)
                ok = head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    asyncio.TimeoutError, ValueError):
                if writer is not None:
                    writer.close()
                reader = writer = None
            done = time.perf_counter()
            if sent < measure_from:
                continue
            if ok:
                latencies.append(done - sent)
                versions[version] = versions.get(version, 0) + 1
            else:
                errors += 1
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return len(latencies), errors, latencies, versions


def _median(runs: list[Result]) -> Result:
    ordered = sorted(runs, key=lambda r: r.throughput)
    return ordered[(len(ordered) - 1) // 2]  # the lower middle: no flattering pick


def _cpu_seconds(root: int) -> float:
    """User + system CPU time of a process and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        frontier = [pid for pid in children if pid not in tree]
        tree.update(frontier)
    return sum(times.get(pid, 0.0) for pid in tree)


def measure(label: str, server: Server, bodies: list[bytes], args: argparse.Namespace,
            during: Any = None) -> Result:
    """One closed-loop run; also the server's CPU per request over the measured window.

    Throughput moves with whatever else runs on the machine; the CPU a server spends per
    answered request hardly does, so it shows the cost of a set-up (A/B, capture) steadily.
    """
    if during is not None:
        timer = threading.Timer(args.warmup + min(2.0, args.duration / 2), during)
        timer.start()
    cpu: list[float] = []
    sampler = threading.Timer(args.warmup, lambda: cpu.append(_cpu_seconds(server.process.pid)))
    sampler.start()
    load = _load_raw if args.client == "raw" else _load
    count, errors, latencies, versions = asyncio.run(
        load(server.url, bodies, args.clients, args.duration, args.warmup))
    sampler.join()
    cpu.append(_cpu_seconds(server.process.pid))
    latencies.sort()
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies \
        else float("nan")
    cpu_ms = (cpu[1] - cpu[0]) * 1000 / count if count else float("nan")
    result = Result(label, count, errors, args.duration, p50, p99, versions, cpu_ms)
    print(f"  {label:<44} {result.throughput:8.1f} req/s  p50 {p50:7.1f} ms  "
          f"p99 {p99:7.1f} ms  cpu {cpu_ms:6.2f} ms/req  errors {errors}", flush=True)
    return result


# -- main ---------------------------------------------------------------------------------
def _rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc), in MiB."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items()
                    if parent in frontier and pid not in tree]
        tree.update(frontier)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class Neighbour:
    """One CPU-bound process beside both servers: a shared host."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                        start_new_session=True)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of every set-up (the median is reported)")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="load generator: lean keep-alive HTTP/1.1 (default) or aiohttp")
    parser.add_argument("--family", action="append", choices=FAMILIES,
                        help="only these families (repeatable; default: all five)")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--no-costs", action="store_true",
                        help="skip the A/B 50/50 and capture servers (run on the first family)")
    parser.add_argument("--predict", action="store_true",
                        help="only time conversion and one predict call per family (no servers)")
    args = parser.parse_args()
    families = args.family or list(FAMILIES)
    if args.predict:
        predict_calls(families, args.rounds)
        return

    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-serve-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # this script's own project folder: the embedded default lives here
        os.environ["MODELYARD_CACHE_DIR"] = str(work / "cache")
        os.environ.setdefault("MODELYARD_USER", "bench")
        from modelyard import Yard

        yard = Yard()
        env = {**os.environ, "MLFLOW_TRACKING_URI": yard.tracking.tracking_uri}
        # `mlflow models serve` runs `uvicorn` from PATH: as in an activated environment.
        env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "")])
        src = str(Path(__file__).resolve().parents[1] / "src")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        w = args.workers
        print(f"{args.clients} {args.client} clients, {args.duration:g} s per scenario (after "
              f"{args.warmup:g} s warm-up), {w} worker(s) each, {args.rounds} round(s), "
              f"uvicorn with {_accelerators()}; {os.cpu_count()} CPUs, load average at start "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        table: list[dict[str, Any]] = []
        costs = None if args.no_costs else families[0]
        for family in families:
            table.append(_bench_family(yard, family, args, env, work, costs))
        _report(table, w)


def _bench_family(yard: Any, family: str, args: argparse.Namespace, env: dict[str, str],
                  work: Path, costs_family: str | None = None) -> dict[str, Any]:
    """Both servers on one family: quiet and beside a CPU-bound neighbour, 1 and 100 rows."""
    import numpy as np

    from modelyard.serving.compiled import summary

    python, w = sys.executable, args.workers
    name = f"{NAME}-{family}"
    model, train, y_train, held, _ = _family(family)
    one = yard.register(model, name, input_example=train.head(3),
                        training_data=train.assign(label=y_train))
    started = time.perf_counter()
    yard.promote(name, one.version, to="staging", reason="benchmark")  # compiles it
    staging_s = time.perf_counter() - started
    yard.promote(name, one.version, to="production", force=True, reason="benchmark")
    compiled = summary(yard.vault.store, name, one.manifest_sha256)
    # Parity on the held-out rows, through the server's own loading and scoring.
    with yard.predictor(name, poll_interval=0) as predictor:
        answer = predictor.predict(held)
        runtime = predictor.runtime
        reason = predictor._current.scorer.reason
    labels_equal = float(np.mean(np.asarray(answer.predictions) == model.predict(held)))
    diff = float(np.max(np.abs(np.asarray(answer.confidence)
                               - model.predict_proba(held).max(axis=1))))
    print(f"{family}: runtime {runtime}{f' ({reason})' if reason else ''}; promotion to "
          f"staging {staging_s:.2f} s; compiled copy {compiled}; "
          f"held-out parity: labels {labels_equal:.1%} equal, largest confidence difference "
          f"{diff:.2g}", flush=True)
    servers: dict[str, Server] = {}
    rounds: dict[str, list[Result]] = {}
    memory: dict[str, float] = {}
    single, hundred = _bodies(held, 1), _bodies(held, 100)
    try:
        if not args.skip_mlflow:
            servers["mlflow"] = Server(
                [str(Path(python).with_name("mlflow")), "models", "serve", "-m",
                 f"models:/{name}/{one.version}", "--env-manager", "local", "-w", str(w),
                 "-h", HOST, "-p", "{port}"], env, work, "/ping", work / "mlflow-serve.log")
        def modelyard_server(*extra: str) -> Server:
            return Server([python, "-m", "modelyard", "serve", name, "--host", HOST, "--port",
                           "{port}", "--workers", str(w), "--log-level", "warning",
                           "--poll-interval", "1", *extra],
                          env, work, "/ready", work / "modelyard-serve.log")

        servers["modelyard"] = modelyard_server()
        costs = costs_family == family
        if costs:
            # A/B 50/50 between production and a second version in staging, and capture of
            # every request: each against the plain server, single rows, back to back.
            two = yard.register(model, name, input_example=train.head(3),
                                training_data=train.assign(label=y_train),
                                params={"bench": "second"})
            yard.promote(name, two.version, to="staging", reason="benchmark A/B arm")
            servers["ab"] = modelyard_server("--ab", "production=50", "--ab", "staging=50")
            servers["capture"] = modelyard_server("--capture-rate", "1.0")
        plan = [(f"{key}/{rows}/{host}", key, bodies)
                for host in ("quiet", "neighbour")
                for rows, bodies in (("1", single), ("100", hundred))
                for key in servers
                if key in ("mlflow", "modelyard") or (rows == "1" and host == "quiet")]
        for number in range(1, args.rounds + 1):
            print(f"  round {number}/{args.rounds} (load average {os.getloadavg()[0]:.1f})",
                  flush=True)
            for host in ("quiet", "neighbour"):
                neighbour = Neighbour() if host == "neighbour" else None
                try:
                    steps = [step for step in plan if step[0].endswith(host)]
                    if number % 2 == 0:
                        steps.reverse()  # neither server always goes first
                    for label, key, bodies in steps:
                        rounds.setdefault(label, []).append(
                            measure(f"{family} {label}", servers[key], bodies, args))
                finally:
                    if neighbour is not None:
                        neighbour.stop()
        for key, server in servers.items():
            memory[key] = _rss_mb(server.process.pid)
        batch = _mean_batch(servers["modelyard"].url)
    finally:
        for server in servers.values():
            server.stop()
    medians = {label: _median(runs) for label, runs in rounds.items()}
    for label, runs in rounds.items():  # CPU per request: steadier than throughput under load
        medians[label].cpu_ms = statistics.median(r.cpu_ms for r in runs)
    return {"family": family, "runtime": runtime, "reason": reason, "compiled": compiled,
            "staging_s": staging_s, "labels_equal": labels_equal, "max_diff": diff,
            "results": medians, "memory": memory, "batch": batch,
            "paired": _paired(rounds) if costs else {}}


def predict_calls(families: list[str], rounds: int, sizes: tuple[int, ...] = (1, 100)) -> None:
    """Per family: conversion time and CPU per predict call, the model's own
    ``predict_proba`` (what MLflow's pyfunc calls) against the compiled copy in ONNX Runtime.
    Each figure is the median over rounds of the mean CPU time of a loop of calls."""
    from modelyard.serving.compiled import OnnxModel, Refused, convert
    from modelyard.serving.source import Column

    print(f"CPU per call, median of {max(rounds, 3)} rounds; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| family | conversion | rows | model's own predict_proba | ONNX Runtime | ratio |")
    print("|---|---|---|---|---|---|")
    for family in families:
        model, train, _, held, _ = _family(family)
        columns = [Column(str(c), "string" if train[c].dtype.kind not in "fiub" else "double")
                   for c in train.columns]
        started = time.perf_counter()
        try:
            data, layout, _ = convert(model, columns)
        except Refused as exc:
            print(f"| {family} | refused: {exc} | | | | |")
            continue
        seconds = time.perf_counter() - started
        compiled = OnnxModel(data, columns, layout)
        for rows in sizes:
            picked = held.iloc[:rows]
            values = picked.astype(object).values.tolist()
            ways = {"own": lambda p=picked, m=model: m.predict_proba(p),
                    "onnx": lambda v=values, c=compiled: c.run(v)}
            times: dict[str, list[float]] = {key: [] for key in ways}
            for _ in range(max(rounds, 3)):
                for key, call in ways.items():
                    calls = 20 if key == "own" else 200
                    start = time.process_time()
                    for _ in range(calls):
                        call()
                    times[key].append((time.process_time() - start) / calls * 1e6)
            us = {key: statistics.median(v) for key, v in times.items()}
            print(f"| {family} | {seconds:.2f} s | {rows} | {us['own']:.0f} us | "
                  f"{us['onnx']:.0f} us | {us['own'] / us['onnx']:.1f}x |", flush=True)
    frame = _family("forest")[1]
    _capture_costs(frame, rounds)


def _capture_costs(frame: Any, rounds: int, records: int = 4096) -> None:
    """CPU of capture at 1.0 per one-row request: what the request path does (append a
    tuple) and what the writer thread does later (records, JSON lines, gzip), timed apart."""
    import random

    from modelyard.serving.capture import CaptureLog
    from modelyard.serving.payload import parse_body
    from modelyard.store.storage import LocalStore

    bodies = _bodies(frame, 1)
    blocks = [parse_body(body, "application/json", strict=True) for body in bodies]
    columns = [str(c) for c in frame.columns]
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-capture-") as folder:
        log = CaptureLog(LocalStore(Path(folder)), NAME, rate=1.0, chunk=records + 1)
        keep_us, write_us = [], []
        for _ in range(max(rounds, 3)):
            ids = [f"{random.getrandbits(128):032x}" for _ in range(records)]
            start = time.process_time()
            for i in range(records):  # as Runtime.serve does after answering
                if log.rate and log.sampled():
                    log.keep(time.time(), ids[i], 1, "1.0.0", "production", 0.004, columns,
                             blocks[i % len(blocks)].rows or [], [1], [0.97])
            keep_us.append((time.process_time() - start) / records * 1e6)
            start = time.process_time()
            log.flush_now()  # the writer thread's work, waited for here
            write_us.append((time.process_time() - start) / records * 1e6)
    print(f"capture at 1.0, per one-row request (30 features): request path "
          f"{statistics.median(keep_us):.2f} us, writer thread {statistics.median(write_us):.1f} "
          "us (JSON line + gzip level 1 + file)")


def _accelerators() -> str:
    import importlib.util

    found = [m for m in ("uvloop", "httptools") if importlib.util.find_spec(m) is not None]
    return " + ".join(found) if found else "asyncio + h11 (no uvloop, no httptools)"


def _mean_batch(url: str) -> str:
    """Rows per model call, from the server's own batch-size histogram (all arms summed)."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    totals = {"_sum": 0.0, "_count": 0.0}
    for line in text.splitlines():
        for suffix in totals:
            if line.startswith("modelyard_batch_size" + suffix + "{"):
                totals[suffix] += float(line.rsplit(" ", 1)[1])
    return f"{totals['_sum'] / totals['_count']:.1f}" if totals["_count"] else "?"


def _paired(rounds: dict[str, list[Result]]) -> dict[str, tuple[float, float]]:
    """A/B and capture against one version, measured back to back: per round, the throughput
    ratio and the CPU-per-request ratio; the medians over rounds."""
    base = rounds.get("modelyard/1/quiet", [])
    out = {}
    for key in ("ab", "capture"):
        runs = rounds.get(f"{key}/1/quiet", [])
        pairs = [(run.throughput / one.throughput, run.cpu_ms / one.cpu_ms)
                 for run, one in zip(runs, base, strict=False) if one.throughput and one.cpu_ms]
        if pairs:
            out[key] = (statistics.median(p[0] for p in pairs),
                        statistics.median(p[1] for p in pairs))
    return out


def _report(table: list[dict[str, Any]], workers: int) -> None:
    print()
    print(f"| family | runtime | machine | rows | `mlflow models serve -w {workers}` | "
          f"`modelyard serve --workers {workers}` | throughput | p99 | server CPU per request |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in table:
        results = row["results"]
        for host in ("quiet", "neighbour"):
            for rows in ("1", "100"):
                ours = results.get(f"modelyard/{rows}/{host}")
                theirs = results.get(f"mlflow/{rows}/{host}")
                if ours is None:
                    continue
                mine = f"{ours.throughput:.0f} req/s, p99 {ours.p99_ms:.0f} ms"
                if theirs is None or not theirs.throughput:
                    print(f"| {row['family']} | {row['runtime']} | {host} | {rows} | - | "
                          f"{mine} | - | - | - |")
                    continue
                print(f"| {row['family']} | {row['runtime']} | {host} | {rows} | "
                      f"{theirs.throughput:.0f} req/s, p99 {theirs.p99_ms:.0f} ms | {mine} | "
                      f"{ours.throughput / theirs.throughput:.1f}x | "
                      f"{ours.p99_ms / theirs.p99_ms:.2f}x | {ours.cpu_ms:.2f} / "
                      f"{theirs.cpu_ms:.1f} ms ({theirs.cpu_ms / ours.cpu_ms:.0f}x less) |")
    print()
    print("| family | runtime (reason) | conversion | parity at conversion | held-out parity "
          "| memory mlflow / modelyard | rows per call |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        parity = row["compiled"].get("parity") or {}
        runtime = row["runtime"] + (f" ({row['reason']})" if row["reason"] else "")
        record = (f"{parity.get('rows')} rows, max diff {parity.get('max_abs_diff'):.1g}"
                  if parity else "-")
        memory = row["memory"]
        print(f"| {row['family']} | {runtime} | promotion to staging {row['staging_s']:.1f} s | "
              f"{record} | labels {row['labels_equal']:.1%} equal, confidence max diff "
              f"{row['max_diff']:.1g} | {memory.get('mlflow', float('nan')):.0f} / "
              f"{memory.get('modelyard', float('nan')):.0f} MiB | {row['batch']} |")
    for row in table:
        for key, what in (("ab", "A/B 50/50"), ("capture", "capture at 1.0")):
            if key in row["paired"]:
                throughput, cpu = row["paired"][key]
                print(f"{what} ({row['family']}, single rows, against the same server without "
                      f"it, median of per-round ratios): throughput {throughput:.2f}x, server "
                      f"CPU per request {cpu:.2f}x")
    print(f"load average at end {os.getloadavg()[0]:.1f} (other work on the machine skews "
          "every figure)")


if __name__ == "__main__":
    main()
