"""The ``modelyard`` command line. It parses, calls ``Yard``, and renders; nothing else.
The top layer: it may import any package (docs/design.md, "CLI verbs").

>>> from modelyard.cli import main   # the click group; `modelyard` and `python -m modelyard`

One module per command group, named after it (``details`` holds list, details, lineage and
compare; ``promote`` holds promote, approve, reject, requests and rollback; ``snapshot`` the
snapshot group; ...), imported when one of its commands runs: ``shell.COMMANDS`` maps every
command to its module. ``shell`` holds the group and the plumbing every command shares,
``render`` the drawing helpers more than one command uses.
"""

from __future__ import annotations

from modelyard.cli.shell import main

__all__ = ["main"]
