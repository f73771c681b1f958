from __future__ import annotations

import pytest

from recursor import RLM, Limits
from recursor.lm.base import LM

ENVIRONMENTS = ["inprocess", "subprocess"]


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> str:
    """Every contract test runs against each environment."""
    return str(request.param)


def code(body: str, text: str = "") -> str:
    """A model reply holding one ```repl block."""
    return f"{text}\n```repl\n{body}\n```\n"


def make_rlm(env: str, root: LM, sub: LM | None = None, **kw: object) -> RLM:
    limits = kw.pop("limits", None) or Limits(cell_timeout_s=10)
    return RLM(root, sub, environment=env, limits=limits, **kw)  # type: ignore[arg-type]
