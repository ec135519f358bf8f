"""modelyard: semantic versions, lineage, governed promotion and verified artifacts on MLflow.

>>> from modelyard import Yard
>>> yard = Yard()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.yard import Yard

__all__ = ["Yard", "__version__"]


def __getattr__(name: str) -> Any:
    # Keep `import modelyard` light: the facade (and MLflow behind it) loads on first use.
    if name == "Yard":
        from modelyard.yard import Yard

        return Yard
    raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
