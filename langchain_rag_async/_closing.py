"""Context-manager mixins for objects that own connections: ``async with`` / ``with``."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ("AsyncClosing", "Closing")


class AsyncClosing:
    """``async with obj:`` awaits ``obj.aclose()`` on exit."""

    __slots__ = ()

    async def aclose(self) -> None:
        """Release what the object holds."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Closing(AsyncClosing):
    """Also ``with obj:``, which calls the sync twin ``obj.close()`` on exit."""

    __slots__ = ()

    def close(self) -> None:
        """Sync twin of :meth:`aclose`."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
