"""Serving speed: `mlflow models serve` beside `modelyard serve`, one run, same model and workers.

The model is the seeds' kind: a RandomForest of 100 trees on scikit-learn's breast-cancer set
(30 numeric features). Every server starts on 127.0.0.1 with the same number of workers and
they are measured interleaved, round after round, each a closed loop of 32 concurrent clients
posting JSON to /invocations for a fixed time after a warm-up; each figure is the median of its
rounds, so other load on the machine falls on every set-up alike:

- mlflow / modelyard, single-row requests (the headline ratios);
- modelyard with an A/B split 50/50 between two versions (cost against one version);
- modelyard capturing every request (sample rate 1.0) to the vault (cost against none);
- mlflow / modelyard with 100-row requests;
- then modelyard while the production alias moves to another version (failed requests counted).

The default load generator is a lean keep-alive HTTP/1.1 client (little CPU per request, as
wrk); ``--client aiohttp`` uses aiohttp, whose own CPU caps what a 2-core machine can show.
Both servers run under the same uvicorn; with ``modelyard[serve]`` (uvicorn[standard]) it uses
uvloop and httptools, and the header line says whether they are present.

    python benchmarks/serve.py                     # 3 rounds of 5 s per set-up, 1 worker
    python benchmarks/serve.py --duration 10 --workers 2 --rounds 5
    python benchmarks/serve.py --predict           # the model call alone, per batch size
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


def _train() -> tuple[Any, Any, Any]:
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    data = load_breast_cancer()
    frame = pd.DataFrame(data.data, columns=list(data.feature_names))
    first = RandomForestClassifier(n_estimators=100, random_state=0).fit(frame, data.target)
    second = RandomForestClassifier(n_estimators=100, random_state=1).fit(frame, data.target)
    return frame, first, second


def _bodies(frame: Any, rows: int, count: int = 64) -> list[bytes]:
    columns = list(frame.columns)
    values = frame.values.tolist()
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
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of every set-up (the median is reported)")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="load generator: lean keep-alive HTTP/1.1 (default) or aiohttp")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--predict", action="store_true",
                        help="only time one predict call per batch size (no servers)")
    args = parser.parse_args()
    if args.predict:
        predict_calls(args.rounds)
        return

    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-serve-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # this script's own project folder: the embedded default lives here
        os.environ["MODELYARD_CACHE_DIR"] = str(work / "cache")
        os.environ.setdefault("MODELYARD_USER", "bench")
        from modelyard import Yard

        frame, first, second = _train()
        yard = Yard()
        one = yard.register(first, NAME, input_example=frame.head(3),
                            pip_requirements=["scikit-learn", "mlflow"])
        two = yard.register(second, NAME, input_example=frame.head(3),
                            pip_requirements=["scikit-learn", "mlflow"])
        yard.promote(NAME, one.version, to="production", force=True, reason="benchmark")
        yard.promote(NAME, two.version, to="staging")
        env = {**os.environ, "MLFLOW_TRACKING_URI": yard.tracking.tracking_uri}
        # `mlflow models serve` runs `uvicorn` from PATH: as in an activated environment.
        env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "")])
        src = str(Path(__file__).resolve().parents[1] / "src")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        single, hundred = _bodies(frame, 1), _bodies(frame, 100)
        w = args.workers
        print(f"{args.clients} {args.client} clients, {args.duration:g} s per scenario (after "
              f"{args.warmup:g} s warm-up), {w} worker(s), model: RandomForest(100) on "
              "breast-cancer (30 features); uvicorn with "
              f"{_accelerators()}; load average at start "
              f"{os.getloadavg()[0]:.1f}", flush=True)

        def mlflow_server() -> Server:
            mlflow = str(Path(python).with_name("mlflow"))
            return Server([mlflow, "models", "serve", "-m", f"models:/{NAME}/{one.version}",
                           "--env-manager", "local", "-w", str(w), "-h", HOST, "-p", "{port}"],
                          env, work, "/ping", work / "mlflow-serve.log")

        def modelyard_server(*extra: str) -> Server:
            return Server([python, "-m", "modelyard", "serve", NAME, "--host", HOST,
                           "--port", "{port}", "--workers", str(w), "--log-level", "warning",
                           "--poll-interval", "1", *extra],
                          env, work, "/ready", work / "modelyard-serve.log")

        # Every set-up runs side by side (an idle server costs next to nothing) and they are
        # measured interleaved, round after round, the order rotating by one each round (so
        # no set-up always follows the same one); each figure is the median of its rounds, so
        # whatever else loads the machine falls on all of them alike.
        servers: dict[str, Server] = {}
        results: dict[str, Result] = {}
        try:
            if not args.skip_mlflow:
                servers["mlflow"] = mlflow_server()
            servers["modelyard"] = modelyard_server()
            servers["ab"] = modelyard_server("--ab", "production=50", "--ab", "staging=50")
            servers["capture"] = modelyard_server("--capture-rate", "1.0")
            servers["modelyard100"] = modelyard_server()  # its own: batch sizes stay apart
            plan = [("mlflow", "mlflow", single, f"mlflow models serve -w {w}, 1 row"),
                    ("modelyard", "modelyard", single, f"modelyard serve --workers {w}, 1 row"),
                    ("ab", "ab", single, "modelyard A/B 50/50, 1 row"),
                    ("capture", "capture", single, "modelyard capture 1.0, 1 row"),
                    ("mlflow100", "mlflow", hundred, f"mlflow models serve -w {w}, 100 rows"),
                    ("modelyard100", "modelyard100", hundred,
                     f"modelyard serve --workers {w}, 100 rows")]
            plan = [step for step in plan if step[1] in servers]
            # The cost figures (A/B and capture against one version) compare set-ups measured
            # back to back: one version, A/B and capture run as one block, in a rotating order,
            # and each round gives a ratio; the figure is the median of those ratios.
            trio = [step for step in plan if step[0] in ("modelyard", "ab", "capture")]
            blocks: list[list[Any]] = [trio] + [[step] for step in plan if step not in trio]
            rounds: dict[str, list[Result]] = {key: [] for key, *_ in plan}
            for number in range(1, args.rounds + 1):
                print(f"round {number}/{args.rounds} (load average "
                      f"{os.getloadavg()[0]:.1f})", flush=True)
                shift = (number - 1) % len(blocks)  # each block takes every place in turn
                turn = (number - 1) % len(trio)
                for block in blocks[shift:] + blocks[:shift]:
                    if block is trio:
                        block = trio[turn:] + trio[:turn]
                    for key, server_key, bodies, label in block:
                        rounds[key].append(measure(label, servers[server_key], bodies, args))
            paired = _paired(rounds)
            for key, runs in rounds.items():
                results[key] = _median(runs)
                results[key].cpu_ms = statistics.median(r.cpu_ms for r in runs)
            for key in ("modelyard", "ab", "capture"):
                if key in servers:
                    print(f"  {key}: {_mean_batch(servers[key].url)} rows per predict call "
                          "(mean over the run, every worker and arm)", flush=True)
            # Long enough for the promotion (seconds on a busy machine) and the next poll.
            longer = argparse.Namespace(**{**vars(args), "duration": max(args.duration, 10.0)})
            results["promotion"] = measure(
                "modelyard, production moves mid-run", servers["modelyard"], single, longer,
                during=lambda: yard.promote(NAME, two.version, to="production",
                                            reason="benchmark"))
        finally:
            for server in servers.values():
                server.stop()
        captured = len(yard.vault.store.list(f"capture/{NAME}/"))
        _report(results, w, captured, paired)


def predict_calls(rounds: int, sizes: tuple[int, ...] = (1, 16, 32, 64, 100)) -> None:
    """CPU per predict call of the benchmark's forest: scikit-learn's own ``predict_proba``
    (what MLflow's pyfunc calls), the server's tree-by-tree path and its level walk.

    Each figure is the median over rounds of the mean CPU time (this process only, so other
    load on the machine shows less) of a loop of calls; the ways are interleaved per round.
    """
    import numpy as np

    from modelyard.serving.scoring import _ForestProba
    from modelyard.serving.source import Column

    frame, model, _ = _train()
    fast = _ForestProba.for_model(model, [Column(str(c), "double") for c in frame.columns])
    assert fast is not None
    rng = np.random.default_rng(0)
    print(f"RandomForest(100) on breast-cancer, max depth "
          f"{max(t.tree_.max_depth for t in model.estimators_)}; CPU per call, median of "
          f"{rounds} rounds; load average {os.getloadavg()[0]:.1f}")
    print("| rows | sklearn predict_proba | tree by tree | level walk | walk / tree by tree |")
    print("|---|---|---|---|---|")
    for rows in sizes:
        picked = frame.iloc[rng.integers(0, len(frame), rows)]
        matrix = np.asarray(picked.values, dtype=np.float32)
        expected = model.predict_proba(picked)
        ways = {"sklearn": lambda p=picked: model.predict_proba(p),
                "trees": lambda m=matrix: fast(m, levels=False),
                "levels": lambda m=matrix: fast(m, levels=True)}
        for key in ("trees", "levels"):
            assert np.array_equal(ways[key](), expected)  # the same numbers, bit for bit
        times: dict[str, list[float]] = {key: [] for key in ways}
        for _ in range(max(rounds, 3)):
            for key, call in ways.items():
                calls = 30 if key == "sklearn" else 300
                start = time.process_time()
                for _ in range(calls):
                    call()
                times[key].append((time.process_time() - start) / calls * 1e6)
        us = {key: statistics.median(values) for key, values in times.items()}
        print(f"| {rows} | {us['sklearn']:.0f} us | {us['trees']:.0f} us | "
              f"{us['levels']:.0f} us | {us['levels'] / us['trees']:.2f} |", flush=True)
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
    base = rounds.get("modelyard", [])
    out = {}
    for key in ("ab", "capture"):
        runs = rounds.get(key, [])
        pairs = [(run.throughput / one.throughput, run.cpu_ms / one.cpu_ms)
                 for run, one in zip(runs, base, strict=False) if one.throughput and one.cpu_ms]
        if pairs:
            out[key] = (statistics.median(p[0] for p in pairs),
                        statistics.median(p[1] for p in pairs))
    return out


def _report(results: dict[str, Result], workers: int, captured_files: int,
            paired: dict[str, tuple[float, float]] | None = None) -> None:
    print()
    print(f"| server ({workers} worker(s)) | throughput | p50 | p99 | server CPU/request "
          "| failed |")
    print("|---|---|---|---|---|---|")
    for result in results.values():
        print(f"| {result.label} | {result.throughput:.0f} req/s | {result.p50_ms:.1f} ms | "
              f"{result.p99_ms:.1f} ms | {result.cpu_ms:.2f} ms | {result.errors} |")
    print()
    base = results.get("modelyard")
    mlflow = results.get("mlflow")
    if base and mlflow and mlflow.throughput:
        print(f"throughput vs mlflow: {base.throughput / mlflow.throughput:.1f}x (goal >= 10x); "
              f"p99 {base.p99_ms / mlflow.p99_ms:.2f} of mlflow's (goal <= 0.5)")
    big, big_mlflow = results.get("modelyard100"), results.get("mlflow100")
    if big and big_mlflow and big_mlflow.throughput:
        print(f"100-row requests: {big.throughput / big_mlflow.throughput:.1f}x mlflow's "
              "throughput")
    for key, goal in (("ab", "A/B 50/50"), ("capture", "capture at 1.0")):
        if paired and key in paired:
            speed, cpu = paired[key]
            print(f"{goal}: {1 - speed:+.1%} throughput cost vs one version (goal <= 5%); "
                  f"server CPU per request {cpu - 1:+.1%} (medians of per-round ratios, "
                  "measured back to back)")
    if "promotion" in results:
        moved = results["promotion"]
        print(f"promotion under load: {moved.errors} failed requests; answered by versions "
              f"{dict(sorted(moved.versions.items()))}")
    print(f"capture files written: {captured_files}; load average at end "
          f"{os.getloadavg()[0]:.1f} (other work on the machine skews every figure)")


if __name__ == "__main__":
    main()
