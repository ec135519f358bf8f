"""Lifecycle governance: stages, gates, approvals, auto-promotion, rollback, retention."""

from __future__ import annotations


class LifecycleMixin:
    """Methods of ``Yard`` for the lifecycle verbs."""
