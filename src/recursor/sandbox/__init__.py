"""Environments: where model code runs. See base.py for the seam."""

from __future__ import annotations

from recursor.errors import ConfigurationError
from recursor.sandbox.base import CellResult, Environment, Session, SessionSpec
from recursor.sandbox.inprocess import InProcessEnvironment
from recursor.sandbox.subprocess import SubprocessEnvironment, WorkerLimits

__all__ = [
    "CellResult",
    "Environment",
    "InProcessEnvironment",
    "Session",
    "SessionSpec",
    "SubprocessEnvironment",
    "WorkerLimits",
    "resolve_environment",
]

ENVIRONMENTS = {
    "subprocess": SubprocessEnvironment,
    "inprocess": InProcessEnvironment,
}


def resolve_environment(spec: str | Environment) -> Environment:
    if not isinstance(spec, str):
        return spec
    try:
        return ENVIRONMENTS[spec]()
    except KeyError:
        raise ConfigurationError(
            f"unknown environment {spec!r}; known: {', '.join(ENVIRONMENTS)}"
        ) from None
