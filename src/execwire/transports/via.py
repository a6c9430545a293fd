"""via=ID: a gateway whose bytes travel through another gateway of the same group.

The middle gateway runs the relay (relay.py, shipped with remote_exec): it
starts the same command a direct gateway would (popen, ssh, prefixes) and
carries its stdin and stdout as bytes items over one channel. Here that
channel is wrapped in a Stream, so the new Gateway runs over it unchanged;
via gateways nest to any depth. When the middle gateway ends, the relay
channel ends and so does every gateway behind it (its waiters get
GatewayLostError).
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import bootstrap, shutdown
from .._far import frames
from .._far.channel import Channel
from .._far.errors import Error, GatewayLostError, GatewayStartError, RemoteError
from .._far.errors import TimeoutError as ExecwireTimeoutError
from .._far.streams import FrameWriter, Stream
from ..process import Process, StderrCollector
from ..spec import XSpec
from . import relay
from .command import far_config
from .middle_cache import Blob, Keeper, keeper_of
from .prefix import Launch

if TYPE_CHECKING:
    from .._far.channel import Item
    from ..gateway import Gateway

ITEM_SIZE = 1024 * 1024  # at most this many bytes of frames travel in one relay item
SIGTERM = int(signal.SIGTERM)  # numbers sent to the relay, which may run elsewhere
SIGKILL = int(signal.SIGKILL)


def start_via(spec: XSpec, gateway_id: str, debug: bool, middle: Gateway,
              launch: Launch) -> tuple[ChannelTransport, RelayProcess]:
    """Start ``launch`` on the middle gateway (the one ``spec.via`` names) and talk to it through a relay channel."""
    via = str(spec.via)
    try:
        channel = middle.remote_exec(relay)
        channel.send({"argv": launch.argv, "self_python": launch.self_python})
    except Error as exc:
        raise GatewayStartError(f"gateway {gateway_id!r} ({spec}): cannot start it via gateway {via!r}, "
                                f"which is not usable: {exc}") from exc
    from ..gateway import Gateway

    timeout = float(spec.timeout) if spec.timeout is not None else Gateway.startup_timeout
    collector = StderrCollector()
    transport = ChannelTransport(channel, via, f"gateway {gateway_id!r} ({spec})",
                                 f"{launch.what} on gateway {via!r}", timeout, collector)
    process = RelayProcess(transport, collector, launch)
    try:
        send_boot(transport, far_config(spec, gateway_id, debug))
    except GatewayLostError:
        pass  # the reader reports why
    return transport, process


def send_boot(transport: ChannelTransport, config: dict[str, object]) -> None:
    """Stage 2 and the CONFIG frame; stage 2 written by the relay from what the middle keeps, if it can
    (gateways behind one middle share it: it crosses the link to the middle once)."""
    stage2 = stage2_blob()
    keeper = transport.keeper()
    if keeper is not None and keeper.keep(stage2):
        transport.send_item(("inject", [b"", bootstrap.config_frame(config)], [stage2.key]))
    else:
        FrameWriter(transport).send_raw(stage2.data + bootstrap.config_frame(config))


@functools.cache
def stage2_blob() -> Blob:
    return Blob.raw(bootstrap.stage2())


def first_item(buffers: list[Any]) -> bytes:
    """The first ITEM_SIZE bytes (at most) of ``buffers``: what one relay item carries."""
    parts = []
    size = 0
    for buffer in buffers:
        view = memoryview(buffer).cast("B")[:ITEM_SIZE - size]
        parts.append(view)
        size += len(view)
        if size >= ITEM_SIZE:
            break
    return b"".join(parts)


class ChannelTransport(Stream):
    """Frames carried as bytes items of a channel to a relay on another gateway."""

    def __init__(self, channel: Channel, via: str, gateway: str, what: str, startup_timeout: float,
                 stderr: StderrCollector) -> None:
        self.closed = False
        self.channel = channel
        self.via = via
        self.gateway = gateway  # names the gateway in errors
        self.what = what  # names the command in errors
        self.pid = -1
        self.exit_code: int | None = None
        self.ended = threading.Event()  # the relay reported the command's end, or the channel ended
        self._stderr = stderr
        self._pending = memoryview(b"")
        self._speaks_protocol = False
        self._deadline: float | None = time.monotonic() + startup_timeout
        self._startup_timeout = startup_timeout

    # -- reading (only the gateway's reader thread calls this) ---------------
    def readinto(self, view: memoryview) -> int:
        while not self._pending:
            item = self._next_item()
            if item is None:
                return 0
            if isinstance(item, bytes):
                self._pending = memoryview(item)
                self._got_bytes(item)
            else:
                self._control(item)
                if self.ended.is_set():
                    return 0
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _got_bytes(self, item: bytes) -> None:
        """Bytes from the command: the first ones end the start-up wait and start passing its stderr on."""
        if self._deadline is not None:
            self._deadline = None
            self._speaks_protocol = item[:2] == frames.MAGIC[:len(item[:2])]
            self._stderr.start_forwarding()

    def _next_item(self) -> Any:
        timeout = None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)
        try:
            return self.channel.receive(timeout)
        except (ExecwireTimeoutError, EOFError, GatewayLostError, RemoteError) as exc:
            error = self._receive_failed(exc)
            if error is None:
                return None
            raise error from None if error.__cause__ is None else error.__cause__

    def _receive_failed(self, exc: BaseException) -> Exception | None:
        """What the relay channel's end (or a start-up timeout) means: the error, or None for a clean end."""
        if isinstance(exc, ExecwireTimeoutError):
            self.signal(SIGKILL)
            self._end()
            return GatewayStartError(
                f"{self.gateway}: no answer from {self.what} within {self._startup_timeout:g} seconds; set "
                "//timeout=SECONDS in the spec to wait longer")
        self._end()
        if isinstance(exc, EOFError):
            if self.exit_code is None:
                return GatewayLostError(f"{self.gateway}: gateway {self.via!r}, which it runs through, was closed")
            return None
        error = GatewayLostError(f"{self.gateway}: gateway {self.via!r}, which it runs through, went away: {exc}")
        error.__cause__ = exc
        return error

    def _control(self, item: Any) -> None:
        kind = item[0]
        if kind == "stderr":
            self._stderr.feed(item[1])
        elif kind == "pid":
            self.pid = item[1]
        elif kind == "exit":
            self.exit_code = item[1]
            self._end()
            if self.exit_code and self._speaks_protocol:  # it failed after start-up (ssh lost the link)
                said = self._stderr.said_since_forwarding(0)
                raise GatewayLostError(f"{self.gateway}: {self.what} ended with exit code {self.exit_code}"
                                       + (f": {said}" if said else ""))
        elif kind == "error":
            self._end()
            raise GatewayStartError(f"{self.gateway}: cannot start {self.what}: {item[1]}")

    def _end(self) -> None:
        self._stderr.finish()
        self.ended.set()

    # -- writing ---------------------------------------------------------------
    def writev(self, buffers: list[Any]) -> int:
        """Send up to ITEM_SIZE bytes as one item (the FrameWriter sends the rest).

        Bounded items keep the relay's memory bounded, let it pass on the first
        bytes of a large frame while the rest travels, and fit in the channel's
        flow-control window.
        """
        data = first_item(buffers)
        self._send(data)
        return len(data)

    def keeper(self) -> Keeper | None:
        """What the middle gateway keeps for its relays to inject (None: it keeps nothing)."""
        from ..gateway import Gateway

        middle = self.channel.gateway
        return keeper_of(middle) if isinstance(middle, Gateway) else None

    def send_item(self, item: Item) -> None:
        """Send an item to the relay (an injection) between frames: the caller holds the frame writer's lock."""
        self._send(item)

    def _send(self, item: Item) -> None:
        try:
            self.channel.send(item)
        except (OSError, Error) as exc:  # ChannelClosedError, GatewayLostError
            raise GatewayLostError(f"{self.gateway}: gateway {self.via!r}, which it runs through, "
                                   f"cannot carry more: {exc}") from exc

    def signal(self, number: int) -> None:
        """Send a signal to the command on the middle gateway (if it still runs).

        Not at interpreter exit: a send may wait, and the middle gateway, which
        is ending too, takes the command with it.
        """
        if not self.ended.is_set() and not shutdown.exiting():
            try:
                self._send(("signal", number))
            except GatewayLostError:
                pass

    def close_write(self) -> None:
        if shutdown.exiting():
            self.closed = True  # no send, which may wait (see signal())
            return
        if not self.closed:
            self.closed = True
            try:
                self._send(("eof",))
            except GatewayLostError:
                pass

    def close(self) -> None:
        self.close_write()
        if not shutdown.exiting():
            self.channel.close()


class RelayProcess(Process):
    """The command on the middle gateway, stopped through the relay like a local process."""

    def __init__(self, transport: ChannelTransport, stderr: StderrCollector, launch: Launch) -> None:
        # no local popen: every method of Process that would use it is overridden here
        self.transport = transport
        self.stderr = stderr
        self.explain = launch.explain

    @property
    def pid(self) -> int:
        """The command's process id on the middle gateway's machine (-1 before it started)."""
        return self.transport.pid

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code (-1 if the middle gateway went away first), or None if still running."""
        if not self.transport.ended.wait(timeout):
            return None
        return self.transport.exit_code if self.transport.exit_code is not None else -1

    def kill(self) -> None:
        self.transport.signal(SIGKILL)
        self.wait(5.0)

    def stop(self, timeout: float) -> int | None:
        code = self.wait(max(timeout, 0.0))
        if code is not None or shutdown.exiting():  # at exit its middle gateway's end takes it along
            return code
        self.transport.signal(SIGTERM)
        code = self.wait(1.0)
        if code is None:
            self.kill()
            code = self.wait(0)
        return code
