"""Stages and what moves them: audited stage/alias moves, promotion (gates, approvals), retention,
labels, webhooks, unaudited moves. May import ``trail`` and the packages below it (project,
context, backend, store, core, errors); see docs/design.md, "Architecture"."""
