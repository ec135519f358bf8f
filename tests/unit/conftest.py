"""The unit layer: pure logic, no services, no MLflow database, seconds for the whole folder.

The root conftest's autouse ``isolated`` fixture still gives each test its own HOME, working
folder and a clean environment (it is cheap: it does not import MLflow). The fixtures that start
or use services are refused here: a test that needs a registry belongs in ``tests/integration/``
(or, for a suite every backend passes, ``tests/contracts/``). The folders mirror
``src/modelyard``: ``core/``, ``cli/``, ``project/``, ``registry/``, ``store/``, ...
"""

from __future__ import annotations

import pytest


def _refuse(request: pytest.FixtureRequest) -> None:
    raise pytest.UsageError(
        f"{request.node.nodeid}: unit tests run without services; "
        f"a test that needs {request.fixturename!r} belongs in tests/integration/, not tests/unit/"
    )


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> None:
    _refuse(request)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> None:
    _refuse(request)


@pytest.fixture
def empty_embedded_db(request: pytest.FixtureRequest) -> None:
    _refuse(request)
