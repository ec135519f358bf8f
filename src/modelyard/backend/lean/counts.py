"""Counting a model's versions on a tracking server without listing them.

``list`` shows how many versions each model has; listing 10,000 rows to count them costs
seconds. MLflow's SQL store pages a version search with tokens that are row offsets, so a
count can probe a few offsets instead (``VersionCounts.count``), and a count remembered on
this machine is confirmed in one round (``VersionCounts.near``). Servers whose tokens are
anything else are counted by listing. ``RestReader.count_visible`` is the one caller; the
searches go through the reader's own version search, so they share its transport.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from modelyard.backend.lean.base import at_once
from modelyard.errors import NotFound, UserError

__all__ = ["TOP_PAGE", "Search", "VersionCounts"]

_COUNT_WINDOW = 16  # rows: a count ends with one page this small rather than more probes
_HINT_REACH = 8  # a remembered count is confirmed in one round while within this many rows
TOP_PAGE = 4  # the newest versions ``list`` reads (pending ones are few)
_HINTS_KEPT = 1_000  # remembered counts (search filters) per tracking server
_LIST_PAGE = 10_000  # rows a page when a server's tokens are not offsets: counted by listing


class Search(Protocol):
    """One page of a version search: (rows, next page token or None)."""

    def __call__(self, filter_text: str, *, order_by: str, max_results: int,
                 page_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        ...  # pragma: no cover


def _offset_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def _token_offset(token: str | None) -> int | None:
    """The offset inside an MLflow SQL-store page token, or None for any other format.

    MLflow calls the format unstable; it is used only to count versions without listing
    them, and only when a token the server issued decodes to exactly ``{"offset": n}``.
    """
    if not token:
        return None
    try:
        decoded = json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError):
        return None
    if isinstance(decoded, dict) and set(decoded) == {"offset"} and isinstance(
            decoded["offset"], int):
        return int(decoded["offset"])
    return None


class VersionCounts:
    """How many versions match a search filter, asked through ``search`` (pages of MLflow's
    ``model-versions/search``). ``model`` raises ``ModelNotFound`` for an absent model (a
    count of a named model that finds no row says so). ``hints``: the JSON file of counts
    remembered for this tracking server (keyed by search filter), or None to remember none.
    """

    concurrent = True  # at_once: the searches go out through the reader's pooled transport

    def __init__(self, search: Search, model: Callable[[str], object], hints: Path | None
                 ) -> None:
        self._search = search
        self._model = model
        # Counts remembered on this machine: a hint that one round confirms or refutes.
        self._hints_path = hints
        self._hints: dict[str, int] | None = None
        self._offsets = False  # this server's page tokens proved to be MLflow's offsets
        self._lock = threading.Lock()  # guards _hints

    def counted(self, filter_text: str, name: str | None, *, dense: bool = True) -> int:
        """The count: first asked near the count remembered (``near``: one round, exact
        when it confirms), else by probes (``count``); the answer is remembered."""
        hint = self._hint(filter_text)
        found = None if hint is None else self.near(filter_text, hint, name)
        if found is None:
            found = self.count(filter_text, name, dense=dense)
        if found != hint and (found <= _HINT_REACH + 1 or self._offsets):
            self._remember(filter_text, found)  # a hint past offset 0 needs offsets
        return found

    def near(self, filter_text: str, hint: int, name: str | None) -> int | None:
        """The exact count when it lies within ``_HINT_REACH`` rows of ``hint``, in one
        round; ``None`` when it does not (or the answer cannot be trusted): count anew.

        One page of ``2 * _HINT_REACH + 1`` rows, newest first, ends ``_HINT_REACH`` rows
        past the hint: a page that is not empty and has no next page token (MLflow's server
        asks one row more than it answers to decide that) ends at the last row, so the count
        is its offset plus its rows. Hints are remembered only from a server whose page
        tokens proved to be MLflow's offsets; a page past offset 0 is checked against the
        newest row (fetched at once): a server that ignored the offset would answer the
        newest rows again."""

        def page(offset: int, size: int) -> tuple[list[int], str | None]:
            rows, token = self._search(
                filter_text, order_by="version_number DESC", max_results=size,
                page_token=_offset_token(offset) if offset else None)
            return [int(row["version"]) for row in rows], token

        offset = max(0, hint - 1 - _HINT_REACH)
        size = 2 * _HINT_REACH + 1
        try:
            if offset == 0:
                rows, token = page(0, hint + 1 + _HINT_REACH)
                top = rows[:1]
            else:  # the newest rows as ``list`` asks them: one request serves both
                (top, _), (rows, token) = at_once(self, [lambda: page(0, TOP_PAGE),
                                                         lambda: page(offset, size)])
        except (UserError, NotFound):
            return None  # a token this server refuses, or the model went: count anew
        if token is not None or (not rows and (offset or name is not None)):
            return None  # beyond the page, or before it (or an absent model: say so)
        if offset and not (top and rows[0] <= top[0] - offset):
            return None  # not the rows at that offset
        if offset:
            self._offsets = True
        return offset + len(rows)

    def count(self, filter_text: str, name: str | None, *, dense: bool = True) -> int:
        """How many versions match, without listing them when the server's page tokens are
        MLflow's offsets: probes at chosen offsets, guided by the version number found there
        (numbers only grow, deleted ones leave gaps). The newest and oldest go out at once;
        then a first probe at the numbers' span end when ``dense`` (no gaps: done) or near
        the top when sparse; then small pages (``_COUNT_WINDOW`` rows) around the oldest
        row's estimated offset (interpolated from the density above), with a bisection
        after a poor guess. 3 calls without gaps, typically 4-7 at 10,000 versions with
        1% deleted or 1% pending, O(log n) at worst; other servers: by listing. ``name``:
        check the model exists."""

        def probe(offset: int, order: str = "DESC", size: int = 1
                  ) -> tuple[list[int], str | None]:
            rows, token = self._search(
                filter_text, order_by=f"version_number {order}", max_results=size,
                page_token=_offset_token(offset) if offset else None)
            return [int(row["version"]) for row in rows], token

        (top, token), (bottom, _) = at_once(self, [lambda: probe(0),
                                                   lambda: probe(0, "ASC")])
        if not top:
            if name is not None:
                self._model(name)  # ModelNotFound if absent
            return 0
        if not token:
            return 1
        if _token_offset(token) != 1:
            return self._listed(filter_text)
        self._offsets = True
        if not bottom:  # every version deleted in between
            return 0
        newest, oldest = top[0], bottom[0]
        # Invariant: a row exists at offset `low` (version `v_low`); none at offset `high`.
        low, v_low, high = 0, newest, newest - oldest + 1
        first, halve = dense, False  # first: the span guess is next
        while high - low > 1:
            if high - low - 1 <= _COUNT_WINDOW:  # the rest in one small page
                rows, _ = probe(low + 1, size=high - low - 1)
                return low + 1 + len(rows)
            width = high - low
            if halve:
                offset = (low + high) // 2
            elif low == 0:  # no density known yet
                if first:
                    offset = high - 1  # no gaps at all: the oldest is at the span's end
                elif dense:
                    offset = high // 2
                else:
                    offset = max(1, math.isqrt(high))
            else:  # where the oldest row would be if gaps below `low` are as dense as above
                offset = low + round((v_low - oldest) * low / (newest - v_low))
            size = 1
            if not halve and low:
                # An estimate from the density above: a small page around it often ends the
                # count, and otherwise narrows it as a probe would.
                offset, size = offset - _COUNT_WINDOW // 2, _COUNT_WINDOW
            offset = min(max(offset, low + 1), high - 1)
            size = min(size, high - offset)
            found, token = probe(offset, size=size)
            if not found:
                high = offset
            elif not token or found[-1] == oldest:
                return offset + len(found)
            else:
                low, v_low = offset + len(found) - 1, found[-1]
                high = min(high, low + 1 + v_low - oldest)
            # a poor guess: bisect once (the span guess only rules out "no gaps")
            halve = not halve and not first and (high - low) * 2 > width
            first = False
        return low + 1

    def _listed(self, filter_text: str) -> int:
        """Every matching row, page by page: a server whose tokens are not offsets."""
        found, token = 0, None
        while True:
            rows, token = self._search(filter_text, order_by="version_number ASC",
                                       max_results=_LIST_PAGE, page_token=token)
            found += len(rows)
            if not token or not rows:
                return found

    def _hint(self, filter_text: str) -> int | None:
        if self._hints_path is None:
            return None
        with self._lock:
            if self._hints is None:
                self._hints = {}
                try:
                    loaded = json.loads(self._hints_path.read_bytes())
                    if isinstance(loaded, dict):
                        self._hints = {k: v for k, v in loaded.items()
                                       if isinstance(k, str) and isinstance(v, int)
                                       and not isinstance(v, bool) and v >= 0}
                except (OSError, ValueError):
                    pass  # nothing remembered yet (or unreadable): count by probes
            return self._hints.get(filter_text)

    def _remember(self, filter_text: str, count: int) -> None:
        """Keep a count as the next hint; a failure only costs probes next time."""
        if self._hints_path is None:
            return
        from modelyard.store.files import atomic_write

        with self._lock:
            hints = dict(self._hints or {})
            hints[filter_text] = count
            if len(hints) > _HINTS_KEPT:  # the oldest entries go first
                hints = dict(list(hints.items())[-_HINTS_KEPT:])
            self._hints = hints
            with contextlib.suppress(OSError):
                atomic_write(self._hints_path, json.dumps(hints).encode())
