"""socket: a far Python started for us by an execwire socket server (server.py), over TCP.

Connecting and authenticating run in the gateway's reader thread, so starting
one returns at once as for every other transport (makegateways starts many side
by side; makegateway then waits for the answer); frames sent meanwhile wait in
memory and go out right behind the boot payload. With ``installvia=ID`` the
server is first started inside gateway ID, with a fresh random token, and lives
as long as the gateway made through it (or gateway ID, if that ends first).
With ``tls`` or ``tls_ca=PATH`` the connection is TLS; after the handshake a
relay thread (server.TlsRelay) does all TLS reads and writes, and the gateway
talks to it over a socket pair, because one SSL connection must not be read
and written by two threads at once.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import os
import secrets
import shlex
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import bootstrap, server
from .._far.channel import Channel
from .._far.errors import (
    AuthenticationError,
    Error,
    GatewayLostError,
    GatewayStartError,
    HostNotFound,
    RemoteError,
    TimeoutError,
)
from .._far.streams import SocketStream, Stream
from ..spec import XSpec, parse_hostport
from .command import far_config

if TYPE_CHECKING:
    from ..gateway import Gateway

WILDCARDS = ("", "0.0.0.0", "::")
# opens the connection: (transport, deadline) -> (connected socket, host, port, token)
Opener = Callable[["SocketClientTransport", float], tuple[socket.socket, str, int, bytes]]


def start_socket(spec: XSpec, gateway_id: str, debug: bool, middle: Gateway | None) -> tuple[Stream, None]:
    """A transport that connects, authenticates and boots in the reader thread."""
    from ..gateway import Gateway

    what = f"gateway {gateway_id!r} ({spec})"
    if spec.python is not None:
        raise ValueError(f"key 'python' does not apply to a socket gateway ({spec}): the server starts its own "
                         f"Python; run the server with the interpreter you want")
    timeout = float(spec.timeout) if spec.timeout is not None else Gateway.startup_timeout
    opener: Opener
    tls = None
    if middle is not None:  # installvia=: the group found that gateway
        bind = parse_hostport(spec.socket) if isinstance(spec.socket, str) else ("127.0.0.1", 0)
        opener = _installvia_opener(middle, bind, what)
    else:
        assert isinstance(spec.socket, str)  # XSpec checked it
        host, port = parse_hostport(spec.socket)
        token = read_token(spec, what)
        tls = client_tls_context(spec, what)
        opener = _direct_opener(host, port, token, what)
    config = far_config(spec, gateway_id, debug)
    return SocketClientTransport(opener, bootstrap.boot_bytes(config), timeout, what, tls), None


def read_token(spec: XSpec, what: str) -> bytes:
    """The shared secret: the file named by ``token_file=``, else $EXECWIRE_TOKEN."""
    if spec.token_file is not None:
        path = Path(spec.token_file).expanduser()
        try:
            token = path.read_bytes().strip()
        except OSError as exc:
            raise GatewayStartError(f"{what}: cannot read token_file {str(path)!r}: {exc.strerror}") from exc
        if not token:
            raise GatewayStartError(f"{what}: token_file {str(path)!r} is empty; put the server's token in it")
        return token
    token = os.environ.get(server.TOKEN_ENV, "").strip().encode("utf-8")
    if not token:
        raise GatewayStartError(
            f"{what}: no token to authenticate with; set {server.TOKEN_ENV} to the token the server was "
            f"started with, or add //token_file=PATH to the spec")
    return token


def client_tls_context(spec: XSpec, what: str) -> ssl.SSLContext | None:
    """With ``tls`` or ``tls_ca=PATH``: a context that checks the server's certificate and host name
    against the system's certificate authorities, or against the ones in PATH."""
    if not spec.tls and spec.tls_ca is None:
        return None
    if spec.tls_ca is not None:
        cafile = str(Path(spec.tls_ca).expanduser())
        try:
            context = ssl.create_default_context(cafile=cafile)
        except OSError as exc:  # ssl.SSLError too
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise GatewayStartError(f"{what}: cannot read tls_ca {cafile!r}: {reason}; it must hold the PEM "
                                    f"certificate of the authority that signed the server's") from exc
    else:
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SocketClientTransport(SocketStream):
    """A SocketStream whose connection is made by the first read (in the gateway's reader thread)."""

    sock: socket.socket | None  # type: ignore[assignment]  # None until the far Python is reached

    def __init__(self, opener: Opener, boot: bytes, timeout: float, what: str,
                 tls: ssl.SSLContext | None = None) -> None:
        self.closed = False
        self.sock = None
        self.address: str | None = None
        self._tls = tls
        self._relay: server.TlsRelay | None = None
        self._opener = opener
        self._boot = boot
        self._timeout = timeout
        self._what = what
        self._state = threading.Lock()
        self._pending: list[bytes] | None = []  # frames sent before the connection is up
        self._connecting: socket.socket | None = None
        self._answer_deadline: float | None = None
        self._on_close: list[Callable[[], None]] = []

    # -- connecting (reader thread) -------------------------------------------
    def readinto(self, view: memoryview) -> int:
        if self.sock is None:
            self._connect()
        if self._answer_deadline is not None:
            return self._read_first_answer(view)
        return int(SocketStream.readinto(self, view))

    def _connect(self) -> None:
        deadline = time.monotonic() + self._timeout
        sock: socket.socket | None = None
        try:
            sock, host, port, token = self._opener(self, deadline)
            address = self.address = server.format_address(host, port)
            binding = b""
            if self._tls is not None:
                sock = tls_connect(sock, self._tls, host, deadline, f"{self._what}: {address}")
                self._connecting = sock
                self._check_not_closed()
                binding = server.certificate_binding(sock.getpeercert(binary_form=True) or b"")
            answer = client_handshake(sock, token, binding, deadline, f"{self._what}: {address}")
            self._check_not_closed()
            stage1 = bootstrap.stage1().encode("utf-8")
            with self._state:
                _settimeout(sock, deadline)
                sock.sendall(answer + server.LENGTH.pack(len(stage1)) + stage1 + self._boot
                             + b"".join(self._pending or ()))
                self._pending = None
                self.sock = self._start_relay(sock) if self._tls is not None else sock
            read_verdict(self.sock, deadline, f"{self._what}: the server at {address}")
        except socket.timeout:  # noqa: UP041 - the builtin TimeoutError is a different class before 3.10
            raise GatewayStartError(f"{self._what}: no complete handshake with the socket server within "
                                    f"{self._timeout:g} seconds; set //timeout=SECONDS to wait longer") from None
        except OSError as exc:
            if self.closed:
                raise GatewayLostError(f"{self._what} was closed while connecting") from None
            raise GatewayStartError(f"{self._what}: the connection to the socket server failed during the "
                                    f"handshake: {exc}") from exc
        finally:
            self._connecting = None
            with self._state:
                if self.sock is None:
                    self._pending = None  # later writes fail: the reader reports why
                    if sock is not None:
                        sock.close()
        self._answer_deadline = deadline

    def _start_relay(self, tls: socket.socket) -> socket.socket:
        """The gateway's end of a socket pair whose other end a relay thread connects to ``tls``."""
        near, far = socket.socketpair()
        relay = self._relay = server.TlsRelay(tls, far.fileno(), far.fileno(), lambda: _shutdown_write(far))

        def run() -> None:
            try:
                relay.run()
            finally:
                tls.close()
                far.close()

        threading.Thread(target=run, name=f"execwire-tls-{self.address}", daemon=True).start()
        return near

    def _read_first_answer(self, view: memoryview) -> int:
        """The far Python's first bytes, within the start-up deadline."""
        assert self.sock is not None and self._answer_deadline is not None
        try:
            _settimeout(self.sock, self._answer_deadline)
            return self.sock.recv_into(view)
        except socket.timeout:  # noqa: UP041
            raise GatewayStartError(
                f"{self._what}: the socket server accepted us, but its Python did not answer within "
                f"{self._timeout:g} seconds; set //timeout=SECONDS in the spec to wait longer") from None
        except OSError as exc:
            raise GatewayLostError(f"reading from the peer failed: {exc}") from exc
        finally:
            self._answer_deadline = None
            try:
                self.sock.settimeout(None)
            except OSError:
                pass  # closed meanwhile

    def connecting(self, sock: socket.socket) -> None:
        """Called by openers with the socket they are about to connect, so close() can abort it."""
        self._connecting = sock
        self._check_not_closed()

    def _check_not_closed(self) -> None:
        if self.closed:
            raise GatewayLostError(f"{self._what} was closed while connecting")

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this transport is closed (e.g. stop an installvia server)."""
        self._on_close.append(callback)

    # -- writing (any thread) ---------------------------------------------------
    def writev(self, buffers: list[Any]) -> int:
        with self._state:
            pending = self._pending
            if pending is not None:
                pending.extend(bytes(buffer) for buffer in buffers)
                return sum(memoryview(buffer).nbytes for buffer in buffers)
        if self.sock is None:
            raise GatewayLostError(f"{self._what}: not connected")
        return int(SocketStream.writev(self, buffers))

    def write(self, data: bytes) -> int:
        if self._pending is not None or self.sock is None:
            return self.writev([data])
        return int(SocketStream.write(self, data))

    def close_write(self) -> None:
        with self._state:
            if self.closed:
                return
            self.closed = True
            sock = self.sock or self._connecting
            how = socket.SHUT_WR if self.sock is not None else socket.SHUT_RDWR  # abort a connect
            if sock is not None:
                try:
                    sock.shutdown(how)
                except OSError:
                    pass

    def close(self) -> None:
        self.close_write()
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading; close() alone does not
            self.sock.close()
        if self._relay is not None:
            self._relay.stop()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()


def _shutdown_write(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def _settimeout(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout()  # noqa: UP041
    sock.settimeout(remaining)


def connect(host: str, port: int, deadline: float, transport: SocketClientTransport, what: str) -> socket.socket:
    """A TCP connection to ``host``:``port``; HostNotFound says why there is none."""
    address = server.format_address(host, port)
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HostNotFound(f"{what}: cannot resolve host {host!r}: {exc.strerror}; check socket=HOST:PORT") from exc
    error: OSError | None = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            transport.connecting(sock)
            _settimeout(sock, deadline)
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
            if transport.closed:
                raise GatewayLostError(f"{what} was closed while connecting") from None
    if isinstance(error, ConnectionRefusedError):
        raise HostNotFound(
            f"{what}: nothing listens at {address} (connection refused); start the server there with "
            f"`python -m execwire.server --port {port}` or check the address") from error
    if isinstance(error, socket.timeout):  # noqa: UP041
        raise HostNotFound(f"{what}: cannot reach {address}: no answer before the start-up deadline "
                           f"(a firewall, or the wrong address?)") from error
    reason = error.strerror if error is not None and error.strerror else error
    raise HostNotFound(f"{what}: cannot reach {address}: {reason}") from error


def tls_connect(sock: socket.socket, context: ssl.SSLContext, host: str, deadline: float,
                who: str) -> ssl.SSLSocket:
    """The TLS handshake over ``sock``, with the certificate checked; errors say what to do."""
    try:
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:
        sock.close()
        raise GatewayStartError(f"{who}: cannot start TLS: {exc}") from exc
    try:
        _settimeout(tls, deadline)
        tls.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        tls.close()
        raise AuthenticationError(
            f"{who}: the server's TLS certificate is not trusted: {exc.verify_message}; name the certificate "
            f"authority that signed it with //tls_ca=PATH (and connect to a name or address the certificate "
            f"lists)") from exc
    except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError) as exc:
        tls.close()
        raise GatewayStartError(f"{who} closed the connection during the TLS handshake; the server's log says "
                                f"why (it may be busy, or not have been started with --tls-cert)") from exc
    except ssl.SSLError as exc:
        tls.close()
        raise GatewayStartError(f"{who}: the TLS handshake failed: {exc.reason or exc}; was the server started "
                                f"with --tls-cert? (without it, drop //tls from the spec)") from exc
    except BaseException:
        tls.close()
        raise
    return tls


@functools.lru_cache(maxsize=8)
def token_powers(token: bytes) -> server.TokenPowers:
    """What SPAKE2 derives from the token, once per token: it costs about as much as the rest of a handshake."""
    return server.TokenPowers(token)


def client_handshake(sock: socket.socket, token: bytes, binding: bytes, deadline: float, who: str) -> bytes:
    """Run SPAKE2 with the server; return our confirmation, to send only now that the server's checked out.

    If the server's confirmation is wrong, we close the connection without sending ours, and raise
    AuthenticationError: a server that does not know the token learns nothing it could test guesses of
    the token against, and gets no code.
    """
    exchange = server.Spake2(token_powers(token), b"client")
    _settimeout(sock, deadline)
    sock.sendall(server.MAGIC + bytes([server.VERSION]) + exchange.message)
    head = _recv_exact(sock, len(server.MAGIC) + 2, deadline, who)
    if head[:len(server.MAGIC)] != server.MAGIC:
        raise GatewayStartError(f"{who} is not an execwire socket server: it answered {head!r}")
    if head[-1] != server.OK:
        raise GatewayStartError(f"{who} refused us: {_read_reason(sock, deadline, who)}")
    server_message = _recv_exact(sock, server.ELEMENT_SIZE, deadline, who)
    server_confirmation = _recv_exact(sock, server.CONFIRM_SIZE, deadline, who)
    try:
        ours, expected = exchange.confirmations(server_message, binding)
    except ValueError as exc:
        sock.close()
        raise AuthenticationError(f"{who}: the server's handshake is invalid: {exc}") from None
    if not hmac.compare_digest(server_confirmation, expected):
        sock.close()
        raise AuthenticationError(
            f"{who}: authentication failed: the server could not prove it knows our token, so its token "
            f"differs from ours (or it is not our server); use the token the server was started with "
            f"({server.TOKEN_ENV} or //token_file=PATH)")
    return ours


def read_verdict(sock: socket.socket, deadline: float, who: str) -> None:
    """The server's last word: OK, or why it refused."""
    status = _recv_exact(sock, 1, deadline, who)[0]
    if status == server.OK:
        return
    reason = _read_reason(sock, deadline, who)
    if reason.startswith("wrong token"):
        raise AuthenticationError(f"{who} refused our token: {reason}")
    raise GatewayStartError(f"{who} refused us: {reason}")


def _read_reason(sock: socket.socket, deadline: float, who: str) -> str:
    size = server.REASON_LENGTH.unpack(_recv_exact(sock, server.REASON_LENGTH.size, deadline, who))[0]
    return _recv_exact(sock, size, deadline, who).decode("utf-8", "replace")


def _recv_exact(sock: socket.socket, size: int, deadline: float, who: str) -> bytes:
    data = b""
    while len(data) < size:
        _settimeout(sock, deadline)
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise GatewayStartError(f"{who} closed the connection during the handshake "
                                    f"(received {data!r}); the server's log says why")
        data += chunk
    return data


# -- the two ways to open the connection ---------------------------------------------
def _direct_opener(host: str, port: int, token: bytes, what: str) -> Opener:
    def open_direct(transport: SocketClientTransport, deadline: float) -> tuple[socket.socket, str, int, bytes]:
        if port == 0:
            raise HostNotFound(f"{what}: port 0 is not a server's port; use the port it printed")
        return connect(host, port, deadline, transport, what), host, port, token

    return open_direct


def _installvia_opener(host_gateway: Gateway, bind: tuple[str, int], what: str) -> Opener:
    def open_via(transport: SocketClientTransport, deadline: float) -> tuple[socket.socket, str, int, bytes]:
        token = secrets.token_hex(32)
        control, (bound_host, port) = install_server(host_gateway, bind, token, deadline, what)
        transport.on_close(control.close)
        try:
            host = reachable_host(bound_host, host_gateway)
            return connect(host, port, deadline, transport, what), host, port, token.encode("utf-8")
        except BaseException:
            control.close()
            raise

    return open_via


def install_server(host_gateway: Gateway, bind: tuple[str, int], token: str, deadline: float,
                   what: str) -> tuple[Channel, tuple[str, int]]:
    """Start server.py inside ``host_gateway``; return its control channel (close it to stop the server)
    and its address."""
    try:
        channel = host_gateway.remote_exec(server)
        channel.send(server_request(bind, token))
        bound_host, port, control = channel.receive(timeout=max(deadline - time.monotonic(), 0.0))
    except (Error, EOFError) as exc:
        raise install_failed(exc, bind, host_gateway.id, what) from exc
    return control, (str(bound_host), int(port))


def server_request(bind: tuple[str, int], token: str) -> dict[str, Any]:
    """What server.py, shipped into a gateway, is sent first: where to listen, and the token."""
    return {"host": bind[0], "port": bind[1], "token": token}


def install_failed(exc: BaseException, bind: tuple[str, int], host_id: str, what: str) -> GatewayStartError:
    """Why a socket server could not be started inside gateway ``host_id``."""
    where = f"gateway {host_id!r}"
    if isinstance(exc, RemoteError):
        last = exc.formatted.strip().splitlines()[-1:]
        return GatewayStartError(f"{what}: cannot start a socket server on "
                                 f"{server.format_address(*bind)} inside {where}: {' '.join(last)}")
    if isinstance(exc, TimeoutError):
        return GatewayStartError(f"{what}: the socket server inside {where} did not report its address in time")
    return GatewayStartError(f"{what}: cannot start a socket server inside {where}: {exc}")


def reachable_host(bound_host: str, host_gateway: Gateway) -> str:
    """Where to connect to a server that ``host_gateway`` bound to ``bound_host``.

    A wildcard address means "every interface": connect to the ssh host the
    gateway runs on, else to loopback.
    """
    if bound_host not in WILDCARDS:
        return bound_host
    ssh = host_gateway.spec.ssh
    if ssh:
        words = [word for word in shlex.split(ssh) if not word.startswith("-")]
        if words:
            return words[-1].rpartition("@")[2]
    return "::1" if bound_host == "::" else "127.0.0.1"
