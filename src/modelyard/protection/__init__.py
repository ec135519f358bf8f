"""Copies that outlive an incident: backup and restore (the backup store), verify-all and repair,
snapshots. May import ``registry`` and the packages below it (not ``serving``, its sibling);
see docs/design.md, "Architecture"."""
