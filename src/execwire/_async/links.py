"""Links: how the async driver reaches the far side's bytes (a pipe pair, a socket, a relay channel).

A link reads when the loop says its descriptor is readable and hands the bytes
to the gateway; it writes what the Outbox gives it without ever blocking. The
threaded transports (execwire.transports) start the far side; a link only takes
over their descriptors, so spec parsing, the boot command and the boot bytes are
the very same.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from time import perf_counter as _clock
from typing import TYPE_CHECKING, Any

from .._far import frames
from .._far.errors import GatewayLostError
from .._far.streams import (
    SPIN,
    SPIN_PAUSE,
    SPIN_WORTHWHILE,
    PipeStream,
    SocketStream,
    Stream,
    _make_poller,
    _sched_yield,
)
from ..process import Process
from ..transports.command import WatchedPipeStream
from .backend import Backend, Watch
from .process import stop_process

if TYPE_CHECKING:
    from .gateway import AsyncGateway

_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class Link(ABC):
    """One gateway's connection, driven by the loop."""

    process: Process | None = None

    boot: bytes | None = None  # what to write first, if the transport did not write it already

    @abstractmethod
    def start(self, gateway: AsyncGateway) -> None:
        """Hand the far side's bytes to ``gateway`` from now on (its _on_readable or _data_received)."""

    @abstractmethod
    def read_into(self, view: memoryview) -> int | None:
        """Bytes read into ``view`` (0: the end), or None if none are there after all."""

    @abstractmethod
    def write_some(self, buffers: list[Any]) -> int | None:
        """Write from ``buffers`` what can go without waiting: the count, or None if nothing can."""

    @abstractmethod
    def when_writable(self, callback: Callable[[], bool]) -> None:
        """Call ``callback()`` when more can be written, until it returns False (once at a time)."""

    @abstractmethod
    def close_write(self) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Stop watching and release the descriptors (idempotent)."""

    def poll_briefly(self) -> bool:
        """True if bytes arrived within a few tens of microseconds (see FdLink); False if not tried."""
        return False

    async def stop(self, timeout: float) -> None:
        """Let the far process end within ``timeout``, then SIGTERM, then SIGKILL."""
        if self.process is not None:
            await stop_process(self.backend, self.process, timeout)

    backend: Backend


class FdLink(Link):
    """A PipeStream or SocketStream from a transport, read and written without blocking."""

    def __init__(self, backend: Backend, stream: Stream, process: Process | None) -> None:
        self.backend = backend
        self.stream = stream
        self.process = process
        self._sock: socket.socket | None = None
        if isinstance(stream, SocketStream):
            sock = stream.sock
            assert sock is not None
            self._sock = sock
            self.read_fd = self.write_fd = sock.fileno()  # the socket stays blocking: reads and writes say DONTWAIT
        elif isinstance(stream, PipeStream):
            self.read_fd, self.write_fd = stream.read_fd, stream.write_fd
            os.set_blocking(self.read_fd, False)
            os.set_blocking(self.write_fd, False)
        else:
            raise TypeError(f"no async link for a {type(stream).__name__}")
        # a launcher's stderr (ssh, sudo) is passed on once the far side speaks (see WatchedPipeStream)
        self._watched = stream if isinstance(stream, WatchedPipeStream) else None
        self._read_watch: Watch | None = None
        self._write_watch: Watch | None = None
        self._closed = False
        self._poller: Any = None  # made at the first poll_briefly(); False where polling cannot pay
        self._poll_pause = 0
        self._missed_at = 0.0

    def start(self, gateway: AsyncGateway) -> None:
        self._read_watch = self.backend.watch(self.read_fd, False, gateway._on_readable)

    def poll_briefly(self) -> bool:
        """Poll for up to streams.SPIN seconds for the far side's bytes, as a threaded receiver does.

        An answer that comes that fast is then read without a round through the
        loop's selector, whose sleep and wake-up on a virtual machine cost more than
        the answer. When an answer comes later than SPIN_WORTHWHILE after a poll that
        missed it, the next SPIN_PAUSE receives do not poll, so a slow far side costs
        next to nothing; never on a single CPU.
        """
        poller = self._poller
        if poller is None:
            poller = self._poller = _make_poller(self.read_fd) or False
        if poller is False or self._closed:
            return False
        if self._poll_pause:
            self._poll_pause -= 1
            return False
        end = _clock() + SPIN
        while True:
            if poller.poll(0):
                return True
            if _clock() >= end:
                self._missed_at = end  # read_into() decides whether polling pays (as ReadWaiter does)
                return False
            _sched_yield()

    def read_into(self, view: memoryview) -> int | None:
        try:
            if self._sock is not None:
                count = self._sock.recv_into(view, 0, _MSG_DONTWAIT)
            else:
                count = os.readv(self.read_fd, [view])
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise GatewayLostError(f"reading from the peer failed: {exc}") from exc
        if self._missed_at:  # the last poll missed: was the answer just late, or is the far side slow?
            if _clock() - self._missed_at >= SPIN_WORTHWHILE:
                self._poll_pause = SPIN_PAUSE
            self._missed_at = 0.0
        watched = self._watched
        if watched is not None and count and not watched._started:
            watched._started = True
            watched._speaks_protocol = bytes(view[:min(count, 2)]) == frames.MAGIC[:min(count, 2)]
            watched._stderr.start_forwarding()
        return count

    def write_some(self, buffers: list[Any]) -> int | None:
        try:
            if self._sock is not None:
                return self._sock.sendmsg(buffers, [], _MSG_DONTWAIT)
            return os.writev(self.write_fd, buffers)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise GatewayLostError(f"writing to the peer failed: {exc}") from exc

    def when_writable(self, callback: Callable[[], bool]) -> None:
        if self._write_watch is not None or self._closed:
            return

        def writable() -> bool:
            keep = callback()
            if not keep:
                self._write_watch = None
            return keep

        self._write_watch = self.backend.watch(self.write_fd, True, writable)

    def close_write(self) -> None:
        if self._write_watch is not None and self.write_fd != self.read_fd:
            self._write_watch.cancel()
            self._write_watch = None
        self.stream.close_write()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for watch in (self._read_watch, self._write_watch):
            if watch is not None:
                watch.cancel()
        self._read_watch = self._write_watch = None
        self.stream.close()

    def launcher_failure(self) -> str | None:
        """Why a launcher (ssh) that spoke the protocol ended, if it failed (blocking: run in a thread)."""
        if self._watched is not None and self._watched._speaks_protocol:
            return self._watched._failure()
        return None
