"""The asyncio Backend: futures to wait on, add_reader/add_writer to watch descriptors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._async.backend import Backend, Waiter, Watch

T = TypeVar("T")


class _FutureWaiter(Waiter):
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[bool]) -> None:
        self.future = future

    def wake(self) -> None:
        if not self.future.done():
            self.future.set_result(True)

    def expire(self) -> None:
        if not self.future.done():
            self.future.set_result(False)


class _LoopWatch(Watch):
    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, writable: bool,
                 callback: Callable[[], bool]) -> None:
        self._loop = loop
        self._fd = fd
        self._writable = writable
        self._callback = callback
        self._active = True
        (loop.add_writer if writable else loop.add_reader)(fd, self._ready)

    def _ready(self) -> None:
        if self._active and not self._callback():
            self.cancel()

    def cancel(self) -> None:
        if self._active:
            self._active = False
            (self._loop.remove_writer if self._writable else self._loop.remove_reader)(self._fd)


class AsyncioBackend(Backend):
    """Bound to the running loop of the task that made the gateway."""

    name = "asyncio"

    def __init__(self) -> None:
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("execwire.aio runs inside a running asyncio loop (asyncio.run(...)); "
                               "under trio use execwire.trio, without a loop the threaded execwire") from None
        self._tasks: set[asyncio.Task[None]] = set()

    def idle(self) -> bool:
        # asyncio keeps the callbacks due now in loop._ready (not public, but in every version since 3.4);
        # without it, never claim idleness
        return not getattr(self.loop, "_ready", True)

    def waiter(self) -> _FutureWaiter:
        return _FutureWaiter(self.loop.create_future())

    async def wait(self, waiter: Waiter, timeout: float | None) -> bool:
        assert isinstance(waiter, _FutureWaiter)
        future = waiter.future
        if timeout is None:
            return await future
        if timeout <= 0 and not future.done():
            return False
        timer = self.loop.call_later(timeout, waiter.expire)
        try:
            return await future
        finally:
            timer.cancel()

    def watch(self, fd: int, writable: bool, callback: Callable[[], bool]) -> Watch:
        return _LoopWatch(self.loop, fd, writable, callback)

    async def wait_readable(self, fd: int, timeout: float | None) -> bool:
        waiter = self.waiter()
        self.loop.add_reader(fd, waiter.wake)
        try:
            return await self.wait(waiter, timeout)
        finally:
            self.loop.remove_reader(fd)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def run_in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(function, *args)

    def spawn(self, function: Callable[[], Awaitable[None]], name: str) -> None:
        async def run() -> None:
            await function()

        task = self.loop.create_task(run(), name=name)
        self._tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(callback)  # RuntimeError once the loop is closed

    async def run_all(self, functions: list[Callable[[], Awaitable[T]]]) -> list[T | BaseException]:
        async def run(function: Callable[[], Awaitable[T]]) -> T:
            return await function()

        return list(await asyncio.gather(*(run(function) for function in functions), return_exceptions=True))
