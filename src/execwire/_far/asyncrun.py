"""The far side's event loop: runs ``async def`` code shipped by remote_exec.

Far-side module: stdlib only, Python >= 3.6. It imports asyncio only when the
first async code arrives (a far side that never runs any pays nothing).

A remote_exec of an ``async def`` function (first parameter ``channel``) or of
source defining ``async def main(channel)`` runs as a task of one event loop per
gateway, in a thread of its own; every such channel of the gateway shares it.
The code gets an AsyncChannel: ``await channel.receive()`` waits in the loop,
woken by the reader thread through the channel's WakingQueue, so waiting takes
no thread. ``await channel.send()`` writes at once while the window has room;
a send that must wait for credit waits in a worker thread, so the loop goes on.
"""

import sys
import threading

from .errors import TimeoutError
from .protocol import MIN_COST, wire_size
from .sync import ItemQueue
from .wire import encode

_CO_COROUTINE = 0x80  # code flag of an ``async def`` function (inspect's, without importing inspect: 1.7 MB)


def is_async(function):
    """True for an ``async def`` function (what the loop runs rather than a thread), also bound or in a partial."""
    for _ in range(16):  # partials of partials
        code = getattr(getattr(function, "__func__", function), "__code__", None)
        if code is not None:
            return bool(code.co_flags & _CO_COROUTINE)
        function = getattr(function, "func", None)  # functools.partial
        if function is None:
            return False
    return False


def may_be_async(source):
    """Whether shipped ``source`` may hold async code: then its channel needs a WakingQueue from the start."""
    return "async def" in source


class WakingQueue(ItemQueue):
    """A channel's item queue that also wakes the far loop when an async receiver waits on it."""

    wakers = ()  # called after each put, one per async receiver waiting (only the loop changes it)

    def put(self, item, block=True, timeout=None):
        ItemQueue.put(self, item)
        for waker in self.wakers:
            waker()


def install_waking_queue(channel):
    """Give a fresh channel (no item yet: called as its EXEC is dispatched) a WakingQueue."""
    if channel._items is not None and channel._items.empty():
        channel._items = WakingQueue()


class AsyncChannel(object):
    """What ``async def`` code gets as ``channel``: the gateway's channel, awaited in the far loop."""

    def __init__(self, channel, runner):
        self._channel = channel
        self._runner = runner
        self.gateway = channel.gateway
        self.id = channel.id

    def __repr__(self):
        return "<async far Channel id=%d>" % self.id

    async def receive(self, timeout=None):
        """The next item; EOFError once the other side closed (its error if it failed)."""
        loop = self._runner.loop
        deadline = None if timeout is None else loop.time() + max(timeout, 0)
        while True:
            try:
                return self._channel.receive(0)  # an item there, the end, or TimeoutError: never waits
            except TimeoutError:
                pass
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("no item on channel %d within %r seconds" % (self.id, timeout))
            await self._arrival(remaining)

    async def _arrival(self, timeout):
        """Until something is put into the channel's queue, or ``timeout``."""
        import asyncio

        items = self._channel._items
        if not isinstance(items, WakingQueue):
            raise RuntimeError("channel %d was not made for async code; use the threaded methods" % self.id)
        loop = self._runner.loop
        arrived = loop.create_future()

        def wake():
            loop.call_soon_threadsafe(_settle, arrived)

        items.wakers = items.wakers + (wake,)
        try:
            if items.empty():  # an item that came before the waker was set
                await asyncio.wait_for(arrived, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            # only our own: a receive cancelled earlier may get here after a newer one set its waker
            # (on 3.6, wait_for() does not wait for the task it cancelled)
            items.wakers = tuple(waker for waker in items.wakers if waker is not wake)

    async def send(self, item):
        """Send ``item``; returns once it is written (waiting for credit off the loop if need be)."""
        channel = self._channel
        parts = encode(item, type(channel))
        cost = wire_size(parts) + MIN_COST
        if channel._has_credit(cost):
            channel.send(item)
            return
        await self._runner.loop.run_in_executor(None, channel.send, item)

    def close(self, error=None):
        self._channel.close(error)

    def isclosed(self):
        return self._channel.isclosed()

    async def waitclose(self, timeout=None):
        """Until the other side will send no more; its error if it failed."""
        loop = self._runner.loop
        deadline = None if timeout is None else loop.time() + max(timeout, 0)
        channel = self._channel
        while not channel._receive_closed.is_set():
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("channel %d not closed within %r seconds" % (self.id, timeout))
            await self._arrival(remaining)
        if channel._error is not None:
            raise channel._error

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.receive()
        except EOFError:
            raise StopAsyncIteration


def _settle(future):
    if not future.done():
        future.set_result(None)


class AsyncRunner(object):
    """One event loop in a daemon thread, for every async remote_exec of a gateway."""

    def __init__(self):
        import asyncio

        self.loop = asyncio.new_event_loop()
        # the jobs under way: the loop holds its tasks only weakly, and a job waiting for an item is
        # otherwise held by nothing but its own channel, which the gateway closes once it is garbage
        self._jobs = set()
        self._thread = threading.Thread(target=self._run, name="execwire-async")
        self._thread.daemon = True
        self._thread.start()

    def _run(self):
        import asyncio

        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self, function, channel, kwargs, finished):
        """Run ``function(AsyncChannel, **kwargs)``; then ``finished(exc_info or None)`` in the loop."""
        import asyncio

        async def run():
            try:
                await function(AsyncChannel(channel, self), **kwargs)
            except BaseException:
                finished(sys.exc_info())
                return
            finished(None)

        job = asyncio.run_coroutine_threadsafe(run(), self.loop)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
