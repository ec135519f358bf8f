"""CLI commands for compare, export, import and adopt."""

from __future__ import annotations
