"""Nothing under serving reaches into another library's private modules (issue #25): a
library's internals change without notice, and a server must survive an upgrade."""

from __future__ import annotations

import ast
from pathlib import Path

import modelyard.serving

SERVING = Path(modelyard.serving.__file__).parent


def _imported(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def test_serving_imports_no_private_module_of_another_library() -> None:
    found = []
    for path in sorted(SERVING.glob("*.py")):
        for name in _imported(ast.parse(path.read_text())):
            if name.split(".")[0] in ("modelyard", "__future__"):
                continue
            if any(part.startswith("_") and not part.startswith("__")
                   for part in name.split(".")):
                found.append(f"{path.name}: {name}")
    assert not found, found
