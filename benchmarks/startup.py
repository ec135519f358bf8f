"""CLI start-up: `modelyard --help` beside `python -c "import mlflow"`, medians of N runs.

    python benchmarks/startup.py [--n 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _median_seconds(command: list[str], n: int) -> float:
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=7)
    args = parser.parse_args()
    ours = _median_seconds([sys.executable, "-m", "modelyard.cli", "--help"], args.n)
    peer = _median_seconds([sys.executable, "-c", "import mlflow"], args.n)
    bare = _median_seconds([sys.executable, "-c", "pass"], args.n)
    print(f"start-up, median of {args.n} runs (seconds)")
    print(f"{'modelyard --help':<24} {ours:8.3f}")
    print(f"{'python -c import mlflow':<24} {peer:8.3f}")
    print(f"{'python -c pass':<24} {bare:8.3f}")
    print(f"import mlflow / modelyard --help: {peer / ours:.1f}x")


if __name__ == "__main__":
    main()
