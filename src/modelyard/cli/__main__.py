"""``python -m modelyard.cli``: the command line (same as ``python -m modelyard``)."""

from modelyard.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
