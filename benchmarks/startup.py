"""CLI start-up: `modelyard --help` beside `python -c "import mlflow"`, and where the start-up
of a read on a server goes, import by import. Medians of N new processes.

    python benchmarks/startup.py [--n 7]

The phases are what a `modelyard --json details NAME@REF` on a tracking server pays before
and around its HTTP requests, each timed inside one new process in the order the CLI meets
them (so a phase does not count what an earlier one imported):
- the interpreter (`python -c pass`, its own processes);
- click and the command modules (`modelyard.cli`);
- the facade and its verbs, with pydantic and the Settings model (`modelyard.yard`);
- pydantic-settings (only when the environment holds a variable it reads: on a server,
  `MLFLOW_TRACKING_URI`);
- boto3 and one S3 client (only verbs that read or write an S3 vault: `history`, moves, a
  read on a machine that has not seen the newest audit event);
- rich (tables; never with `--json`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

PHASES = r"""
import json, time
marks = {}
last = time.perf_counter()
def mark(name):
    global last
    now = time.perf_counter()
    marks[name] = now - last
    last = now
import modelyard.cli
mark("click + modelyard.cli")
import modelyard.yard
mark("modelyard.yard (+ pydantic)")
import pydantic_settings
mark("pydantic_settings")
import boto3
mark("boto3 import")
from botocore.config import Config
boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
             aws_access_key_id="x", aws_secret_access_key="y",
             config=Config(retries={"max_attempts": 3, "mode": "standard"}))
mark("boto3 S3 client")
import rich.console, rich.table
mark("rich")
print(json.dumps(marks))
"""


def _median_seconds(command: list[str], n: int) -> float:
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _phases(n: int) -> dict[str, float]:
    runs: list[dict[str, float]] = []
    for attempt in range(n + 1):
        done = subprocess.run([sys.executable, "-c", PHASES], check=True, capture_output=True,
                              text=True)
        if attempt:  # the first run warms the file cache
            runs.append(json.loads(done.stdout))
    return {phase: statistics.median(run[phase] for run in runs) for phase in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=7)
    args = parser.parse_args()
    ours = _median_seconds([sys.executable, "-m", "modelyard.cli", "--help"], args.n)
    peer = _median_seconds([sys.executable, "-c", "import mlflow"], args.n)
    bare = _median_seconds([sys.executable, "-c", "pass"], args.n)
    print(f"start-up, median of {args.n} runs (seconds)")
    print(f"{'modelyard --help':<32} {ours:8.3f}")
    print(f"{'python -c import mlflow':<32} {peer:8.3f}")
    print(f"{'python -c pass':<32} {bare:8.3f}")
    print(f"import mlflow / modelyard --help: {peer / ours:.1f}x")
    print(f"\nwhere a read's start-up goes, median of {args.n} processes (seconds)")
    print(f"{'interpreter (python -c pass)':<32} {bare:8.3f}")
    for phase, seconds in _phases(args.n).items():
        print(f"{phase:<32} {seconds:8.3f}")


if __name__ == "__main__":
    main()
