"""A name a check accepts is accepted whole: a trailing newline (which a ``$`` anchor lets
through ``re.match``) is refused by every check that guards a name, a tag or a header."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelyard.core.names import check_name
from modelyard.errors import YardError
from modelyard.protection.snapshots import check_tag
from modelyard.serving.app import check_header

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", fullmatch=True).filter(
    lambda s: ".." not in s)


@given(NAMES, st.sampled_from(["\n", "\r\n", " ", "\x00"]))
def test_a_valid_name_with_a_trailing_line_end_is_refused(name: str, end: str) -> None:
    for check in (check_name, check_tag, check_header):
        assert check(name)  # the name alone passes
        with pytest.raises(YardError):
            check(name + end)
