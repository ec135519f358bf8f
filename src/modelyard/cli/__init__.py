"""The ``modelyard`` command line. It parses, calls ``Yard``, and renders; nothing else.
The top layer: it may import any package (docs/design.md, "CLI verbs").

>>> from modelyard.cli import main   # the click group; `modelyard` and `python -m modelyard`

Each command's module (``read``, ``change``, ``operate``, ``protect``, ``integrity``,
``drills``, ``serving``) is imported when the command runs: ``shell.COMMANDS`` names them.
"""

from __future__ import annotations

from modelyard.cli.shell import main

__all__ = ["main"]
