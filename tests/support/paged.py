"""An in-memory stand-in for a server's version search, for the counting tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.backend.lean import counts as rest_counts
from modelyard.backend.lean.rest import RestReader


class PagedVersions(RestReader):
    """Version numbers paged as MLflow's SQL store pages them (offset tokens, one row more
    asked than answered to decide on a next page), in memory: a stand-in that lets the
    counting search meet every gap pattern, which the contract tests check against the real
    server on a few. ``ignore_offsets``: a server that answers every page from the top,
    whatever the token says. ``count_hints``: the file of remembered counts, as the reader's."""

    def __init__(self, numbers: list[int], *, ignore_offsets: bool = False,
                 count_hints: Path | None = None) -> None:
        super().__init__("http://127.0.0.1:9", environ={}, count_hints=count_hints)
        self.numbers = sorted(numbers)
        self.ignore_offsets = ignore_offsets
        self.calls = 0

    def _search_versions(self, filter_text: str, *, order_by: str, max_results: int,
                         page_token: str | None = None
                         ) -> tuple[list[dict[str, Any]], str | None]:
        self.calls += 1
        ordered = self.numbers if order_by.endswith("ASC") else self.numbers[::-1]
        offset = 0 if self.ignore_offsets else rest_counts._token_offset(page_token) or 0
        page = [{"name": "m", "version": str(n)} for n in ordered[offset:offset + max_results]]
        more = offset + max_results < len(ordered)
        return page, rest_counts._offset_token(offset + max_results) if more else None
