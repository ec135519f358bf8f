"""Who did what: the hash-chained audit trail and the access log, kept in the vault. May import
``project``, ``context``, ``backend``, ``store``, ``core`` and ``errors``; see docs/design.md,
"Architecture"."""
