"""Calls by reference for the async faces: ``await gw.call(func, ...)`` and ``await group.map(func, items)``.

The request, its checks and the reading of the answer are the threaded side's
(execwire/calls.py): the same far loops run the calls, so the rules and errors are
the same. A call takes an idle far call loop of its gateway (or opens one), sends
the request and awaits the answer; a call cancelled while it waits closes its loop,
whose late answer is then for nobody.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import calls
from .._far.errors import Error, GatewayLostError, RemoteError
from .._far.wire import DumpError
from .backend import Backend, Wakeups
from .channel import Channel
from .imports import service
from .upstream import send_root_level

if TYPE_CHECKING:
    from .gateway import AsyncGateway


class AsyncCallStream:
    """A far loop that runs the calls sent on its channel one after another (calls.STREAM_RUNNER)."""

    def __init__(self, gateway: AsyncGateway, channel: Channel) -> None:
        self.gateway = gateway
        self.channel = channel

    async def run(self, request: dict[str, Any], what: str) -> Any:
        """Send ``request`` and return what its answer carries (RemoteError, DumpError: the stream stays good)."""
        send_root_level(self.gateway)  # the far root level before the call runs (_async/upstream.py)
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
                    chunksize: int, concurrency: int, retries: int) -> list[Any]:
    """``list(map(func, *iterables))`` with the calls spread over ``gateways``, ``concurrency`` at a time on each."""
    if not gateways:
        raise ValueError("map() needs at least one gateway in the group")
    if chunksize < 1 or concurrency < 1:
        raise ValueError(f"chunksize and concurrency must be at least 1, not {chunksize} and {concurrency}")
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, not {retries}")
    calls.request_for(func, [], {}, batch=True)  # CallError now, not once per chunk
    items = list(zip(*iterables, strict=False))
    run = MapRun(gateways[0]._backend, func, [items[start:start + chunksize]
                                              for start in range(0, len(items), chunksize)], retries)
    outcomes = await gateways[0]._backend.run_all([_worker(run, gateway) for gateway in gateways
                                                   for _ in range(concurrency)])
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return run.results()


class MapRun:
    """One map: chunks of items handed to workers as they finish one, results kept in input order.

    A chunk whose gateway is lost while it runs goes back to the front of the queue for
    another gateway, up to ``retries`` times (so it may run twice: the function should be
    idempotent); that gateway's workers stop. A far exception is never retried: after
    it no new chunk starts, and the error of the first failed chunk is raised. Only the
    loop touches it.
    """

    def __init__(self, backend: Backend, func: Callable[..., Any], chunks: list[list[tuple[Any, ...]]],
                 retries: int) -> None:
        self.func = func
        self.what = calls._describe(func)
        self.chunks = chunks
        self.retries = retries
        self.pending = deque(range(len(chunks)))
        self.attempts = [0] * len(chunks)
        self.values: list[list[Any] | None] = [None] * len(chunks)
        self.failures: dict[int, BaseException] = {}
        self.running = 0  # chunks being run: one of them may come back to the queue
        self.changes = Wakeups(backend)  # a chunk finished or came back
        self.lost: list[BaseException] = []

    async def work(self, gateway: AsyncGateway) -> None:
        lease = Lease(gateway)
        try:
            while not self.failures and gateway.state == "up":
                if not self.pending:
                    if not self.running:
                        return
                    await self.changes.wait(None)
                    continue
                index = self.pending.popleft()
                self.running += 1
                try:
                    self.values[index] = await lease.run(self.request(index), self.what)
                except GatewayLostError as exc:
                    self.lost.append(exc)
                    self.attempts[index] += 1
                    if self.attempts[index] > self.retries:
                        self.failures[index] = exc
                    else:
                        self.pending.appendleft(index)
                    return
                except Exception as exc:
                    self.failures[index] = exc
                    return
                finally:
                    self.running -= 1
                    self.changes.wake_all()
        finally:
            lease.release()

    def request(self, index: int) -> dict[str, Any]:
        return calls.request_for(self.func, [(args, {}) for args in self.chunks[index]], {}, batch=True)

    def results(self) -> list[Any]:
        if self.failures:
            raise self.failures[min(self.failures)]
        if self.pending:
            why = f"every gateway was lost (the last: {self.lost[-1]})" if self.lost else "no gateway is up"
            raise GatewayLostError(f"map() of {self.what}: {why}; {len(self.pending)} chunks of items were not run")
        return [value for values in self.values for value in values or ()]


def _worker(run: MapRun, gateway: AsyncGateway) -> Callable[[], Awaitable[None]]:
    return lambda: run.work(gateway)
