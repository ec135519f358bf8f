"""Helpers shared by tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real `modelyard` command in a subprocess (exit code, stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd,
        timeout=600, check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"modelyard {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done
