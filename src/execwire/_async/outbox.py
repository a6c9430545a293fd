"""Frames on their way out: queued at once, written as fast as the link takes them.

A send queues its whole frame before it waits for anything, so frames never
interleave and a cancelled send still writes its frame whole (never half of
it). send() then waits until the write reached the frame's end: an item whose
send() returned is in the far side's pipe or socket, as in the threaded API.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from .._far import frames
from .._far.errors import GatewayLostError
from .backend import Backend, Wakeups

if TYPE_CHECKING:
    from .links import Link

_pack_header = frames.HEADER.pack
_MAGIC = frames.MAGIC
BATCH = 512  # buffers per write call (IOV_MAX is 1024 on Linux)


class Outbox:
    """The frames of one gateway not yet written, and who waits for them.

    ``queued`` and ``written`` count bytes since the start; a frame's mark is
    ``queued`` right after it, so "my frame is out" is ``written >= mark``.
    """

    def __init__(self, backend: Backend) -> None:
        self._buffers: deque[Any] = deque()
        self.queued = 0
        self.written = 0
        self.broken: GatewayLostError | None = None
        self._drained = Wakeups(backend)
        self._link: Link | None = None
        self._waiting_for_link = False
        self._close_when_empty = False
        self._loop_thread = threading.get_ident()  # the outbox is made in the loop's thread
        self._late: deque[bytes] = deque()  # frames of finalizers that ran in other threads

    def attach(self, link: Link) -> None:
        """Start writing to ``link`` (what was queued before goes first)."""
        self._link = link
        self.flush()

    # -- queueing (never waits) -------------------------------------------------
    def send_frame(self, frame: bytes) -> int:
        """Queue a complete frame; return its mark."""
        if self.broken is not None:
            raise self.broken
        self.queued += len(frame)
        link = self._link
        if not self._buffers and not self._late and link is not None:  # the common case: write it now
            try:
                count = link.write_some([frame])
            except GatewayLostError as exc:
                self.fail(exc)
                raise
            if count == len(frame):
                self.written += count
                return self.queued
            if count:
                self.written += count
                frame = frame[count:]
            self._buffers.append(frame)
            self.flush()  # it waits for the link to take more
            return self.queued
        self._buffers.append(frame)
        if not self._waiting_for_link:
            self.flush()
        return self.queued

    def send(self, msgtype: int, channel_id: int, parts: list[Any], size: int) -> int:
        """Queue a frame of ``size`` payload bytes given as ``parts``; return its mark."""
        head = _pack_header(_MAGIC, msgtype, channel_id, size)
        if size < 65536:
            return self.send_frame(head + b"".join(parts) if len(parts) != 1 else head + parts[0])
        if self.broken is not None:
            raise self.broken
        self._buffers.append(head)
        self._buffers.extend(parts)  # large payloads are not copied
        self.queued += len(head) + size
        if not self._waiting_for_link:
            self.flush()
        return self.queued

    owe = send_frame  # what the threaded Channel calls for its answer to a CLOSE

    def send_soon(self, frame: bytes) -> None:
        """From a finalizer, which may run in any thread: in the loop's thread queue it now, else
        leave it for the loop's next write."""
        if threading.get_ident() == self._loop_thread:
            self.send_frame(frame)
        else:
            self._late.append(frame)  # deque.append is atomic

    # -- waiting -------------------------------------------------------------------
    async def drained(self, mark: int) -> None:
        """Until every byte up to ``mark`` is written; GatewayLostError if it never will be."""
        while self.written < mark:
            if self.broken is not None:
                raise self.broken
            await self._drained.wait(None)

    # -- writing (the loop calls flush when the link can take more) ------------------
    def flush(self) -> bool:
        """Write what the link takes now; True while bytes are left (the link calls again)."""
        link = self._link
        buffers = self._buffers
        if link is None or self.broken is not None:
            return False
        while self._late:
            frame = self._late.popleft()
            buffers.append(frame)
            self.queued += len(frame)
        try:
            while buffers:
                batch = list(buffers) if len(buffers) <= BATCH else [buffers[i] for i in range(BATCH)]
                count = link.write_some(batch)
                if count is None:  # it would block: the link calls flush() once it can take more
                    if not self._waiting_for_link:
                        self._waiting_for_link = True
                        link.when_writable(self._on_writable)
                    return True
                self.written += count
                _drop_front(buffers, count)
        except GatewayLostError as exc:
            self.fail(exc)
            return False
        self._waiting_for_link = False
        self._drained.wake_all()
        if self._close_when_empty:
            self._close_when_empty = False
            link.close_write()
        return False

    def _on_writable(self) -> bool:
        self._waiting_for_link = False
        self._drained.wake_all()  # what was written so far
        more = self.flush()
        if more:
            self._waiting_for_link = True
        return more

    def close_when_empty(self) -> None:
        """Signal the end of the stream to the far side once everything queued is written."""
        if self._buffers:
            self._close_when_empty = True
        elif self._link is not None:
            self._link.close_write()

    def fail(self, error: GatewayLostError) -> None:
        """Nothing more can be written: every waiting sender gets ``error``."""
        if self.broken is None:
            self.broken = error
        self._buffers.clear()
        self._drained.wake_all()


def _drop_front(buffers: deque[Any], count: int) -> None:
    while count:
        first = buffers[0]
        size = memoryview(first).nbytes
        if count >= size:
            count -= size
            buffers.popleft()
        else:
            buffers[0] = memoryview(first).cast("B")[count:]
            return
