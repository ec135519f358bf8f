"""The MLflow edge: ``tracking`` (MLflow's client, bounded), the model format, identity and
permissions, and the lean path in ``lean/``; the only package that imports mlflow. May import
``store``, ``core`` and ``errors``; see docs/design.md, "Architecture"."""
