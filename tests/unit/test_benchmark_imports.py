"""The benchmarks import modelyard's names inside their functions (the CLI start-up they time
must not pay for them), where neither ruff nor mypy follows: check every such import here, so
a renamed or moved name fails the suite instead of the next ``make bench``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py"))


def _modelyard_imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.module, alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            and node.module.split(".")[0] == "modelyard" for alias in node.names]


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_modelyard_name_a_benchmark_imports_exists(path: Path) -> None:
    missing = [f"{module}.{name}" for module, name in _modelyard_imports(path)
               if not hasattr(importlib.import_module(module), name)]
    assert missing == [], f"{path.name} imports names modelyard no longer has: {missing}"
