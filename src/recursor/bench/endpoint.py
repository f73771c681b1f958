"""An OpenAI-compatible endpoint a peer method calls (its own module: :mod:`methods` names it in
:class:`~recursor.bench.methods.Models`, and :mod:`peers` builds on :mod:`methods`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server and the model name to ask it for."""

    base_url: str
    model: str
    api_key: str = "none"
