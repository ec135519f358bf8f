"""Pure ground: names (every ``modelyard.`` tag key), records, entities, refs, semver rules,
data profiles, config, lineage values. May import only ``modelyard.errors`` (no mlflow, no boto3);
see docs/design.md, "Architecture"."""
