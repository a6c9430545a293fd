"""The async Channel: the core's ChannelState with awaitable send, receive and waitclose.

The states, credit and frames are the core's (protocol.ChannelState); the events
come from the same dispatch as in the threaded API (BaseGateway._dispatch),
which calls the methods below from the loop. Only the loop's thread touches a
channel, so nothing here takes a lock.

Cancelling a task waiting in receive() takes nothing: the item it would have
got stays first in line. Cancelling one waiting in send() before its frame is
queued sends nothing; once queued (waiting for the write), the item goes out
whole.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._far import frames
from .._far.errors import ChannelClosedError, GatewayLostError, RemoteError, TimeoutError
from .._far.protocol import CLOSE_RECEIVED, MIN_COST, ChannelState, Protocol, wire_size
from .._far.wire import DumpError
from .._far.wire import encode as _encode
from .backend import Wakeups

if TYPE_CHECKING:
    from .gateway import AsyncGateway

_DATA = frames.DATA
_MAGIC = frames.MAGIC
_pack_header = frames.HEADER.pack
_SMALL = 65536


class Inbox:
    """Items that arrived for one channel, and the tasks waiting for them (the core's dispatch puts)."""

    __slots__ = ("entries", "arrivals")

    def __init__(self, arrivals: Wakeups) -> None:
        self.entries: deque[tuple[Any, int]] = deque()
        self.arrivals = arrivals

    def put(self, entry: tuple[Any, int]) -> None:
        self.entries.append(entry)
        self.arrivals.wake_all()


class Channel(ChannelState):
    """One two-way conversation with the far side, for async code."""

    RemoteError = RemoteError
    TimeoutError = TimeoutError

    def __init__(self, gateway: AsyncGateway, core: Protocol, id: int) -> None:
        ChannelState.__init__(self, core, id)
        self.gateway = gateway
        backend = gateway._backend
        self._changes = Wakeups(backend)  # an item arrived, or the receiving half ended
        self._items = Inbox(self._changes)
        self._credit = Wakeups(backend)  # credit came back, or sending became impossible
        self._receive_closed = False
        self._error: BaseException | None = None  # what receivers get after the items
        self._lost: GatewayLostError | None = None

    def __repr__(self) -> str:
        return f"<async Channel id={self.id} {'closed' if self.isclosed() else 'open'}>"

    def __del__(self) -> None:
        # Garbage: as in the threaded API, the other side is told, as if close() had been called
        try:
            frame = self._protocol._dropped(self)
            if frame is not None and self._lost is None:
                self.gateway._writer.send_soon(frame)
        except Exception:
            pass  # the connection is gone, or the interpreter is shutting down

    # -- sending ------------------------------------------------------------------
    async def send(self, item: Any) -> None:
        """Send ``item``; returns once it is written to the connection (it survives our death)."""
        parts = _encode(item, Channel)
        size = len(parts[0]) if len(parts) == 1 else wire_size(parts)
        if size > frames.MAX_PAYLOAD:
            raise DumpError(f"cannot send an item of {size} bytes on channel {self.id}: the limit is "
                            f"{frames.MAX_PAYLOAD} bytes per item; send it in pieces")
        cost = size + MIN_COST
        while True:
            if self._lost is not None:
                raise self._lost
            if not self._can_send():
                raise self._send_error()
            if self._reserve(cost):
                break
            await self._credit.wait(None)
        outbox = self.gateway._writer
        if size < _SMALL and len(parts) == 1:
            mark = outbox.send_frame(_pack_header(_MAGIC, _DATA, self.id, size) + parts[0])
        else:
            mark = outbox.send(_DATA, self.id, parts, size)
        if outbox.written < mark:  # it went out at once, as a rule
            await outbox.drained(mark)

    def _send_nowait(self, item: Any) -> None:
        """Queue a small control item now, credit or not (a relay's signal from code that cannot wait)."""
        if self._lost is not None:
            raise self._lost
        if not self._can_send():
            raise self._send_error()
        parts = _encode(item, Channel)
        size = wire_size(parts)
        self._spent += size + MIN_COST  # taken even beyond the window: a control item cannot wait
        self.gateway._writer.send(_DATA, self.id, parts, size)

    def _send_error(self) -> ChannelClosedError:
        if self._remote == CLOSE_RECEIVED:
            return ChannelClosedError(f"cannot send on channel {self.id}: the other side closed it")
        return ChannelClosedError(f"cannot send on channel {self.id}: it was closed by this side")

    async def close(self, error: str | BaseException | None = None) -> None:
        """Close both halves, telling the other side why (``error``) if it failed; twice does nothing."""
        text = None
        if error is not None:
            text = error.formatted if isinstance(error, RemoteError) else str(error)
        frame = self._close_frame(text) if self._lost is None else None
        self._credit.wake_all()  # senders waiting for credit give up now
        self._end_receiving(None)
        if frame is not None:
            outbox = self.gateway._writer
            try:
                await outbox.drained(outbox.send_frame(frame))
            except GatewayLostError:
                pass  # nobody left to tell

    def isclosed(self) -> bool:
        """True once the channel can send no more; it may still hold items to receive."""
        return not self._can_send() or self._lost is not None

    # -- receiving ----------------------------------------------------------------
    def _take(self) -> tuple[bool, Any]:
        """(True, the next item) if one is there; (False, None) if not yet; raises at the end."""
        entries = self._items.entries
        if entries:
            item, cost = entries.popleft()
            if cost:
                frame = ChannelState._took(self, cost)
                if frame is not None:
                    try:
                        self.gateway._writer.send_frame(frame)
                    except GatewayLostError:
                        pass
            return True, item
        if self._receive_closed:
            raise self._end_error()
        return False, None

    async def receive(self, timeout: float | None = None) -> Any:
        """The next item; EOFError once the other side closed, its error if it failed.

        ``timeout`` (seconds) raises execwire.TimeoutError; the channel stays usable.
        """
        found, item = self._take()
        if found:
            return item
        gateway = self.gateway
        if gateway._backend.idle() and gateway._poll_briefly():  # a fast answer, read without a loop round
            found, item = self._take()
            if found:
                return item
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"no item on channel {self.id} within {timeout!r} seconds")
            await self._changes.wait(remaining)
            found, item = self._take()
            if found:
                return item

    def __iter__(self) -> Any:
        raise TypeError(f"channel {self.id} is an async channel: iterate it with `async for`")

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except EOFError:
            raise StopAsyncIteration from None

    async def waitclose(self, timeout: float | None = None) -> None:
        """Until the other side will send no more; raise its error if it failed."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        while not self._receive_closed:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"channel {self.id} not closed within {timeout!r} seconds")
            await self._changes.wait(remaining)
        if self._error is not None:
            raise self._error

    # -- called by the dispatch (BaseGateway._dispatch), in the loop ----------------------
    def _add_credit(self, amount: int) -> None:
        ChannelState._add_credit(self, amount)
        self._credit.wake_all()

    def _remote_ended(self, error: BaseException | None, sendonly: bool) -> None:
        if not sendonly:
            frame = self._close_frame()  # our answer, unless we closed already
            if frame is not None:
                try:
                    self.gateway._writer.send_frame(frame)
                except GatewayLostError:
                    pass
            self._credit.wake_all()
        self._end_receiving(error)

    def _gateway_ended(self, error: BaseException | None, lost: GatewayLostError) -> None:
        self._lost = lost
        self._credit.wake_all()
        self._end_receiving(error)

    def _end_receiving(self, error: BaseException | None) -> None:
        if self._receive_closed:
            return
        if error is not None and self._error is None:
            self._error = error
        self._receive_closed = True
        self._changes.wake_all()

    def _end_error(self) -> BaseException:
        if self._error is not None:
            return self._error
        return EOFError(f"channel {self.id} was closed")
