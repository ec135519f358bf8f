"""The detection matrix on the embedded default (issue #24): each legitimate state and each
injected fault, what ``health``, ``detect`` and ``verify --all`` say, whether ``recover``
leaves every detector quiet, and the seconds each check took.

    python benchmarks/detection.py

Goal: 0 false alarms over the legitimate states, every fault caught, every fault recover
handles cleared. The states and faults are ``tests/support/matrix.py`` (the test
``tests/integration/test_detection_matrix.py`` asserts the same table).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from modelyard import Yard
    from modelyard.core.config import load_settings
    from tests.support.matrix import Matrix, build_project, table

    folder = Path(tempfile.mkdtemp(prefix="modelyard-bench-detection-"))
    project = folder / "project"
    project.mkdir()
    build_project(project, folder / "backup")
    os.chdir(project)  # the model's training data is named relative to the project, as in one
    cache = folder / "cache"

    def make_yard(**overrides: Any) -> Yard:
        return Yard(load_settings({"cache_dir": str(cache), **overrides}, environ={},
                                  cwd=project))

    features, target = make_classification(n_samples=300, n_features=5, random_state=0)
    frame = pd.DataFrame(features, columns=["tenure", "charges", "calls", "age", "score"])
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(frame, target)
    cells = Matrix(make_yard(), make_yard, "bench-model", project, model, frame).run(
        folder / "other")
    print(table(cells))
    for check in ("health", "detect", "verify", "recover"):
        values = [c.seconds[check] for c in cells if check in c.seconds]
        if values:
            print(f"{check}: median {statistics.median(values):.3f} s, max {max(values):.3f} s "
                  f"over {len(values)} cells")


if __name__ == "__main__":
    main()
