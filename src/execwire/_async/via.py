"""via=ID for the async faces: the far side's bytes travel as items of a relay channel.

The middle gateway runs the same relay (transports/relay.py) as in the threaded
API, and the relay's messages mean the same (the threaded ChannelTransport
interprets them; _RelayState only replaces its waiting parts). A task takes the
relay's items and feeds their bytes to the gateway; writes go out as items of
at most ITEM_SIZE bytes, one at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import bootstrap, transports
from .._far.errors import Error, GatewayLostError, GatewayStartError, RemoteError
from .._far.errors import TimeoutError as ExecwireTimeoutError
from ..gateway import DEBUG
from ..process import StderrCollector
from ..spec import XSpec
from ..transports import relay
from ..transports.command import far_config
from ..transports.via import SIGKILL, SIGTERM, ChannelTransport, first_item
from .backend import Backend, Wakeups
from .channel import Channel
from .links import Link

if TYPE_CHECKING:
    from .gateway import AsyncGateway


class _RelayState(ChannelTransport):
    """The threaded relay transport's bookkeeping, with sends that never wait (queued on the channel)."""

    channel: Channel  # type: ignore[assignment]

    def _send(self, item: Any) -> None:
        try:
            self.channel._send_nowait(item)
        except (OSError, Error) as exc:
            raise GatewayLostError(f"{self.gateway}: gateway {self.via!r}, which it runs through, "
                                   f"cannot carry more: {exc}") from exc

    def signal(self, number: int) -> None:
        if not self.ended.is_set():
            try:
                self._send(("signal", number))
            except GatewayLostError:
                pass


class ChannelLink(Link):
    """A gateway's link through a relay channel on another (async) gateway."""

    def __init__(self, backend: Backend, state: _RelayState, boot: bytes) -> None:
        self.backend = backend
        self.state = state
        self.boot: bytes | None = boot
        self._changes = Wakeups(backend)  # the command ended, or a write completed
        self._sending = False
        self._sent = 0  # bytes of the last completed write not yet reported to the Outbox
        self._on_writable: Callable[[], bool] | None = None
        self._closed = False
        self._gateway: AsyncGateway | None = None

    def start(self, gateway: AsyncGateway) -> None:
        self._gateway = gateway
        self.backend.spawn(lambda: self._read(gateway), f"execwire-relay-{gateway.id}")

    async def _read(self, gateway: AsyncGateway) -> None:
        state = self.state
        try:
            while not self._closed:
                timeout = None if state._deadline is None else max(state._deadline - time.monotonic(), 0.0)
                try:
                    item = await state.channel.receive(timeout)
                except (ExecwireTimeoutError, EOFError, GatewayLostError, RemoteError) as exc:
                    error = state._receive_failed(exc)
                    self._changes.wake_all()
                    if error is None:
                        gateway._data_received(b"")
                    else:
                        gateway._reading_failed(error)
                    return
                if isinstance(item, bytes):
                    state._got_bytes(item)
                    gateway._data_received(item)
                else:
                    state._control(item)
                    if state.ended.is_set():
                        self._changes.wake_all()
                        gateway._data_received(b"")
                        return
        except BaseException as exc:  # noqa: B036 - a background task reports everything it gets
            self._changes.wake_all()
            gateway._reading_failed(exc)

    def read_into(self, view: memoryview) -> int | None:
        return None  # bytes arrive as items (see _read)

    def write_some(self, buffers: list[Any]) -> int | None:
        if self._sent:
            sent, self._sent = self._sent, 0
            return sent
        if self._sending or self._closed:
            return None
        data = first_item(buffers)
        self._sending = True
        self.backend.spawn(lambda: self._write(data), "execwire-relay-write")
        return None

    async def _write(self, data: bytes) -> None:
        try:
            await self.state.channel.send(data)
        except (OSError, Error) as exc:  # ChannelClosedError, GatewayLostError
            self._sending = False
            error = GatewayLostError(f"{self.state.gateway}: gateway {self.state.via!r}, which it runs through, "
                                     f"cannot carry more: {exc}")
            error.__cause__ = exc
            if self._gateway is not None:
                self._gateway._writer.fail(error)
            return
        self._sent = len(data)
        self._sending = False
        self._report_written()

    def _report_written(self) -> None:
        callback, self._on_writable = self._on_writable, None
        if callback is not None:
            callback()

    def when_writable(self, callback: Callable[[], bool]) -> None:
        self._on_writable = callback

    def close_write(self) -> None:
        self.state.close_write()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.state.signal(SIGKILL)  # only if it still runs
            self.backend.spawn(self.state.channel.close, "execwire-relay-close")

    async def stop(self, timeout: float) -> None:
        """Like RelayProcess.stop: wait for the command's end, then SIGTERM, then SIGKILL, through the relay."""
        for signum, wait in ((SIGTERM, max(timeout, 0.0)), (SIGKILL, 1.0), (None, 5.0)):
            deadline = time.monotonic() + wait
            while not self.state.ended.is_set() and time.monotonic() < deadline:
                await self._changes.wait(deadline - time.monotonic())
            if self.state.ended.is_set() or signum is None:
                return
            self.state.signal(signum)


async def open_via(backend: Backend, spec: XSpec, gateway_id: str, middle: AsyncGateway) -> ChannelLink:
    """Start the far Python on ``middle``'s machine through the relay, as start_via does for threads."""
    launch = transports._launch(spec, through_via=True)
    assert launch is not None
    via = str(spec.via)
    try:
        channel = await middle.remote_exec(relay)
        await channel.send({"argv": launch.argv, "self_python": launch.self_python})
    except Error as exc:
        raise GatewayStartError(f"gateway {gateway_id!r} ({spec}): cannot start it via gateway {via!r}, "
                                f"which is not usable: {exc}") from exc
    from .gateway import AsyncGateway

    timeout = float(spec.timeout) if spec.timeout is not None else AsyncGateway.startup_timeout
    state = _RelayState(channel, via, f"gateway {gateway_id!r} ({spec})",  # type: ignore[arg-type]
                        f"{launch.what} on gateway {via!r}", timeout, StderrCollector())
    return ChannelLink(backend, state, bootstrap.boot_bytes(far_config(spec, gateway_id, DEBUG)))


async def open_installvia(backend: Backend, spec: XSpec, gateway_id: str, middle: AsyncGateway) -> Link:
    """socket=...//installvia=ID: start server.py inside ``middle`` (awaited), then connect as socket= does."""
    import secrets

    from .. import server
    from ..spec import parse_hostport
    from ..transports import socket as sockets
    from .gateway import AsyncGateway, connect_socket

    what = f"gateway {gateway_id!r} ({spec})"
    if spec.python is not None:
        raise ValueError(f"key 'python' does not apply to a socket gateway ({spec}): the server starts its own "
                         f"Python; run the server with the interpreter you want")
    timeout = float(spec.timeout) if spec.timeout is not None else AsyncGateway.startup_timeout
    bind = parse_hostport(spec.socket) if isinstance(spec.socket, str) else ("127.0.0.1", 0)
    token = secrets.token_hex(32)
    try:
        channel = await middle.remote_exec(server)
        await channel.send(sockets.server_request(bind, token))
        bound_host, port, control = await channel.receive(timeout)
    except (Error, EOFError) as exc:
        raise sockets.install_failed(exc, bind, middle.id, what) from exc
    host = sockets.reachable_host(str(bound_host), middle)  # type: ignore[arg-type]
    opener = sockets._direct_opener(host, int(port), token.encode("utf-8"), what)
    transport = sockets.SocketClientTransport(
        opener, bootstrap.boot_bytes(far_config(spec, gateway_id, DEBUG)), timeout, what)
    # the server lives as long as this gateway (or its middle gateway)
    transport.on_close(lambda: backend.spawn(control.close, f"execwire-server-{gateway_id}"))
    try:
        return await connect_socket(backend, transport, None)
    except BaseException:
        await control.close()
        raise
