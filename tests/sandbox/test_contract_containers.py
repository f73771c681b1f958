"""The shared contract suite (tests/test_contract.py), run on the container environments:
gVisor (runsc) and Docker (through the fake ``docker`` CLI of fake_docker.py).

The tests are imported, and ``env`` is overridden here, so the very same test bodies run.
"""

from __future__ import annotations

import pytest

from ..conftest import CONTAINER_ENVIRONMENTS, container_env
from ..test_contract import *  # noqa: F403
from ..test_helpers_contract import *  # noqa: F403


@pytest.fixture(params=CONTAINER_ENVIRONMENTS)
def env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    return container_env(request, monkeypatch)
