"""The trio Backend: trio.Event to wait on, system tasks that wait for a descriptor to watch it.

(This module is execwire.trio._backend; ``import trio`` below is the trio library.)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from .._async.backend import Backend, Waiter, Watch

T = TypeVar("T")
logger = logging.getLogger("execwire")


class _EventWaiter(Waiter):
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = trio.Event()

    def wake(self) -> None:
        self.event.set()


class _TaskWatch(Watch):
    """A system task that waits for the descriptor and calls back, until told to stop."""

    def __init__(self, fd: int, writable: bool, callback: Callable[[], bool]) -> None:
        self._fd = fd
        self._callback = callback
        self._wait = trio.lowlevel.wait_writable if writable else trio.lowlevel.wait_readable
        self._active = True
        self._scope = trio.CancelScope()
        trio.lowlevel.spawn_system_task(self._run, name=f"execwire-watch-{fd}")

    async def _run(self) -> None:
        with self._scope:
            try:
                while self._active:
                    await self._wait(self._fd)
                    if not self._active or not self._callback():
                        break
            except (trio.ClosedResourceError, OSError):
                pass  # closed under us: whoever closed it handles the end
        self._active = False

    def cancel(self) -> None:
        if self._active:
            self._active = False
            self._scope.cancel()
            trio.lowlevel.notify_closing(self._fd)  # the descriptor may be closed right after this


class TrioBackend(Backend):
    name = "trio"

    def __init__(self) -> None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            raise RuntimeError("execwire.trio runs inside trio.run(...); under asyncio use execwire.aio, "
                               "without a loop the threaded execwire") from None
        self._token = trio.lowlevel.current_trio_token()

    def idle(self) -> bool:
        return trio.lowlevel.current_statistics().tasks_runnable == 0

    def waiter(self) -> _EventWaiter:
        return _EventWaiter()

    async def wait(self, waiter: Waiter, timeout: float | None) -> bool:
        assert isinstance(waiter, _EventWaiter)
        if timeout is None:
            await waiter.event.wait()
            return True
        with trio.move_on_after(max(timeout, 0.0)):
            await waiter.event.wait()
        return waiter.event.is_set()

    def watch(self, fd: int, writable: bool, callback: Callable[[], bool]) -> Watch:
        return _TaskWatch(fd, writable, callback)

    async def wait_readable(self, fd: int, timeout: float | None) -> bool:
        with trio.move_on_after(float("inf") if timeout is None else max(timeout, 0.0)):
            await trio.lowlevel.wait_readable(fd)
            return True
        return False

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def run_in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(function, *args))

    def spawn(self, function: Callable[[], Awaitable[None]], name: str) -> None:
        async def guarded() -> None:
            try:
                await function()
            except Exception:  # a system task's error would end trio.run: report it instead
                logger.exception("execwire background task %s failed", name)

        trio.lowlevel.spawn_system_task(guarded, name=name)

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        try:
            self._token.run_sync_soon(callback)
        except trio.RunFinishedError:
            raise RuntimeError("the trio run this gateway belongs to has ended") from None

    async def run_all(self, functions: list[Callable[[], Awaitable[T]]]) -> list[T | BaseException]:
        results: list[T | BaseException] = [RuntimeError("not run")] * len(functions)

        async def run(index: int) -> None:
            try:
                results[index] = await functions[index]()
            except Exception as exc:
                results[index] = exc

        async with trio.open_nursery() as nursery:
            for index in range(len(functions)):
                nursery.start_soon(run, index)
        return results
