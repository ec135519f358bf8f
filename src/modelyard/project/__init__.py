"""The user's project on disk: git, DVC, lineage captured at registration, the ``init`` scaffold.
May import ``context``, ``backend``, ``store``, ``core`` and ``errors``; see docs/design.md,
"Architecture"."""
