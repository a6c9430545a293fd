"""The async Gateway: the threaded BaseGateway's dispatch and the core, fed by the event loop.

The loop calls _on_readable() when the far side's descriptor is readable; it
reads once into the core's buffer and hands the events to BaseGateway._dispatch,
the same code the threaded API runs, whose calls land in the async Channel. No
thread reads and nobody waits in a thread: waiting tasks are woken by the
dispatch. Writing goes through an Outbox that never blocks the loop.
"""

from __future__ import annotations

import inspect
import signal
import time
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import _imports_far, remote_logging, transports, upstream
from .._far import frames, protocol
from .._far.errors import GatewayLostError, GatewayStartError
from .._far.gateway import BaseGateway, Tracer
from .._far.streams import Stream
from ..gateway import (
    DEBUG,
    RemoteStatus,
    RInfo,
    apply_spec_limits,
    describe_start_failure,
    exec_request,
    no_answer_error,
    state_name,
    write_output,
)
from ..spec import XSpec
from .backend import Backend, Wakeups
from .channel import Channel
from .links import FdLink, Link
from .outbox import Outbox

if TYPE_CHECKING:
    from .calls import AsyncCallStream
    from .group import AsyncGroup
    from .imports import AsyncImportService

OutputHandler = Callable[[Any, int, bytes], None]
_TERMINATE = frames.header(frames.TERMINATE, 0, 0)
_STATUS = frames.STATUS


class AsyncGateway(BaseGateway):
    """A connection to one far interpreter, for async code (made by makegateway)."""

    startup_timeout = 60.0
    _writer: Outbox  # type: ignore[assignment]

    def __init__(self, backend: Backend, spec: XSpec, gateway_id: str, group: AsyncGroup | None = None) -> None:
        super().__init__(Stream(), gateway_id, Tracer("near " + gateway_id, 2 if DEBUG else None))
        self._backend = backend
        self.spec = spec
        self._group = group
        self._writer = Outbox(backend)  # frames may be queued before the link is up
        self._link: Link | None = None
        self._changes = Wakeups(backend)  # the HELLO came, or reading ended
        self._ready = False
        self._start_problem: BaseException | None = None  # why it ended before the HELLO
        self._start_error: GatewayStartError | None = None
        self._rinfo_cache: RInfo | None = None
        self._exited = False
        self.output_handler: OutputHandler = write_output
        apply_spec_limits(self, spec)
        self._import_service: AsyncImportService | None = None  # made on first use (_async/imports.py)
        self._call_streams: list[AsyncCallStream] = []  # idle far call loops (_async/calls.py)
        # far log records and pdb requests (_async/upstream.py): taken before any byte is read
        self._upstream: Channel = self._protocol.channel_for(upstream.CHANNEL_ID)
        # the controller's root level as the far side last heard it (None: it does not follow)
        self._followed_level: int | None = remote_logging.followed_level(spec)

    def __repr__(self) -> str:
        return f"<async Gateway id={self.id!r} {self.state} spec={str(self.spec)!r}>"

    @property
    def state(self) -> str:
        """'starting', 'up', 'failed' or 'closed'."""
        return state_name(self._exited, self._start_error is not None or self._start_problem is not None,
                          self._ready, self._connection_error is not None)

    def _make_channel(self, core: protocol.Protocol, channel_id: int) -> Channel:
        return Channel(self, core, channel_id)

    @property
    def process(self) -> Any:
        """The local process of this gateway (python, ssh, ...), or None (socket, via)."""
        return self._link.process if self._link is not None else None

    # -- reading (the loop calls these) ------------------------------------------------
    def _attach(self, link: Link) -> None:
        self._link = link
        if link.boot is not None:
            self._writer.send_frame(link.boot)  # before anything else
        self._writer.attach(link)
        link.start(self)

    def _on_readable(self) -> bool:
        """Read once and dispatch what came; False once reading is over."""
        core = self._protocol
        link = self._link
        assert link is not None
        try:
            view = core.read_buffer()
            count = link.read_into(view)
            del view  # the core may resize what it lent us
            if count is None:
                return True
            if not count and isinstance(link, FdLink) and link._watched is not None:
                return self._launcher_ended(link)
            core.bytes_read(count)
            self._dispatch_parsed()
        except BaseException as exc:
            self._reading_failed(exc)
            return False
        return not self._reading_done

    def _poll_briefly(self) -> bool:
        """Wait a few tens of microseconds for the far side's answer, and read it if it came."""
        link = self._link
        if link is None or self._reading_done or not link.poll_briefly():
            return False
        self._on_readable()  # the loop's watch sees nothing left, or the rest
        return True

    def _data_received(self, data: bytes) -> None:
        """Bytes from a link that gets bytes rather than a descriptor (via); b"" at the end."""
        if self._reading_done:
            return
        try:
            self._protocol.receive_data(data)
            self._dispatch_parsed()
        except BaseException as exc:
            self._reading_failed(exc)

    def _dispatch_parsed(self) -> None:
        """Hand every complete frame read so far to the shared dispatch."""
        core = self._protocol
        self._dispatch(core.events())
        while core.has_frame() and not self._reading_done:
            self._dispatch(core.events())

    def _launcher_ended(self, link: FdLink) -> bool:
        """The stream of a launcher (ssh, sudo) ended: find out off the loop whether it failed."""

        async def explain() -> None:
            try:
                reason = await self._backend.run_in_thread(link.launcher_failure)
            except BaseException as exc:  # noqa: B036 - a background task reports everything it gets
                self._reading_failed(exc)
                return
            if reason:
                self._reading_failed(GatewayLostError(reason))
            else:
                self._data_received(b"")

        self._backend.spawn(explain, f"execwire-launcher-{self.id}")
        return False

    def _special_event(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == protocol.OUTPUT:
            try:
                self.output_handler(self, event[1], event[2])
            finally:
                credit = self._protocol.output_handled(len(event[2]))
                if credit is not None:
                    try:
                        self._writer.send_frame(credit)
                    except GatewayLostError:
                        pass
        elif kind == protocol.HELLO:
            hello = event[1]
            if "error" in hello:
                raise GatewayStartError(f"gateway {self.id!r} ({self.spec}) could not start: {hello['error']}")
            self._rinfo_cache = RInfo(hello["rinfo"])
            upstream.check_hello(hello.get("upstream"))
            if hello.get("upstream") is None:
                self._followed_level = None  # nobody there to tell levels to
            else:
                from . import upstream as async_upstream

                channel = self._upstream
                self._backend.spawn(lambda: async_upstream.serve(self, channel), f"execwire-upstream-{self.id}")
            self._ready = True
            self._changes.wake_all()
        else:
            super()._special_event(event)

    def _connection_ended(self, error: Exception | None) -> None:  # type: ignore[override]
        if not self._ready and self._start_problem is None:
            self._start_problem = error if error is not None else GatewayLostError(
                f"gateway {self.id}: the far side ended before it answered")
        super()._connection_ended(error)
        lost = self._connection_error
        self._writer.fail(lost if isinstance(lost, GatewayLostError) else GatewayLostError(str(lost)))
        self._changes.wake_all()

    # -- start-up ------------------------------------------------------------------------
    async def _wait_ready(self) -> None:
        """Until the far side's HELLO; GatewayStartError (and nothing left running) if it failed."""
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready and self._start_problem is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._start_error = no_answer_error(f"gateway {self.id!r}", self.spec, self.startup_timeout)
                break
            await self._changes.wait(remaining)
        if self._start_error is None and not self._ready:
            self._start_error = await self._backend.run_in_thread(
                describe_start_failure, f"gateway {self.id!r}", self.spec, self.process, self._start_problem)
        if self._start_error is not None:
            self._abandon()
            raise self._start_error

    def _abandon(self) -> None:
        """Kill what runs and release the link at once, without waiting (a failed or cancelled start)."""
        self._exited = True
        process = self.process
        if process is not None:
            process._signal_group(signal.SIGKILL)
            process.wait(0)
        if self._link is not None:
            self._link.close()
        if not self._reading_done:
            self._reading_failed(None if self._expect_end else GatewayLostError(f"gateway {self.id} was abandoned"))
        if self._group is not None:
            self._group._unregister(self)

    # -- the public face ---------------------------------------------------------------
    async def remote_exec(self, source: str | types.ModuleType | Callable[..., Any], **kwargs: Any) -> Channel:
        """Run ``source`` on the far side; return the channel its code sees as ``channel``.

        ``source`` is code, a module, a pure function whose first parameter is the
        channel, or an ``async def`` function (it runs in the far side's event loop).
        """
        if inspect.iscoroutine(source):
            name = getattr(source, "__name__", "?")
            source.close()
            raise TypeError(f"remote_exec takes the function, not a coroutine: pass {name}, not {name}(...)")
        from .upstream import send_root_level

        send_root_level(self)  # far logging that follows the controller's level has it first
        if self.spec.imports == "on" and source is not _imports_far:
            from .imports import service  # forwarding in place before the code runs: one round trip, once

            await service(self).wait_ready(self.startup_timeout)
        forwarding = self._import_service
        # the modules the code imports travel with the first one asked for
        request = exec_request(source, kwargs, Channel, forwarding.hint if forwarding is not None else None)
        size = protocol.wire_size(request)
        if size > frames.MAX_PAYLOAD:
            raise ValueError(f"remote_exec request of {size} bytes exceeds the limit of {frames.MAX_PAYLOAD} bytes")
        channel = self.newchannel()
        try:
            await self._writer.drained(self._writer.send(frames.EXEC, channel.id, request, size))
        except GatewayLostError:
            self._protocol._forget(channel)
            raise
        return channel

    # -- calls by reference and import forwarding (_async/calls.py, _async/imports.py) --------
    async def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run the importable function ``func(*args, **kwargs)`` on the far side and return its result.

        The rules of the threaded Gateway.call: a module-level function, staticmethod
        or classmethod (or one of the main script), its module from the far
        installation or by import forwarding; a far exception raises RemoteError with
        the far traceback. Calls awaited side by side run side by side on the far side.
        """
        from .calls import call

        return await call(self, func, args, kwargs)

    async def forward_imports(self, allow: str | Iterable[str] | None = None,
                              deny: str | Iterable[str] | None = None, timeout: float | None = None) -> None:
        """Serve the far side the pure-Python modules it lacks, from here, from now on.

        ``allow`` limits it to those modules and their submodules, ``deny``
        excludes some (names, or a comma-separated string); either left None is
        what the spec keys ``imports_allow`` and ``imports_deny`` say. Returns once
        the far finder is in place.
        """
        from .imports import forward_imports

        await forward_imports(self, allow, deny, timeout)

    def newchannel(self) -> Channel:  # type: ignore[override]
        """A new channel, to be sent to the other side inside a message."""
        if self._start_error is not None:
            raise self._start_error
        if self._exited and self._connection_error is None:
            raise GatewayLostError(f"gateway {self.id} was closed")
        channel: Channel = super().newchannel()  # type: ignore[assignment]
        return channel

    async def remote_info(self, update: bool = False) -> RInfo:
        """Facts about the far interpreter (cached from start-up; ``update`` asks again)."""
        if update or self._rinfo_cache is None:
            self._rinfo_cache = RInfo((await self._ask_status())["rinfo"])
        return self._rinfo_cache

    async def remote_status(self) -> RemoteStatus:
        """How many channels are open and how much code runs on the far side."""
        return RemoteStatus(await self._ask_status())

    async def _ask_status(self) -> dict[str, Any]:
        channel = self.newchannel()
        await self._writer.drained(self._writer.send(_STATUS, channel.id, [b""], 0))
        status: dict[str, Any] = await channel.receive(timeout=self.startup_timeout)
        return status

    async def exit(self, timeout: float = 5.0) -> None:
        """Stop the far side and release everything within about ``timeout`` seconds (again: nothing).

        Asks the far side to stop and closes our end of its stream, waits; then
        SIGTERM, then SIGKILL. Cancelling it kills the far process at once.
        """
        if self._exited:
            return
        self._exited = True
        self._expect_end = True
        deadline = time.monotonic() + timeout
        try:
            try:
                self._writer.send_frame(_TERMINATE)
            except GatewayLostError:
                pass
            self._writer.close_when_empty()
            link = self._link
            if link is not None and link.process is not None:
                await link.stop(max(deadline - time.monotonic(), 0.0))
                await self._wait_ended(1.0)  # read what it said last
            else:
                await self._wait_ended(max(deadline - time.monotonic(), 0.0))
                if link is not None:
                    await link.stop(0.0)
        finally:
            self._abandon()  # kills only what is still there

    async def _wait_ended(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._reading_done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self._changes.wait(remaining)

    def __enter__(self) -> None:
        raise TypeError(f"gateway {self.id!r} is an async gateway: use `async with`")

    def __exit__(self, *exc_info: object) -> None:
        """Never reached (see __enter__)."""

    async def __aenter__(self) -> AsyncGateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.exit()


async def open_link(backend: Backend, spec: XSpec, gateway_id: str, middle: AsyncGateway | None) -> Link:
    """Start the far side as the threaded transports do, and take over its descriptors."""
    if spec.type == "socket" and spec.installvia is not None:
        from .via import open_installvia

        assert middle is not None  # the group found it
        return await open_installvia(backend, spec, gateway_id, middle)
    if spec.via is not None and spec.type != "socket":
        from .via import open_via

        assert middle is not None  # the group found it
        return await open_via(backend, spec, gateway_id, middle)
    stream, process = transports.start(spec, gateway_id, DEBUG, None)
    if spec.type == "socket":
        return await connect_socket(backend, stream, process)
    return FdLink(backend, stream, process)


async def connect_socket(backend: Backend, stream: Stream, process: Any) -> Link:
    """Connect and authenticate a socket transport: blocking code (SPAKE2, TLS), so a worker thread runs it."""
    from ..transports.socket import SocketClientTransport

    assert isinstance(stream, SocketClientTransport)
    try:
        await backend.run_in_thread(stream._connect)
    except BaseException:
        stream.close()
        raise
    stream._answer_deadline = None  # our own start-up timeout applies
    return FdLink(backend, stream, process)


async def makegateway(backend: Backend, spec: str | XSpec | None = None, group: AsyncGroup | None = None,
                      gateway_id: str | None = None, middle: AsyncGateway | None = None) -> AsyncGateway:
    """Start a gateway and wait until the far side answered (GatewayStartError if it cannot)."""
    if spec is None:
        spec = "popen"
    if not isinstance(spec, XSpec):
        spec = XSpec(spec)
    if gateway_id is None:
        gateway_id = str(spec.id) if spec.id is not None else "gw0"
    gateway = AsyncGateway(backend, spec, gateway_id, group)
    gateway._attach(await open_link(backend, spec, gateway_id, middle))
    try:
        await gateway._wait_ready()
        if spec.imports == "on":
            from .imports import service

            await service(gateway).wait_ready(gateway.startup_timeout)
    except BaseException:
        gateway._abandon()
        raise
    return gateway
