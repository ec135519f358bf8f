"""The detection matrix (issue #24), embedded: no alarm on any legitimate state, every fault
caught by health, detect or verify --all, and every fault recover handles leaves every
detector quiet
(``tests/support/matrix.py``; ``benchmarks/detection.py`` prints the same table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.matrix import Matrix, build_project, table


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_detection_matrix(make_yard: Any, name: str, trained: dict[str, Any], isolated: Path,
                          tmp_path: Path) -> None:
    build_project(isolated, tmp_path / "backup")
    matrix = Matrix(make_yard(), make_yard, name, isolated, trained["model"], trained["X"])
    cells = matrix.run(tmp_path / "other")
    report = table(cells)
    print(report)
    assert [c.state for c in cells if not c.fault and c.alarm] == [], report
    assert [c.state for c in cells if c.fault and not c.alarm] == [], report
    assert [c.state for c in cells if c.recovered is False] == [], report
    states = {c.state: c for c in cells}
    assert not states["after retention archived and deleted old versions"].alarm, report
    # verify --all hashes the backup store (health does not); repair puts the object back.
    backup = states["corrupted backup object"]
    assert backup.verified is False and backup.after == "ok", report
