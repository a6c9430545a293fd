"""The near-side Gateway: ship code, query the far side, shut it down."""

from __future__ import annotations

import functools
import logging
import os
import sys
import textwrap
import threading
import time
import types
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from . import _imports_far, shutdown, upstream
from ._far import frames, protocol, wire
from ._far.channel import Channel
from ._far.errors import GatewayLostError, GatewayStartError, ProtocolError, TimeoutError
from ._far.gateway import BaseGateway, Tracer
from ._far.streams import Stream
from .process import Process

if TYPE_CHECKING:
    from .spec import XSpec

DEBUG = bool(os.environ.get("EXECWIRE_DEBUG"))
logger = logging.getLogger("execwire")
OutputHandler = Callable[["Gateway", int, bytes], None]


class GatewayOwner(Protocol):
    """What a gateway needs of the Group that made it: to be let go of when it exits."""

    def _unregister(self, gateway: Gateway) -> None: ...


@functools.lru_cache(maxsize=256)
def _dedent(source: str) -> str:
    """textwrap.dedent, remembered: the same code is often shipped again and again."""
    return textwrap.dedent(source)


class RInfo:
    """Facts about the far interpreter: executable, version_info, platform, cwd, pid."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.__dict__.update(info)
        self.version_info = tuple(info.get("version_info", ()))

    def __repr__(self) -> str:
        return f"<RInfo {self.__dict__!r}>"


class RemoteStatus:
    """What the far side is doing: numexecuting, numchannels, execqsize."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.numexecuting: int = info["numexecuting"]
        self.numchannels: int = info["numchannels"]
        self.execqsize: int = info["execqsize"]

    def __repr__(self) -> str:
        return f"<RemoteStatus {self.__dict__!r}>"


def write_output(gateway: Gateway, stream: int, data: bytes) -> None:
    """Default output handler: far stdout to our stdout, far stderr to our stderr."""
    target = sys.stdout if stream == 1 else sys.stderr
    buffer = getattr(target, "buffer", None)
    try:
        if buffer is not None:
            target.flush()
            buffer.write(data)
            buffer.flush()
        else:
            target.write(data.decode("utf-8", "replace"))
            target.flush()
    except (OSError, ValueError):
        pass  # our own stream is closed; nothing better to do


ExecRequest = tuple[str, str, "str | None", dict[str, Any]]  # source text, filename, function name, kwargs


def exec_request(source: str | types.ModuleType | Callable[..., Any], kwargs: dict[str, Any],
                 channel_type: type, hint: Callable[[str], object] | None = None,
                 string_filename: str = "<remote_exec>") -> list[Any]:
    """The EXEC frame's payload for ``remote_exec(source, **kwargs)`` (the parts of its encoding).

    Channels inside ``kwargs`` are instances of ``channel_type``; ``hint`` gets the
    source text (import forwarding looks at it); tracebacks name a string ``string_filename``.
    Raises TypeError or ValueError naming what cannot be shipped.
    """
    return encode_exec(shipped(source, kwargs, hint, string_filename), channel_type)


def shipped(source: str | types.ModuleType | Callable[..., Any], kwargs: dict[str, Any],
            hint: Callable[[str], object] | None, string_filename: str) -> ExecRequest:
    """What remote_exec ships for ``source`` (see exec_request), before it is encoded."""
    funcname = None
    if isinstance(source, types.ModuleType):
        import inspect

        filename = source.__file__ or f"<module {source.__name__}>"
        text = inspect.getsource(source)
    elif isinstance(source, str):
        text = _dedent(source)
        filename = string_filename
    elif callable(source):
        from .source import function_source  # inspect, ast and dis: only when a function is shipped

        text, funcname, filename = function_source(source)
    else:
        raise TypeError(f"remote_exec takes a string, a module or a function, not {type(source).__name__}")
    if kwargs and funcname is None:
        raise TypeError("keyword arguments to remote_exec are only for functions")
    if hint is not None:
        hint(text)
    return text, filename, funcname, kwargs


def encode_exec(request: ExecRequest, channel_type: type) -> list[Any]:
    try:
        return wire.encode(request, channel_type)
    except wire.DumpError as exc:
        raise wire.DumpError(f"remote_exec keyword arguments: {exc}") from None


SHARED_SOURCE = 2048  # characters of shipped source from which gateways behind one middle share it


def shared_exec_pieces(writer: Any, request: ExecRequest) -> list[Any] | None:
    """The EXEC payload with its source by reference, if it is long and the gateway runs through a relay
    (gateways behind one middle then share it); None: send it as usual."""
    text, _, _, kwargs = request
    if len(text) < SHARED_SOURCE or kwargs:
        return None
    from .transports import middle_cache

    if not middle_cache.writes_by_reference(writer):
        return None
    return middle_cache.encode_pieces((middle_cache.Blob.of(text), *request[1:]))


def apply_spec_limits(gateway: Any, spec: XSpec) -> None:
    """What a spec bounds, on the threaded and the async gateway alike: start-up time and channel table."""
    if spec.timeout is not None:
        gateway.startup_timeout = float(spec.timeout)
    if spec.max_channels is not None:
        gateway._protocol.max_channels = int(spec.max_channels)


def state_name(exited: bool, failed: bool, ready: bool, lost: bool) -> str:
    """The state a gateway of either face reports: 'starting', 'up', 'failed' or 'closed'."""
    if exited:
        return "closed"
    if failed:
        return "failed"
    if ready:
        return "closed" if lost else "up"
    return "starting"


def no_answer_error(what: str, spec: XSpec, timeout: float) -> GatewayStartError:
    """The far Python said nothing within the start-up timeout."""
    return GatewayStartError(f"{what} ({spec}): no answer from the far Python within {timeout:g} seconds; "
                             "set //timeout=SECONDS in the spec to wait longer")


def describe_start_failure(what: str, spec: XSpec, process: Process | None,
                           error: Exception | None) -> GatewayStartError:
    """Why a gateway (``what``: "gateway 'gw0'") ended before it answered: a GatewayStartError.

    It may wait a few seconds for the process and its stderr: call it off an event loop.
    """
    cause = error.__cause__ if error is not None and error.__cause__ is not None else error
    if isinstance(cause, GatewayStartError):
        return cause
    if isinstance(cause, ProtocolError) and "execwire needs Python" in str(cause):
        message = f"{what}: {cause}"
    else:
        explained = (process.explain_start_failure(f"{what} ({spec})")
                     if process is not None else None)
        if explained is not None:  # the launcher (ssh, sudo, ...) said why on its stderr
            explained.__cause__ = cause
            return explained
        detail = ""
        if process is not None:
            code = process.wait(timeout=0.5)
            if code is None:  # alive but talking nonsense: it is of no use
                process.kill()
            detail = f" (exit code {code})" if code is not None else ""
            if code == 127:
                detail += "; 127 usually means a command was not found: check python= and PATH"
        message = (f"{what} ({spec}): the far Python ended before it answered"
                   f"{detail}: {cause or 'no output'}")
    start_error = GatewayStartError(message)
    start_error.__cause__ = cause
    return start_error


class Gateway(BaseGateway):
    """A connection to one far interpreter.

    It is usable as soon as it is made: start-up runs in the background, and the
    first call that needs an answer raises GatewayStartError if it failed.
    """

    startup_timeout = 60.0
    _string_filename = "<remote_exec>"  # what tracebacks name shipped strings (the execnet package: execnet's)

    def __init__(self, stream: Stream, spec: XSpec, gateway_id: str,
                 process: Process | None = None, group: GatewayOwner | None = None) -> None:
        super().__init__(stream, gateway_id, Tracer("near " + gateway_id, 2 if DEBUG else None))
        self.spec = spec
        self._process = process
        self._group = group
        self._ready = threading.Event()
        self._rinfo_cache: RInfo | None = None
        self._start_error: Exception | None = None
        self._exit_lock = threading.Lock()
        self._exited = False
        self.output_handler: OutputHandler = write_output
        apply_spec_limits(self, spec)
        upstream.attach(self)  # far log records and pdb sessions (upstream.py): ready before any byte is read
        self._reader = threading.Thread(target=self._reader_main, name=f"execwire-reader-{gateway_id}",
                                        daemon=True)
        self._reader.start()

    def __repr__(self) -> str:
        return f"<Gateway id={self.id!r} {self.state} spec={str(self.spec)!r}>"

    @property
    def state(self) -> str:
        """'starting', 'up', 'failed' or 'closed'."""
        return state_name(self._exited, self._start_error is not None, self._ready.is_set(),
                          self._connection_error is not None)

    # -- start-up -------------------------------------------------------------
    def _reader_main(self) -> None:
        try:
            self._wait_first_bytes()
        except GatewayStartError as exc:
            self._start_failed(exc)
            return
        self._receive_loop()
        if not self._ready.is_set():
            self._ready.set()

    def _wait_first_bytes(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready.is_set():  # a receiver may read the HELLO before we look
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise no_answer_error(f"gateway {self.id!r}", self.spec, self.startup_timeout)
            if self._waiter.readable(min(remaining, 0.05)):
                return

    def _start_failed(self, error: GatewayStartError) -> None:
        self._start_error = error
        self._trace("start-up failed:", error)
        if self._process is not None:
            self._process.kill()
        self._expect_end = False
        self._connection_ended(error)
        self._ready.set()

    def _connection_ended(self, error: Exception | None) -> None:  # type: ignore[override]
        if not self._ready.is_set() and self._start_error is None:
            self._start_error = self._describe_start_failure(error)
            error = self._start_error
        super()._connection_ended(error)
        self._ready.set()

    def _describe_start_failure(self, error: Exception | None) -> GatewayStartError:
        return describe_start_failure(f"gateway {self.id!r}", self.spec, self._process, error)

    def _special_event(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == protocol.OUTPUT:
            # on the callback thread: a slow or failing handler must not hold up reading
            self._schedule_callback(None, self._emit_output, (event[1], event[2]), 0)
        elif kind == protocol.HELLO:
            hello = event[1]
            if "error" in hello:
                raise GatewayStartError(f"gateway {self.id!r} ({self.spec}) could not start: {hello['error']}")
            self._rinfo_cache = RInfo(hello["rinfo"])
            upstream.check_hello(hello.get("upstream"), self)
            self._ready.set()
        else:
            super()._special_event(event)

    def _emit_output(self, output: tuple[int, bytes]) -> None:
        """Hand far output to the handler; only then may the far side send more (flow control)."""
        try:
            self.output_handler(self, output[0], output[1])
        finally:
            credit = self._protocol.output_handled(len(output[1]))
            if credit is not None:
                try:
                    self._send_frame(credit)
                except GatewayLostError:
                    pass

    def _report_callback_error(self, channel: Channel, text: str) -> None:
        logger.error("the callback of channel %d on gateway %s failed; the channel is closed:\n%s",
                     channel.id, self.id, text.rstrip())

    def wait_ready(self, timeout: float | None = None) -> Gateway:
        """Block until the far side has answered; raise GatewayStartError if it failed."""
        if not self._ready.wait(timeout):
            raise TimeoutError(f"gateway {self.id!r} did not finish starting within {timeout!r} seconds")
        if self._start_error is not None:
            raise self._start_error
        return self

    # -- the public face ------------------------------------------------------
    def remote_exec(self, source: str | types.ModuleType | Callable[..., Any], **kwargs: Any) -> Channel:
        """Run ``source`` on the far side; return the channel its code sees as ``channel``.

        ``source`` is a string of code, a module (its source is shipped) or a pure
        function whose first parameter is the channel; ``kwargs`` go to that function.
        """
        upstream.send_root_level(self)  # far logging that follows the controller's level has it first
        if self.spec.imports == "on" and source is not _imports_far:
            from . import imports  # forwarding in place before the code runs: one round trip, once

            imports.service(self).wait_ready(self.startup_timeout)
        forwarding = getattr(self, "_import_service", None)
        # the modules the code imports travel with the first one asked for
        request = shipped(source, kwargs, forwarding.hint if forwarding is not None else None,
                          self._string_filename)
        pieces = shared_exec_pieces(self._writer, request)
        parts = encode_exec(request, Channel) if pieces is None else []  # (a DumpError before a channel is made)
        channel = self.newchannel()
        try:
            if pieces is None:
                self._send(frames.EXEC, channel.id, parts)
            else:
                from .transports import middle_cache

                middle_cache.write_pieces(self._writer, frames.EXEC, channel.id, pieces)
        except GatewayLostError:
            self._protocol._forget(channel)
            if not self._ready.is_set() or self._start_error is not None:  # died while starting: say why,
                self.wait_ready(self.startup_timeout)  # not just "broken pipe" (also once that is known)
            raise
        return channel

    # -- calls by reference and import forwarding (calls.py, imports.py) ----
    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run the importable function ``func(*args, **kwargs)`` on the far side and return its result.

        Its module comes from the far installation or by import forwarding; a far
        exception raises RemoteError with the far traceback. Between calls up to four
        far call loops stay open for the next ones (remote_status() counts them).
        """
        from . import calls

        return calls.call(self, func, args, kwargs)

    def call_async(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Like call(), but return at once with a concurrent.futures.Future of the result.

        The future's done-callbacks run on this gateway's callback thread, after
        the callbacks of its channels: keep them short.
        """
        from . import calls

        return calls.call_async(self, func, args, kwargs)

    def forward_imports(self, allow: str | Iterable[str] | None = None, deny: str | Iterable[str] | None = None,
                        timeout: float | None = None) -> None:
        """Serve the far side the pure-Python modules it lacks, from here, from now on.

        ``allow`` (module names, or a comma-separated string) limits it to those
        modules and their submodules; ``deny`` excludes some; either left None is
        what the spec keys ``imports_allow`` and ``imports_deny`` say. Waits (one
        round trip) until the far finder is in place.
        """
        from . import imports

        imports.forward_imports(self, allow, deny, timeout)

    def newchannel(self) -> Channel:
        if self._start_error is not None:
            raise self._start_error
        return super().newchannel()

    def rsync(self, source: str | os.PathLike[str], dest: str | os.PathLike[str], delete: bool = False,
              progress: Callable[[Any], object] | None = None) -> None:
        """Copy the directory ``source`` to ``dest`` on the far side (relative to its cwd), sending what differs.

        ``delete`` removes there what ``source`` lacks; ``progress`` gets an
        execwire.rsync.Progress as files go. See execwire.rsync.RSync for more.
        """
        from .rsync import RSync

        sync = RSync(source, progress=progress)
        sync.add_target(self, dest, delete=delete)
        sync.send()

    def _rinfo(self, update: bool = False) -> RInfo:
        """Facts about the far interpreter (cached; ``update`` asks again)."""
        if update or self._rinfo_cache is None:
            self.wait_ready(self.startup_timeout)
            if update:
                self._rinfo_cache = RInfo(self._ask_status()["rinfo"])
        assert self._rinfo_cache is not None
        return self._rinfo_cache

    remote_info = _rinfo

    def remote_status(self) -> RemoteStatus:
        """How many channels are open and how much code runs on the far side."""
        return RemoteStatus(self._ask_status())

    def _ask_status(self) -> dict[str, Any]:
        channel = self.newchannel()
        self._send(frames.STATUS, channel.id)
        status: dict[str, Any] = channel.receive(timeout=self.startup_timeout)
        return status

    def hasreceiver(self) -> bool:
        """True while frames from the far side are being read."""
        return self._reader.is_alive()

    def exit(self, timeout: float = 5.0) -> None:
        """Stop the far side and release everything; waits at most about ``timeout`` seconds.

        Asks the far side to stop, closes the pipe, waits; then SIGTERM, then
        SIGKILL. Calling it again does nothing.
        """
        with self._exit_lock:
            if self._exited:
                return
            self._exited = True
        self._trace("exit requested")
        self._expect_end = True
        deadline = time.monotonic() + timeout
        # telling the far side may block on a far side that stopped reading: bounded by the timeout
        if not shutdown.run_bounded(self._say_goodbye, f"execwire-exit-{self.id}", timeout):
            shutdown.hang_up(self)  # interpreter exit: no thread may start; hanging up never waits
        if self._process is not None:
            self._process.stop(max(deadline - time.monotonic(), 0.0))  # then SIGTERM, then SIGKILL
            self._wait_flag(self._ended, 1.0)  # read what it said last, as a receiver would
        self._reader.join(max(deadline - time.monotonic(), 0.0) if self._process is None else 1.0)
        self._stream.close()
        if self._reader.is_alive():
            self._reading_failed(None)  # wake every waiter even if the reader is stuck
        callbacks = self._callback_thread
        if callbacks is not None and callbacks is not threading.current_thread():
            callbacks.join(1.0)  # output still on its way is shown before exit() returns
        if self._group is not None:
            self._group._unregister(self)

    def _say_goodbye(self) -> None:
        try:
            self._send(frames.TERMINATE, 0)
        except GatewayLostError:
            pass
        self._stream.close_write()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.exit()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the reader has stopped (execnet name)."""
        self._reader.join(timeout)
