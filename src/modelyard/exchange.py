"""Exchange verbs: compare, export, import and adopt."""

from __future__ import annotations


class ExchangeMixin:
    """Methods of ``Yard`` for comparing and moving registries."""
