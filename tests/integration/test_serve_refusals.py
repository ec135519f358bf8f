"""``serve`` refuses what it must not serve in one line, before any worker starts."""

from __future__ import annotations

from typing import Any

from tests.support.helpers import corrupt_version, run_cli


def test_serve_refuses_a_tampered_version_in_one_line(
    yard: Any, name: str, trained: dict[str, Any],
) -> None:
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    yard.promote(name, 1, to="production", force=True, reason="ship")
    corrupt_version(yard, name, "production")
    result = run_cli("serve", name, "--port", "9")  # nothing may listen: it must not start
    assert result.returncode == 5, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not match its recorded SHA-256" in lines[0], lines
    assert "Traceback" not in result.stdout + result.stderr
