"""The stage verbs composed: stages and aliases, gates, promotion (requests, approvals,
rollback), version tags, retention. The facade hands in the hooks to other capabilities."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context
    from modelyard.lifecycle.gates import Gates
    from modelyard.lifecycle.labels import Labels
    from modelyard.lifecycle.promotion import Promotion
    from modelyard.lifecycle.retention import Retention
    from modelyard.lifecycle.stages import StageChange, Stages
    from modelyard.trail.audit import Auditor


class Lifecycle:
    """``load_model`` loads a version for a gate that scores it; ``after_move`` runs after
    every audited stage move; retention deletes only what ``backed_up`` confirms is in the
    backup store and never a version ``snapshot_versions`` names."""

    def __init__(self, ctx: Context, audit: Auditor, *, load_model: Callable[[str, int], Any],
                 after_move: Callable[[StageChange], None],
                 backed_up: Callable[[str, list[int]], bool],
                 snapshot_versions: Callable[[str], set[int]]) -> None:
        self.ctx = ctx
        self.audit = audit
        self.load_model = load_model
        self.after_move = after_move
        self.backed_up = backed_up
        self.snapshot_versions = snapshot_versions

    @functools.cached_property
    def stages(self) -> Stages:
        from modelyard.lifecycle.notify import Notifier
        from modelyard.lifecycle.stages import Stages

        stages = Stages(self.ctx, self.audit, Notifier(self.ctx.settings, self.audit))
        stages.after_move.append(self.after_move)
        return stages

    @functools.cached_property
    def gates(self) -> Gates:
        from modelyard.lifecycle.gates import Gates

        return Gates(self.ctx.settings, self.ctx.tracking, self.load_model,
                     self.ctx.signatures)

    @functools.cached_property
    def promotion(self) -> Promotion:
        from modelyard.lifecycle.promotion import Promotion

        return Promotion(self.ctx, self.stages, self.gates, self.audit)

    @functools.cached_property
    def labels(self) -> Labels:
        from modelyard.lifecycle.labels import Labels

        return Labels(self.ctx, self.audit)

    @functools.cached_property
    def retention(self) -> Retention:
        from modelyard.lifecycle.retention import Retention

        return Retention(self.ctx, self.audit, backup=self.backed_up,
                         snapshot_versions=self.snapshot_versions)
