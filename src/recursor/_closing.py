"""``with``/``async with`` for objects that hold something to release, written once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self


class Closing(ABC):
    """Gives ``with`` and ``async with`` to a class that defines ``close`` and ``aclose``."""

    @abstractmethod
    def close(self) -> None:
        """Release what this object holds (idempotent)."""

    @abstractmethod
    async def aclose(self) -> None:
        """:meth:`close` from async code, also releasing what belongs to the running loop."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
