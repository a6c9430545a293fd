"""execnet.multi: Group and MultiChannel with execnet's manners, on execwire's.

``makegateway`` returns once the far side has answered and raises its start-up
error itself (HostNotFound, a missing Python, ...), as execnet's and execwire's
do; it also gives the far side execnet's manners first (see _compat).
``Group(specs)`` and ``makegateways(specs)`` start many gateways side by side.
"""

from __future__ import annotations

import atexit
import queue
import socket
from collections.abc import Callable, Iterable
from typing import Any

import execwire
from execwire._far.channel import Channel as ExecwireChannel

from . import _compat
from ._compat import NO_ENDMARKER_WANTED, ExecModel, get_execmodel
from .gateway import Gateway
from .xspec import XSpec, to_execwire

__all__ = ["Group", "MultiChannel", "default_group", "makegateway", "set_execmodel"]

SETUP_TIMEOUT = 60.0  # for the far side to take on execnet's manners, once it has answered


class MultiChannel(execwire.MultiChannel):
    """Several channels used as one; ``make_receive_queue`` gives the same queue every time."""

    _queue: queue.Queue[tuple[ExecwireChannel, Any]]

    def make_receive_queue(self, endmarker: object = NO_ENDMARKER_WANTED) -> queue.Queue[tuple[ExecwireChannel, Any]]:
        if not hasattr(self, "_queue"):
            self._queue = queue.Queue()
            for channel in self:
                def put(item: Any, channel: ExecwireChannel = channel) -> None:
                    self._queue.put((channel, item))
                channel.setcallback(put, endmarker)
        return self._queue

    def waitclose(self, timeout: float | None = None) -> None:
        """Wait for every channel to close; raise the first remote error once all are done."""
        if timeout is not None:
            super().waitclose(timeout)
            return
        first: BaseException | None = None
        for channel in self:
            try:
                channel.waitclose()
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def receive_each(self, withchannel: bool = False) -> list[Any]:
        if hasattr(self, "_queue"):
            raise OSError("receive_each() after make_receive_queue(): the channels have callbacks")
        return super().receive_each(withchannel)


class Group(execwire.Group):
    """Gateways made, addressed and terminated together."""

    _gateway_class = Gateway
    execmodel: ExecModel  # type: ignore[assignment]
    remote_execmodel: ExecModel  # type: ignore[assignment]

    def __init__(self, xspecs: Iterable[XSpec | str | None] = (), execmodel: str = "thread") -> None:
        super().__init__((), execmodel)
        atexit.register(self._cleanup_atexit)  # at once, as execnet does (execwire waits for a first gateway)
        self._atexit_registered = True
        self._start_initial(list(xspecs))

    def set_execmodel(self, execmodel: str, remote_execmodel: str | None = None) -> None:
        """Exec models for this side and the far sides; only before the first gateway is made."""
        if len(self):
            raise ValueError("can not set execution models if gateways have been created already")
        near = get_execmodel(execmodel)
        far = get_execmodel(remote_execmodel if remote_execmodel is not None else execmodel)
        super().set_execmodel(near.backend, far.backend)
        self.execmodel = near
        self.remote_execmodel = far

    def makegateway(self, spec: XSpec | str | None = None) -> Gateway:  # type: ignore[override]
        """Start a gateway and return it once the far side has answered; raise if it cannot start."""
        return self.makegateways([spec])[0]

    def makegateways(self, specs: Iterable[XSpec | str | None]) -> list[Gateway]:  # type: ignore[override]
        """Start gateways side by side; return them once all answered, or raise for the ones that failed."""
        started: list[tuple[Gateway, XSpec]] = []
        failures: list[Exception] = []
        try:
            for raw in specs:
                spec = self._xspec(raw)
                try:
                    strict = to_execwire(spec)
                    if strict.logging is None:  # as execnet: far log records stay on the far side
                        strict = execwire.XSpec(f"{strict}//logging=off")
                    _reachable_before_token(strict)
                    gateway = self._start_gateway(strict)
                except execwire.GatewayStartError as exc:
                    failures.append(exc)
                    continue
                assert isinstance(gateway, Gateway)
                started.append((gateway, spec))
        finally:
            gateways = []
            for gateway, spec in started:
                try:
                    gateways.append(self._finish_start(gateway, spec))
                except Exception as exc:  # noqa: PERF203
                    failures.append(exc)
        if failures:
            if len(failures) == 1:
                raise failures[0]
            error = execwire.GatewayStartError(f"{len(failures)} gateways could not start: "
                                               + "; ".join(str(exc) for exc in failures))
            raise error from failures[0]
        return gateways

    def _xspec(self, spec: XSpec | str | None) -> XSpec:
        if not spec:
            spec = self.defaultspec
        if not isinstance(spec, XSpec):
            spec = XSpec(str(spec))
        self.allocate_id(spec)
        if spec.execmodel is None:
            spec.execmodel = self.remote_execmodel.backend
        return spec

    def _finish_start(self, gateway: Gateway, spec: XSpec) -> Gateway:
        """Wait for the far side, then give it execnet's manners (see _compat.install_far)."""
        try:
            gateway.wait_ready(gateway.startup_timeout + 5.0)
            gateway.spec = spec
            gateway.remote_exec(_compat).waitclose(SETUP_TIMEOUT)
        except BaseException:
            gateway.exit(timeout=1.0)
            raise
        return gateway

    def allocate_id(self, spec: XSpec) -> None:  # type: ignore[override]
        """Give ``spec`` the id makegateway would give it, now (execnet name; may be called again)."""
        super().allocate_id(spec)

    def remote_exec(self, source: str | Callable[..., Any], **kwargs: Any) -> MultiChannel:
        return MultiChannel([gw.remote_exec(source, **kwargs) for gw in self])

    def __getitem__(self, key: int | str | execwire.Gateway) -> Gateway:
        gateway = super().__getitem__(key)
        assert isinstance(gateway, Gateway)
        return gateway


def _reachable_before_token(spec: execwire.XSpec) -> None:
    """For a socket spec without a token, say HostNotFound if nothing listens, as execnet would (it has no tokens)."""
    if not isinstance(spec.socket, str) or spec.installvia is not None:
        return
    from execwire.spec import parse_hostport
    from execwire.transports.socket import read_token

    try:
        read_token(spec, f"gateway {spec.id!r} ({spec})")
    except execwire.GatewayStartError:
        host, port = parse_hostport(spec.socket)
        try:
            socket.create_connection((host, port), timeout=float(spec.timeout or 10)).close()
        except OSError as exc:
            raise execwire.HostNotFound(f"gateway {spec.id!r} ({spec}): cannot reach {spec.socket}: "
                                        f"{exc.strerror or exc}") from exc
        raise


def safe_terminate(execmodel: ExecModel, timeout: float | None,
                   list_of_paired_functions: list[tuple[Callable[[], Any], Callable[[], Any]]]) -> None:
    """Run each termination function; call its kill function if it did not finish within ``timeout``."""
    import threading

    def term_or_kill(term: Callable[[], Any], kill: Callable[[], Any]) -> None:
        worker = threading.Thread(target=term, daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            kill()

    threads = [threading.Thread(target=term_or_kill, args=pair, daemon=True) for pair in list_of_paired_functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


default_group = Group()
makegateway = default_group.makegateway
set_execmodel = default_group.set_execmodel
