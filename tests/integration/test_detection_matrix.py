"""The detection matrix (issue #24): no alarm on any legitimate state, every fault caught by
health, detect or verify --all, and every fault recover handles leaves every detector quiet
(``tests/support/matrix.py``; ``benchmarks/detection.py`` prints the same table). Every row
on the embedded default; on the team stack the registry and model rows (``SERVER_ROWS``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.matrix import SERVER_ROWS, Matrix, build_project, table


def test_detection_matrix(make_yard: Any, name: str, trained: dict[str, Any], isolated: Path,
                          tmp_path: Path, backend: str) -> None:
    build_project(isolated, tmp_path / "backup")
    only = SERVER_ROWS if backend == "server" else None
    matrix = Matrix(make_yard(), make_yard, name, isolated, trained["model"], trained["X"],
                    only=only)
    cells = matrix.run(tmp_path / "other")
    report = table(cells)
    print(report)
    assert only is None or {c.state for c in cells} == only, report
    assert [c.state for c in cells if not c.fault and c.alarm] == [], report
    assert [c.state for c in cells if c.fault and not c.alarm] == [], report
    assert [c.state for c in cells if c.recovered is False] == [], report
    states = {c.state: c for c in cells}
    retention = states.get("after retention archived and deleted old versions")
    assert backend == "server" or (retention is not None and not retention.alarm), report
    # verify --all hashes the backup store (health does not); repair puts the object back.
    backup = states["corrupted backup object"]
    assert backup.verified is False and backup.after == "ok", report
