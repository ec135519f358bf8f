"""A pyfunc model whose unpickling writes a marker file: a test that finds no marker proves
nothing was unpickled (signed versions, pickles of unknown origin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc


class MarkerModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc, name-defined]
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (revive, (self.marker,))

    def predict(self, context: Any, model_input: Any, params: Any = None) -> list[int]:
        return [1] * len(model_input)


def revive(marker: str) -> MarkerModel:
    """What unpickling a ``MarkerModel`` calls: it leaves the marker behind."""
    Path(marker).write_text("unpickled")
    return MarkerModel(marker)
