"""What the benchmarks share: the median wall time of a call (run as scripts, they import this
module from their own folder)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_seconds(fn: Callable[[], Any], runs: int = 3) -> float:
    """The median of ``runs`` timed calls of ``fn``, in seconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)
