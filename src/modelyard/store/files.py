"""Local files: atomic writes and copies, SHA-256 of streamed content, copies that hash while
they copy, and safe tree copies.

A write never leaves half a file: bytes go to a temporary file beside the target, then
``os.replace``. A folder copy never copies a link: a symlink pointing outside the folder is
refused (or, when asked, its target's content is copied). The object stores in ``storage``
and the vault build on these. ``sha256_stream`` is the one loop that hashes file and object
content; everything else that needs a digest of content calls it (or ``sha256_file``).
``read_capped`` (from ``core.reading``) reads a whole file a user can point at, up to a limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from modelyard.core.reading import read_capped as read_capped  # whole reads, capped

if TYPE_CHECKING:  # pragma: no cover
    from io import FileIO

Progress = Callable[[int], None]
"""Called with the number of bytes moved since the last call (S3 may report a negative
amount when it rewinds a retried part; the sum is the file size)."""

_CHUNK = 1024 * 1024
# Hashing reads 8 MiB at a time: hashlib releases the GIL on large updates (and the read
# releases it too), so threads hash files in parallel on every core.
HASH_CHUNK = 8 * 1024 * 1024


def sha256_stream(chunks: Iterable[bytes | memoryview]) -> tuple[str, int]:
    """(SHA-256 as hex, size in bytes) of content that arrives in chunks: a file read in
    pieces (``file_chunks``), an object streamed from a store (``ObjectStore.chunks``). The
    content is never held whole in memory."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def file_chunks(path: Path, size: int = HASH_CHUNK) -> Iterator[memoryview]:
    """A file's bytes in chunks of up to ``size``, read into one reused buffer (unbuffered):
    each chunk is valid until the next one is read."""
    with open(path, "rb", buffering=0) as handle:
        yield from _read_chunks(handle, size)


def _read_chunks(handle: FileIO, size: int) -> Iterator[memoryview]:
    buffer = bytearray(size)
    view = memoryview(buffer)
    while count := handle.readinto(buffer):
        yield view[:count]


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's content, as hex."""
    return sha256_stream(file_chunks(path))[0]


def _replace_from_temp(dest: Path, fill: Callable[[IO[bytes]], None]) -> None:
    """Write a temporary file in dest's folder with ``fill`` and rename it over dest.

    A reader never sees half a file, and a failed write leaves nothing behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to path atomically (temporary file in the same folder + ``os.replace``)."""

    def fill(handle: IO[bytes]) -> None:
        handle.write(data)

    _replace_from_temp(path, fill)


def atomic_copy(src: Path, dest: Path, progress: Progress | None = None) -> None:
    """Copy a file atomically (temporary file beside dest + ``os.replace``).

    The bytes move inside the kernel (``sendfile``: a real copy, never a link or a shared
    extent, so the two files stay independent), 8 MiB at a time; where the kernel refuses,
    in 1 MiB chunks through Python."""

    def fill(handle: IO[bytes]) -> None:
        with open(src, "rb") as source:
            if not _kernel_copy(source, handle, progress):
                while chunk := source.read(_CHUNK):
                    handle.write(chunk)
                    if progress is not None:
                        progress(len(chunk))

    _replace_from_temp(dest, fill)


_SENDFILE_BLOCK = 8 * 1024 * 1024


def _kernel_copy(source: IO[bytes], handle: IO[bytes], progress: Progress | None) -> bool:
    """Copy source into handle with ``os.sendfile``; False (nothing written) if refused."""
    offset = 0
    while True:
        try:
            sent = os.sendfile(handle.fileno(), source.fileno(), offset, _SENDFILE_BLOCK)
        except OSError:
            if offset:
                raise
            return False
        if sent == 0:
            return True
        offset += sent
        if progress is not None:
            progress(sent)


def copy_hashing(src: Path, dest: Path) -> tuple[str, int]:
    """Copy a file to ``dest`` and return its (SHA-256, size), reading it once."""
    with open(src, "rb", buffering=0) as source, open(dest, "wb") as target:

        def written() -> Iterator[memoryview]:
            for block in _read_chunks(source, 4 * _CHUNK):
                target.write(block)
                yield block

        return sha256_stream(written())


def tree_plan(src: Path, *, follow_links: bool = False) -> list[tuple[Path, Path]]:
    """(file to read, path relative to ``src``) for every file of a folder, links resolved
    as ``copy_tree_safely`` copies them (a link outside ``src`` refused unless
    ``follow_links``)."""
    from modelyard.errors import InvalidInput

    root = src.resolve()
    if not root.is_dir():
        raise InvalidInput(f"{src} is not a folder")
    plan: list[tuple[Path, Path]] = []
    for folder, dirs, files in os.walk(src, followlinks=False):
        here = Path(folder)
        for entry in [*dirs, *files]:
            path = here / entry
            rel = path.relative_to(src)
            if path.is_symlink():
                target = path.resolve()
                if not (target == root or root in target.parents) and not follow_links:
                    raise InvalidInput(
                        f"{rel} is a symlink pointing outside {src}; refused (copy the file "
                        "in, or pass --follow-links to copy its target's content)")
                if not target.exists():
                    raise InvalidInput(f"{rel} is a broken symlink")
                if target.is_dir():
                    for inner in sorted(p for p in target.rglob("*") if p.is_file()):
                        plan.append((inner, rel / inner.relative_to(target)))
                    continue
                if not target.is_file():  # /dev/zero, a FIFO: a copy that never ends
                    raise InvalidInput(f"{rel} is a symlink to {target}, which is not a "
                                       "regular file; refused")
                plan.append((target, rel))
            elif path.is_file():
                plan.append((path, rel))
    return plan


def copy_tree_safely(src: Path, dest: Path | None, *, follow_links: bool = False,
                     digests: dict[str, tuple[str, int]] | None = None) -> None:
    """Copy a folder's files into ``dest`` (which must not exist), never a link.

    A symlink whose target lies outside ``src`` is refused with ``InvalidInput``, unless
    ``follow_links``, which copies the target's content instead. With ``dest=None`` only the
    check runs (so a caller can refuse before creating anything). With ``digests``, every
    file is hashed while it is copied (one read), files in parallel, and ``digests[rel]``
    receives its (SHA-256, size), ``rel`` the POSIX path under ``dest``.
    """
    plan = tree_plan(src, follow_links=follow_links)
    if dest is None:
        return
    dest.mkdir(parents=True)
    for _, rel in plan:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
    if digests is None:
        for source, rel in plan:
            shutil.copyfile(source, dest / rel)
        return
    from concurrent.futures import ThreadPoolExecutor

    def copy(item: tuple[Path, Path]) -> tuple[str, tuple[str, int]]:
        source, rel = item
        return rel.as_posix(), copy_hashing(source, dest / rel)

    with ThreadPoolExecutor(max_workers=max(1, min(4, len(plan)))) as pool:
        digests.update(pool.map(copy, plan))
