"""The ``modelyard`` command line. It parses, calls ``Yard``, and renders; nothing else.

>>> from modelyard.cli import main   # the click group; `modelyard` and `python -m modelyard`
"""

from __future__ import annotations

from modelyard.cli import (  # noqa: F401 - they register their commands
    change,
    drills,
    integrity,
    operate,
    protect,
    read,
)
from modelyard.cli.shell import SECTIONS, main
from modelyard.serving.cli import register_commands

register_commands(main)  # serve, monitor, ab report
SECTIONS["Operate"] += ["serve", "monitor", "ab"]
SECTIONS["Incidents"] = ["health", "recover", "drill", "reproduce"]

__all__ = ["main"]
