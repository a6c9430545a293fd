"""What an event loop must offer the shared async driver: the only code that differs per face.

Everything is called from the loop's own thread (in trio: from inside trio.run).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Waiter(ABC):
    """A one-shot wake-up for one waiting task; wake() may be called any number of times."""

    @abstractmethod
    def wake(self) -> None: ...


class Watch(ABC):
    """A descriptor being watched; cancel() before the descriptor is closed."""

    @abstractmethod
    def cancel(self) -> None: ...


class Backend(ABC):
    """The waiting primitives of one event loop library."""

    name: str

    def idle(self) -> bool:
        """True if no other task is ready to run (a receive may then poll briefly for its answer)."""
        return False

    @abstractmethod
    def waiter(self) -> Waiter:
        """A fresh waiter for the task that is about to wait."""

    @abstractmethod
    async def wait(self, waiter: Waiter, timeout: float | None) -> bool:
        """Until ``waiter`` is woken (True) or ``timeout`` seconds pass (False); cancellable."""

    @abstractmethod
    def watch(self, fd: int, writable: bool, callback: Callable[[], bool]) -> Watch:
        """Call ``callback()`` whenever ``fd`` is readable (writable) until it returns False."""

    @abstractmethod
    async def wait_readable(self, fd: int, timeout: float | None) -> bool:
        """Until ``fd`` is readable (True) or ``timeout`` seconds pass (False)."""

    @abstractmethod
    async def sleep(self, seconds: float) -> None: ...

    @abstractmethod
    async def run_in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking ``function`` in a worker thread (start-up and failure paths only)."""

    @abstractmethod
    def spawn(self, function: Callable[[], Awaitable[None]], name: str) -> None:
        """Run ``function()`` in the background; it must catch its own errors."""

    @abstractmethod
    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        """Run ``callback()`` in the loop soon; callable from any thread (RuntimeError once the loop is gone)."""

    async def run_in_daemon_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking ``function`` in a daemon thread of its own (one that may block for good, as
        input() at a terminal does, must not hold up the interpreter's exit as a pool's thread would)."""
        waiter = self.waiter()
        outcome: list[tuple[bool, Any]] = []

        def target() -> None:
            try:
                outcome.append((True, function(*args)))
            except BaseException as exc:  # noqa: B036 - handed to the awaiting task
                outcome.append((False, exc))
            try:
                self.call_soon_threadsafe(waiter.wake)
            except RuntimeError:
                pass  # the loop is gone, and whoever waited with it

        threading.Thread(target=target, name=f"execwire-{getattr(function, '__name__', 'blocking')}",
                         daemon=True).start()
        while not outcome:
            await self.wait(waiter, None)
        done, value = outcome[0]
        if not done:
            raise value
        return value  # type: ignore[no-any-return]

    @abstractmethod
    async def run_all(self, functions: list[Callable[[], Awaitable[T]]]) -> list[T | BaseException]:
        """Run the functions side by side; each one's result or the exception it raised, in order."""


class Wakeups:
    """Tasks waiting for something to change (an item, credit, the end): woken all at once.

    Each woken task looks again at what it waits for, so a wake-up is never lost
    and a spurious one costs a look. Single-threaded: only the loop touches it.
    """

    __slots__ = ("_backend", "_waiters")

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._waiters: list[Waiter] = []

    def wake_all(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.wake()

    def add(self, waiter: Waiter) -> None:
        self._waiters.append(waiter)

    def discard(self, waiter: Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    async def wait(self, timeout: float | None) -> bool:
        """Until the next wake_all() (True) or ``timeout`` (False)."""
        waiter = self._backend.waiter()
        waiters = self._waiters
        waiters.append(waiter)
        try:
            return await self._backend.wait(waiter, timeout)
        finally:
            if self._waiters is waiters and waiter in waiters:  # not woken: still listed
                waiters.remove(waiter)
