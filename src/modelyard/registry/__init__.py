"""Versions in and out: the one registration pipeline and its semver plan, verified loading, the
catalog, compare, adopt, export/import. May import ``lifecycle`` and the packages below it;
see docs/design.md, "Architecture"."""
