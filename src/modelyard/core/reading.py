"""Reading a whole file a user can point at, never more than a limit.

``stat().st_size`` says nothing of ``/dev/zero``, a FIFO or a file that grows while it is
read, so the limit is kept by the read itself: at most ``limit + 1`` bytes, and one byte
past the limit is the refusal. ``store.files`` offers the same helper to the layers above
(core may import nothing of store, so it lives here, under both).
"""

from __future__ import annotations

from pathlib import Path

from modelyard.errors import InvalidInput


def read_capped(path: Path, limit: int, what: str) -> bytes:
    """The whole content of ``path`` if it is at most ``limit`` bytes; else ``InvalidInput``
    naming the file, the limit and what it is the limit for. Works for regular files,
    character devices and FIFOs alike; a folder, a missing or unreadable file is refused in
    one line too. The error's ``problem`` field holds the reason without the file name, and
    ``too_large`` tells the limit apart from a file that is missing or unreadable."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise _refused(path, "no such file") from None
    except IsADirectoryError:
        raise _refused(path, f"is a folder, not {what}") from None
    except OSError as exc:
        raise _refused(path, f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise _refused(path, f"is larger than {limit} bytes (the limit for {what})",
                       too_large=True)
    return data


def _refused(path: Path, problem: str, *, too_large: bool = False) -> InvalidInput:
    separator = ": " if problem.startswith("no ") else " "
    return InvalidInput(f"{path}{separator}{problem}", path=str(path), problem=problem,
                        too_large=too_large)
