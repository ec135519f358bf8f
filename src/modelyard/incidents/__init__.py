"""What goes wrong and how it is put back: detection, the recovery layers, health, reproduce,
doctor, drills. May import ``protection``, ``serving`` and the packages below them, never the
facade (``yard``): it works through ports; see docs/design.md, "Recovery layers"."""
