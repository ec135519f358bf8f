"""CLI commands for the lifecycle verbs."""

from __future__ import annotations
