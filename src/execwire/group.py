"""Group: a set of gateways made, addressed and terminated together."""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import shutdown, transports
from ._far.channel import Channel
from ._far.errors import GatewayStartError, TimeoutError
from .gateway import DEBUG, Gateway
from .multi import MultiChannel
from .roster import Roster, allocate_id, by_depth, exit_waves, find_middle
from .spec import EXECMODELS, XSpec


class Group(Roster[Gateway]):
    """Gateways with ids (``gw0``, ``gw1``, ... unless the spec says ``id=``).

    ``makegateway`` returns once the far side has answered and raises its
    start-up error itself; ``Group(specs)`` and ``makegateways(specs)`` start
    many side by side and raise for the ones that failed.
    """

    defaultspec = "popen"
    _gateway_class = Gateway  # the execnet package makes gateways of its own kind

    def __init__(self, xspecs: Iterable[str | XSpec] = (), execmodel: str = "thread") -> None:
        self._gateways: list[Gateway] = []
        self._lock = threading.Lock()
        self._next_auto_id = 0
        self.set_execmodel(execmodel)
        self._start_initial(list(xspecs))

    def _start_initial(self, specs: list[str | XSpec | None]) -> None:
        """Start the gateways ``Group(specs)`` names; if one fails, end those that started (nobody else can)."""
        if specs:
            try:
                self.makegateways(specs)
            except BaseException:
                self.terminate(timeout=1.0)
                raise

    def set_execmodel(self, execmodel: str, remote_execmodel: str | None = None) -> None:
        """Exec models for gateways made from now on: "thread" or "main_thread_only".

        On this side both mean the same (execwire's own threads read and run
        callbacks; your code runs in yours); the far side runs shipped code in
        threads or on its main thread. ``remote_execmodel`` defaults to "thread".
        """
        for name, model in (("execmodel", execmodel), ("remote_execmodel", remote_execmodel or "thread")):
            if model not in EXECMODELS:
                raise ValueError(f"{name} must be one of {', '.join(EXECMODELS)}, not {model!r}")
        self.execmodel = execmodel
        self.remote_execmodel = remote_execmodel or "thread"

    def __repr__(self) -> str:
        return f"<Group {[gw.id for gw in self._gateways]!r}>"

    def makegateway(self, spec: str | XSpec | None = None) -> Gateway:
        """Start a gateway for ``spec`` (default "popen"), add it to the group, return it once it has answered.

        A gateway that cannot start raises its GatewayStartError (HostNotFound,
        a missing Python, ...) here, and leaves the group.
        """
        return self.makegateways([spec])[0]

    def _start_gateway(self, spec: str | XSpec | None = None) -> Gateway:
        """Start a gateway and return it at once (start-up goes on in the background; its errors surface on
        the first call that needs the far side, or wait_ready()). makegateways and the command use it."""
        if spec is None:
            spec = self.defaultspec
        if not isinstance(spec, XSpec):
            spec = XSpec(spec)
        if spec.execmodel is None and self.remote_execmodel != "thread":
            spec = XSpec(f"{spec}//execmodel={self.remote_execmodel}")
        gateway_id = self._allocate_id(spec)
        transport, process = transports.start(spec, gateway_id, DEBUG, self._middle(spec, gateway_id))
        gateway = self._gateway_class(transport, spec, gateway_id, process, self)
        with self._lock:
            self._gateways.append(gateway)
        shutdown.track(self)  # interpreter exit ends it, if nothing did before
        if spec.imports == "on":  # forwarding on its way while the gateway starts; remote_exec waits for it
            from .imports import service

            service(gateway).start()
        return gateway

    def _middle(self, spec: XSpec, gateway_id: str) -> Gateway | None:
        """The gateway of this group that ``via=`` or ``installvia=`` names (transports get it, not the group)."""
        return find_middle(spec, gateway_id, self._gateways)

    def makegateways(self, specs: Iterable[str | XSpec | None]) -> list[Gateway]:
        """Start a gateway for every spec side by side; return them once all have answered.

        If any could not start, raise GatewayStartError naming each that failed
        (when several did, its ``failures`` maps their ids, or specs if they had
        none yet, to their errors); the ones that started stay in the group, the
        ones that failed leave it. Ctrl-C while they start ends them all.
        """
        started: list[Gateway] = []
        failures: list[tuple[str, GatewayStartError]] = []
        for spec in specs:
            parsed = spec if isinstance(spec, XSpec) else XSpec(spec if spec is not None else self.defaultspec)
            try:
                started.append(self._start_gateway(parsed))
            except GatewayStartError as exc:  # the command to run does not exist
                failures.append((str(parsed.id) if parsed.id is not None else str(parsed), exc))
        try:
            for gateway in started:
                try:
                    gateway.wait_ready(gateway.startup_timeout + 5.0)
                except (GatewayStartError, TimeoutError) as exc:
                    error = exc if isinstance(exc, GatewayStartError) else GatewayStartError(str(exc))
                    failures.append((gateway.id, error))
                    gateway.exit(timeout=1.0)
        except BaseException:  # Ctrl-C while waiting: nobody holds these gateways yet
            for gateway in started:
                gateway.exit(timeout=1.0)
            raise
        if failures:
            if len(failures) == 1:
                raise failures[0][1]
            lines = "; ".join(str(exc) for _, exc in failures)
            error = GatewayStartError(f"{len(failures)} gateways could not start: {lines}")
            error.failures = dict(failures)  # type: ignore[attr-defined]
            raise error from failures[0][1]
        return started

    def allocate_id(self, spec: XSpec) -> None:
        """Give ``spec`` an id now (``spec.id``) if it has none, as makegateway would (execnet name)."""
        if spec.id is None:
            spec.id = self._allocate_id(spec)

    def _allocate_id(self, spec: XSpec) -> str:
        with self._lock:
            gateway_id, self._next_auto_id = allocate_id(spec, self._gateways, self._next_auto_id)
            return gateway_id

    def _unregister(self, gateway: Gateway) -> None:
        with self._lock:
            if gateway in self._gateways:
                self._gateways.remove(gateway)

    def remote_exec(self, source: str | Callable[..., Any], **kwargs: Any) -> MultiChannel:
        """Run ``source`` on every gateway; the channels come back as one MultiChannel."""
        channels: list[Channel] = [gw.remote_exec(source, **kwargs) for gw in self]
        return MultiChannel(channels)

    def map(self, func: Callable[..., Any], *iterables: Iterable[Any], chunksize: int = 1,
            max_workers: int | None = None) -> list[Any]:
        """``list(map(func, items))`` with the calls spread over this group's gateways (an Executor's map).

        ``func`` must be importable (see Gateway.call); the gateways stay up.
        """
        from .executor import Executor

        executor = Executor(self, max_workers=max_workers)
        try:
            return list(executor.map(func, *iterables, chunksize=chunksize))
        finally:
            executor.shutdown()

    def terminate(self, timeout: float | None = None) -> None:
        """Exit every gateway; after ``timeout`` seconds the far processes are killed.

        Gateways that run through others (via=, installvia=) go first, side by
        side, then those they ran through: when it returns, nothing of the
        group runs any more.
        """
        atexit.unregister(self._cleanup_atexit)  # if the execnet package (or its user) registered it
        budget = 5.0 if timeout is None else max(timeout, 0.0)
        waves = self._waves()
        if shutdown.exiting():
            shutdown.end_without_threads([gw for wave in waves for gw in wave], budget)
            return
        deadline = time.monotonic() + budget
        for number, wave in enumerate(waves):
            remaining = max(deadline - time.monotonic(), 0.0)
            threads = [threading.Thread(target=gw.exit, args=(remaining,), daemon=True) for gw in wave]
            try:
                for thread in threads:
                    thread.start()
            except RuntimeError:  # the interpreter is exiting and refuses new threads
                started = [thread for thread in threads if thread.ident is not None]
                rest = [gw for gw, thread in zip(wave, threads, strict=True) if thread.ident is None]
                shutdown.end_without_threads(rest + [gw for later in waves[number + 1:] for gw in later], remaining)
                for thread in started:
                    thread.join(remaining + 3.0)
                return
            join_by = time.monotonic() + remaining + 3.0  # exit() itself escalates to SIGKILL
            for thread in threads:
                thread.join(max(join_by - time.monotonic(), 0.0))

    def _by_depth(self) -> list[tuple[int, Gateway]]:
        """Each gateway with the number of gateways of this group it runs through (via=, installvia=)."""
        return by_depth(self._gateways)

    def _waves(self) -> list[list[Gateway]]:
        """The gateways in the order they are ended: the deepest behind via= first."""
        return exit_waves(self._gateways)

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()

    def _cleanup_atexit(self) -> None:
        """What execnet registers with atexit for each group (the execnet package does too, and code
        written for execnet may). execwire's own groups register nothing (shutdown.py ends them all), and
        terminate() unregisters it, so a terminated group leaves no handler behind and can be freed.
        """
        self.terminate(timeout=1.0)


default_group = Group()


def makegateway(spec: str | XSpec | None = None) -> Gateway:
    """Start a gateway in the default group."""
    return default_group.makegateway(spec)


def set_execmodel(execmodel: str, remote_execmodel: str | None = None) -> None:
    """Set the exec models of the default group."""
    default_group.set_execmodel(execmodel, remote_execmodel)


def PopenGateway(python: str | None = None) -> Gateway:  # noqa: N802 - the seed's name
    """A local Python subprocess (``python`` names another interpreter)."""
    return makegateway("popen" + (f"//python={python}" if python else ""))


def SshGateway(host: str, python: str | None = None, ssh_config: str | None = None) -> Gateway:  # noqa: N802
    """A Python on an ssh host (``host`` may carry ssh options: "-p 2222 user@host")."""
    spec = f"ssh={host}" + (f"//python={python}" if python else "")
    spec += f"//ssh_config={ssh_config}" if ssh_config else ""
    return makegateway(spec)


class _SocketGatewayFactory:
    """``SocketGateway(host, port)`` reaches a running ``python -m execwire.server``;
    ``SocketGateway.new_remote(gw)`` first starts one inside gateway ``gw``."""

    def __call__(self, host: str, port: int, token_file: str | None = None) -> Gateway:
        """Connect to the server at ``host``:``port``; the token comes from ``token_file`` or $EXECWIRE_TOKEN."""
        from .server import format_address  # not at import: `python -m execwire.server` must load it first

        spec = f"socket={format_address(host, port)}"
        if token_file is not None:
            spec += f"//token_file={token_file}"
        return makegateway(spec)

    @staticmethod
    def new_remote(gateway: Gateway, hostport: tuple[str, int] | None = None) -> Gateway:
        """Start a server inside ``gateway`` on ``hostport`` (default 127.0.0.1, a free port) and connect to it.

        The server gets a fresh random token and stops when the new gateway or
        ``gateway`` ends. The new gateway joins ``gateway``'s group.
        """
        from .server import format_address

        host, port = hostport if hostport is not None else ("127.0.0.1", 0)
        group = gateway._group
        if not isinstance(group, Group) or gateway not in group:
            raise ValueError(f"gateway {gateway.id!r} is in no group (was it closed?); new_remote needs a live one")
        return group.makegateway(f"socket={format_address(host, port)}//installvia={gateway.id}")

    def __repr__(self) -> str:
        return "<SocketGateway>"


SocketGateway = _SocketGatewayFactory()  # noqa: N816 - the seed's name
