from __future__ import annotations

import pytest

from tests.economics import scenario
from tests.telemetry.metering_server import EngineServer


@pytest.fixture
def server():
    with EngineServer() as s:
        yield s


@pytest.fixture
def econ(world, server):
    """docs/economics.md's worked example (tests/economics/scenario.py)."""
    return scenario.build(world, server)
