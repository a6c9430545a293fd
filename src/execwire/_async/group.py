"""The async Group and MultiChannel: gateways started side by side, channels read as one."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from .._far.errors import GatewayStartError
from ..multi import _ChannelList
from ..roster import Roster, allocate_id, exit_waves, find_middle
from ..spec import XSpec
from .backend import Backend
from .channel import Channel
from .gateway import AsyncGateway, makegateway


class AsyncGroup(Roster[AsyncGateway]):
    """Gateways with ids (``gw0``, ``gw1``, ... unless a spec says ``id=``).

    ``async with Group(specs) as group`` starts every spec side by side (a via=
    gateway once the one it runs through is up) and terminates them all at the end.
    """

    _backend_class: Callable[[], Backend]

    def __init__(self, xspecs: Iterable[str | XSpec] = ()) -> None:
        self._specs = [spec if isinstance(spec, XSpec) else XSpec(spec) for spec in xspecs]
        self._gateways: list[AsyncGateway] = []
        self._next_auto_id = 0
        self._backend: Backend | None = None

    def __repr__(self) -> str:
        return f"<async Group {[gw.id for gw in self._gateways]!r}>"

    def _get_backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._backend_class()
        return self._backend

    # -- making gateways -----------------------------------------------------------
    async def makegateway(self, spec: str | XSpec | None = None) -> AsyncGateway:
        """Start a gateway for ``spec`` (default "popen"), add it to the group once it answered."""
        if not isinstance(spec, XSpec):
            spec = XSpec(spec or "popen")
        gateway_id = self._allocate_id(spec)
        middle = find_middle(spec, gateway_id, self._gateways)
        gateway = await makegateway(self._get_backend(), spec, self, gateway_id, middle)
        self._gateways.append(gateway)
        return gateway

    async def makegateways(self, specs: Iterable[str | XSpec]) -> list[AsyncGateway]:
        """Start gateways side by side (those with via= after the one they run through).

        If any could not start, raise GatewayStartError naming each that failed;
        those that started stay in the group.
        """
        pending = [spec if isinstance(spec, XSpec) else XSpec(spec) for spec in specs]
        for spec in pending:
            if spec.id is None:
                spec.id = self._allocate_id(spec)
        specs_in_order = list(pending)
        started: list[AsyncGateway] = []
        failures: list[BaseException] = []
        while pending:
            known = {str(spec.id) for spec in pending}
            wave = [spec for spec in pending if str(spec.via or spec.installvia or "") not in known]
            if not wave:
                raise ValueError(f"the gateway specs {[str(spec) for spec in pending]} run through each other")
            pending = [spec for spec in pending if spec not in wave]
            results = await self._get_backend().run_all([self._starter(spec) for spec in wave])
            for result in results:
                if isinstance(result, AsyncGateway):
                    started.append(result)
                else:
                    failures.append(result)
        order = {str(spec.id): index for index, spec in enumerate(specs_in_order)}
        started.sort(key=lambda gw: order[gw.id])  # the group lists them as the specs did, not as they came up
        self._gateways = [gw for gw in self._gateways if gw not in started] + started
        if len(failures) == 1:
            raise failures[0]
        if failures:
            error = GatewayStartError(f"{len(failures)} gateways could not start: "
                                      + "; ".join(str(exc) for exc in failures))
            raise error from failures[0]
        return started

    def _starter(self, spec: XSpec) -> Callable[[], Awaitable[AsyncGateway]]:
        return lambda: self.makegateway(spec)

    def _allocate_id(self, spec: XSpec) -> str:
        gateway_id, self._next_auto_id = allocate_id(spec, self._gateways, self._next_auto_id)
        return gateway_id

    def _unregister(self, gateway: AsyncGateway) -> None:
        if gateway in self._gateways:
            self._gateways.remove(gateway)

    # -- using them ----------------------------------------------------------------
    async def remote_exec(self, source: Any, **kwargs: Any) -> MultiChannel:
        """Run ``source`` on every gateway; the channels come back as one MultiChannel."""
        return MultiChannel([await gw.remote_exec(source, **kwargs) for gw in self])

    async def map(self, func: Callable[..., Any], *iterables: Iterable[Any], chunksize: int = 1,
                  concurrency: int = 1, retries: int = 1) -> list[Any]:
        """``list(map(func, *iterables))`` with the calls spread over this group's gateways, results in order.

        ``func`` follows the rules of Gateway.call. Each gateway runs ``concurrency``
        calls at a time, ``chunksize`` items to a far call. Items whose gateway is
        lost while they run are run again on another, up to ``retries`` times (as
        the Executor does); a far exception stops the rest from starting and is raised.
        """
        from .calls import map_calls

        return await map_calls(list(self._gateways), func, iterables, chunksize, concurrency, retries)

    async def terminate(self, timeout: float | None = None) -> None:
        """Exit every gateway side by side (those behind via= first); after ``timeout`` they are killed."""
        deadline = time.monotonic() + (5.0 if timeout is None else max(timeout, 0.0))
        for wave in exit_waves(self._gateways):
            remaining = max(deadline - time.monotonic(), 0.0)
            await self._get_backend().run_all([_exiter(gw, remaining) for gw in wave])

    def __enter__(self) -> None:
        raise TypeError("an async Group is entered with `async with` (the threaded one is execwire.Group)")

    def __exit__(self, *exc_info: object) -> None:
        """Never reached (see __enter__)."""

    async def __aenter__(self) -> AsyncGroup:
        if self._specs:
            specs, self._specs = self._specs, []
            try:
                await self.makegateways(specs)
            except BaseException:
                await self.terminate(1.0)
                raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.terminate()


def _exiter(gateway: AsyncGateway, timeout: float) -> Callable[[], Awaitable[None]]:
    return lambda: gateway.exit(timeout)


class MultiChannel(_ChannelList[Channel]):
    """Several async channels used as one: send to all, receive from each, or take items as they come."""

    async def send_each(self, item: Any) -> None:
        """Send ``item`` on every channel."""
        for channel in self._channels:
            await channel.send(item)

    async def receive_each(self, withchannel: bool = False) -> list[Any]:
        """One item from each channel, in channel order (as (channel, item) pairs if asked)."""
        items = [await channel.receive() for channel in self._channels]
        return list(zip(self._channels, items, strict=True)) if withchannel else items

    async def waitclose(self, timeout: float | None = None) -> None:
        """Until every channel closed; the first error after all are done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        first: BaseException | None = None
        for channel in self._channels:
            try:
                await channel.waitclose(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def __aiter__(self) -> AsyncIterator[tuple[Channel, Any]]:
        return self._arrivals()

    async def _arrivals(self) -> AsyncIterator[tuple[Channel, Any]]:
        """(channel, item) pairs in the order items arrive, until every channel ended.

        A channel that ends with an error (RemoteError, GatewayLostError) raises it here.
        """
        open_channels = list(self._channels)
        while open_channels:
            for channel in list(open_channels):
                try:
                    found, item = channel._take()
                except EOFError:
                    open_channels.remove(channel)
                    continue
                if found:
                    yield channel, item
                    break
            else:
                if not open_channels:
                    return
                backend = open_channels[0].gateway._backend
                waiter = backend.waiter()
                for channel in open_channels:
                    channel._changes.add(waiter)
                try:
                    await backend.wait(waiter, None)
                finally:
                    for channel in open_channels:
                        channel._changes.discard(waiter)
