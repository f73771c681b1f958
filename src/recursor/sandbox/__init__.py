"""Environments: where model code runs. See base.py for the seam.

Kept import-light (lazy exports): the worker program imports modules of this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recursor.sandbox.base import Environment

#: environment name -> "module:Class"
ENVIRONMENTS = {
    "subprocess": "recursor.sandbox.subprocess:SubprocessEnvironment",
    "inprocess": "recursor.sandbox.inprocess:InProcessEnvironment",
    "bwrap": "recursor.sandbox.bwrap:BwrapEnvironment",
    "gvisor": "recursor.sandbox.gvisor:GvisorEnvironment",
    "forkserver": "recursor.sandbox.forkserver:ForkServerEnvironment",
    "docker": "recursor.sandbox.remote.docker:DockerEnvironment",
    # the vendors' SDKs are extras: naming one without its SDK raises with an install hint
    "e2b": "recursor.sandbox.remote.e2b:E2BEnvironment",
    "modal": "recursor.sandbox.remote.modal:ModalEnvironment",
    "daytona": "recursor.sandbox.remote.daytona:DaytonaEnvironment",
}

_EXPORTS = {
    "CellResult": "recursor.sandbox.base",
    "Environment": "recursor.sandbox.base",
    "Session": "recursor.sandbox.base",
    "SessionSpec": "recursor.sandbox.base",
    "InProcessEnvironment": "recursor.sandbox.inprocess",
    "BwrapEnvironment": "recursor.sandbox.bwrap",
    "SubprocessEnvironment": "recursor.sandbox.subprocess",
    "WorkerLimits": "recursor.sandbox.limits",
}

__all__ = [
    "ENVIRONMENTS",
    "BwrapEnvironment",
    "CellResult",
    "Environment",
    "InProcessEnvironment",
    "Session",
    "SessionSpec",
    "SubprocessEnvironment",
    "WorkerLimits",
    "resolve_environment",
]


def resolve_environment(spec: str | Environment) -> Environment:
    """An Environment object for a name, or the object itself."""
    from recursor.errors import ConfigurationError

    if not isinstance(spec, str):
        return spec
    if spec not in ENVIRONMENTS:
        raise ConfigurationError(f"unknown environment {spec!r}; known: {', '.join(ENVIRONMENTS)}")
    module, _, cls = ENVIRONMENTS[spec].partition(":")
    env: Environment = getattr(importlib.import_module(module), cls)()
    return env


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recursor.sandbox' has no attribute {name!r}")
