from __future__ import annotations

from collections.abc import Callable

import pytest

from recursor.sandbox.base import Environment

from ..sandbox.conftest import ISOLATING


@pytest.fixture(params=ISOLATING)
def isolating(request: pytest.FixtureRequest) -> Callable[[], Environment]:
    """A factory of every environment that claims isolation (as in tests/sandbox)."""
    factory: Callable[[], Environment] = request.param
    return factory
