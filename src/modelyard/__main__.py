"""``python -m modelyard``: the command line."""

from modelyard.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
