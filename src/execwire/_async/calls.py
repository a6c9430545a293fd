"""Calls by reference for the async faces: ``await gw.call(func, ...)`` and ``await group.map(func, items)``.

The request, its checks and the reading of the answer are the threaded side's
(execwire/calls.py): the same far loops run the calls, so the rules and errors are
the same. A call takes an idle far call loop of its gateway (or opens one), sends
the request and awaits the answer; a call cancelled while it waits closes its loop,
whose late answer is then for nobody.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import calls
from .._far.errors import Error, RemoteError
from .._far.wire import DumpError
from .channel import Channel
from .imports import service

if TYPE_CHECKING:
    from .gateway import AsyncGateway


class AsyncCallStream:
    """A far loop that runs the calls sent on its channel one after another (calls.STREAM_RUNNER)."""

    def __init__(self, gateway: AsyncGateway, channel: Channel) -> None:
        self.gateway = gateway
        self.channel = channel

    async def run(self, request: dict[str, Any], what: str) -> Any:
        """Send ``request`` and return what its answer carries (RemoteError, DumpError: the stream stays good)."""
        await self.channel.send(request)
        answer = await self.channel.receive()
        return calls.outcome(answer, what, self.gateway.id, self.channel.id)

    def close_soon(self) -> None:
        """Close the channel from a task of the gateway's (the caller may be cancelled and unable to await)."""
        self.gateway._backend.spawn(self._close, f"execwire-call-close-{self.gateway.id}")

    async def _close(self) -> None:
        try:
            await self.channel.close()
        except Error:
            pass


async def call(gateway: AsyncGateway, func: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
    """Run ``func(*args, **kwargs)`` on ``gateway`` and return its result."""
    request = calls.request_for(func, args, kwargs, batch=False)
    return await run_request(gateway, request, calls._describe(func))


async def run_request(gateway: AsyncGateway, request: dict[str, Any], what: str) -> Any:
    """Run one far call on an idle far call loop of the gateway (or a new one) and return its result."""
    lease = Lease(gateway)
    try:
        return await lease.run(request, what)
    finally:
        lease.release()


class Lease:
    """A far call loop that one caller holds for its calls (group.map's workers keep theirs throughout)."""

    def __init__(self, gateway: AsyncGateway) -> None:
        self.gateway = gateway
        self.stream: AsyncCallStream | None = None

    async def run(self, request: dict[str, Any], what: str) -> Any:
        gateway = self.gateway
        calls.check_sendable(request, what, Channel)
        await service(gateway).wait_ready(gateway.startup_timeout)
        if gateway.spec.execmodel == "main_thread_only":  # an idle far loop would hold the only thread
            return await _run_once(gateway, request, what)
        if self.stream is None:
            idle = gateway._call_streams
            self.stream = idle.pop() if idle else AsyncCallStream(gateway, await gateway.remote_exec(
                calls.STREAM_RUNNER))
        try:
            return await self.stream.run(request, what)
        except (RemoteError, DumpError):
            raise  # the far loop answered and waits for the next call
        except BaseException:  # lost, or cancelled here: what comes on it now is not for the next call
            self.stream.close_soon()
            self.stream = None
            raise

    def release(self) -> None:
        """Give the far loop back to the gateway's idle ones (or close it if there are enough)."""
        stream, self.stream = self.stream, None
        if stream is None:
            return
        if len(self.gateway._call_streams) < calls.MAX_IDLE_STREAMS:
            self.gateway._call_streams.append(stream)
        else:
            stream.close_soon()


async def _run_once(gateway: AsyncGateway, request: dict[str, Any], what: str) -> Any:
    """One call in a far job of its own (calls.RUNNER), settled once that job has ended."""
    channel = await gateway.remote_exec(calls.RUNNER)
    await channel.send(request)
    try:
        answer = await channel.receive()  # a far exception ends the job: RemoteError here
    except EOFError:
        raise Error(f"the call of {what} on gateway {gateway.id!r} ended without a result") from None
    await channel.waitclose()
    return calls.outcome(answer, what, gateway.id, channel.id)


async def map_calls(gateways: list[AsyncGateway], func: Callable[..., Any], iterables: tuple[Iterable[Any], ...],
                    chunksize: int, concurrency: int) -> list[Any]:
    """``list(map(func, *iterables))`` with the calls spread over ``gateways``, ``concurrency`` at a time on each.

    Workers take the next chunk as they finish one; after a failure no new chunk
    starts, and the error of the first failed item (in input order) is raised.
    """
    if not gateways:
        raise ValueError("map() needs at least one gateway in the group")
    if chunksize < 1 or concurrency < 1:
        raise ValueError(f"chunksize and concurrency must be at least 1, not {chunksize} and {concurrency}")
    items = list(zip(*iterables, strict=False))
    calls.request_for(func, [], {}, batch=True)  # CallError now, not once per chunk
    what = calls._describe(func)
    chunks = [items[start:start + chunksize] for start in range(0, len(items), chunksize)]
    results: list[Any] = [None] * len(items)
    failures: dict[int, BaseException] = {}
    next_chunk = iter(range(len(chunks)))

    async def work(gateway: AsyncGateway) -> None:
        lease = Lease(gateway)
        try:
            for index in next_chunk:
                if failures:
                    return
                chunk = chunks[index]
                request = calls.request_for(func, [(args, {}) for args in chunk], {}, batch=True)
                try:
                    values = await lease.run(request, what)
                except Exception as exc:
                    failures[index] = exc
                    return
                start = index * chunksize
                results[start:start + len(values)] = values
        finally:
            lease.release()

    workers: list[Callable[[], Awaitable[None]]] = [
        _worker(work, gateway) for gateway in gateways for _ in range(concurrency)]
    outcomes = await gateways[0]._backend.run_all(workers)
    for result in outcomes:
        if isinstance(result, BaseException):
            raise result
    if failures:
        raise failures[min(failures)]
    return results


def _worker(work: Callable[[AsyncGateway], Awaitable[None]], gateway: AsyncGateway) -> Callable[[], Awaitable[None]]:
    return lambda: work(gateway)
