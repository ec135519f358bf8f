"""The serving commands (serve, monitor, ab), defined by the serving app, on the main group."""

from __future__ import annotations

from modelyard.cli.shell import main
from modelyard.serving.cli import register_commands

register_commands(main)
