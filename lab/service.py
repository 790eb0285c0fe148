"""What every lab server shares: ``with Server(...) as server:`` starts it and always
stops it, whatever the body raises."""

from __future__ import annotations

from typing import Self

__all__ = ["Service"]


class Service:
    """A server with ``start()`` and ``stop()``; a context manager through them."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
