"""The execwire socket server: runs a far Python for every client that proves it knows the token.

Usage: ``python -m execwire.server [--host H] [--port P] [--token-file F]``, or
copy this one file anywhere and run ``python server.py ...``: it needs nothing but
the standard library of Python 3.6 or newer (execwire itself need not be there).

Handshake (all before anything runs; every message has a fixed size or a bounded
length, and the whole handshake has a deadline):

1. client: MAGIC, VERSION, client nonce (32 bytes)
2. server: MAGIC, VERSION, OK, server nonce, HMAC(token, "server" + both nonces)
   (or MAGIC, VERSION, REFUSED, reason, when it cannot talk this version)
3. client, once the server's proof checks out: HMAC(token, "client" + both
   nonces), the length of its stage-1 program (4 bytes) and the program
4. server: OK, then runs ``[python, "-c", program]`` with the connection as its
   stdin and stdout; or REFUSED, a 2-byte length and the reason.

From then on the client speaks to that Python exactly as to a popen gateway.
The token never travels; both sides prove they know it.
"""

import argparse
import hashlib
import hmac
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List, Optional  # noqa: F401, UP035 - type comments, read by mypy, valid on 3.6

MAGIC = b"execwire"
VERSION = 1
NONCE_SIZE = 32
PROOF_SIZE = 32  # HMAC-SHA256
OK = 0
REFUSED = 1
MAX_STAGE1 = 64 * 1024  # the stage-1 program is a few hundred bytes
MAX_REASON = 1024
DEFAULT_PORT = 8888
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_MAX_HANDSHAKES = 64
TOKEN_ENV = "EXECWIRE_TOKEN"
LENGTH = struct.Struct("!I")
REASON_LENGTH = struct.Struct("!H")

HOW_TO_MAKE_A_TOKEN = (
    "make a token with: python3 -c 'import secrets; print(secrets.token_hex(32))' > token "
    "&& chmod 600 token, then start the server with --token-file token (or set %s), "
    "and give the clients the same token (%s, or //token_file=PATH in the gateway spec)"
    % (TOKEN_ENV, TOKEN_ENV))


class Refused(Exception):
    """A client broke the handshake; the message says how, for the log."""


def proof(token, role, client_nonce, server_nonce):
    # type: (bytes, bytes, bytes, bytes) -> bytes
    """What a side that knows ``token`` answers to the two nonces (``role``: b"client" or b"server")."""
    return hmac.new(token, b"execwire-socket " + role + b" " + client_nonce + server_nonce,
                    hashlib.sha256).digest()


def format_address(host, port):
    # type: (str, int) -> str
    """HOST:PORT, with an IPv6 address in brackets, as a gateway spec writes it."""
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def recv_exact(conn, size, deadline, check=None):
    # type: (socket.socket, int, float, Optional[Callable[[bytes], None]]) -> bytes
    """Read exactly ``size`` bytes before ``deadline`` (time.monotonic()).

    ``check`` sees every partial result, so garbage is refused at its first byte.
    Never reads more than ``size``: what follows belongs to the far Python.
    """
    data = b""
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()  # noqa: UP041 - a distinct class before Python 3.10
        conn.settimeout(remaining)
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise Refused("closed the connection after %d of %d bytes of a handshake message"
                          % (len(data), size))
        data += chunk
        if check is not None:
            check(data)
    return data


def refusal(reason):
    # type: (str) -> bytes
    text = reason.encode("utf-8")[:MAX_REASON]
    return bytes([REFUSED]) + REASON_LENGTH.pack(len(text)) + text


class Server(object):
    """Accepts clients, checks their proof, and starts a far Python for each good one."""

    def __init__(self, host, port, token, handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT,
                 max_handshakes=DEFAULT_MAX_HANDSHAKES, log=None, log_accepts=True, child_stderr=None):
        # type: (str, int, bytes, float, int, Optional[Callable[[str], None]], bool, Optional[int]) -> None
        if not token:
            raise ValueError("the token is empty; " + HOW_TO_MAKE_A_TOKEN)
        self.token = token
        self.handshake_timeout = handshake_timeout
        self.log = log or _log_to_stderr
        self.log_accepts = log_accepts
        self.child_stderr = child_stderr  # None: the far Pythons write to our stderr
        self.max_handshakes = max_handshakes
        self._handshake_slots = threading.BoundedSemaphore(max_handshakes)
        self.sock = bind(host, port)
        address = self.sock.getsockname()
        self.host = address[0]  # type: str
        self.port = address[1]  # type: int

    @property
    def address(self):
        # type: () -> str
        return format_address(self.host, self.port)

    def serve(self, stop=None):
        # type: (Optional[threading.Event]) -> None
        """Accept clients until ``stop`` is set (checked a few times a second), or forever."""
        try:
            while stop is None or not stop.is_set():
                if stop is not None:
                    ready, _, _ = select.select([self.sock], [], [], 0.2)
                    if not ready:
                        continue
                try:
                    conn, peer = self.sock.accept()
                except OSError as exc:  # e.g. out of file descriptors: keep serving the others
                    self.log("accept failed: %s" % (exc,))
                    time.sleep(0.1)
                    continue
                self._start_handshake(conn, format_address(peer[0], peer[1]))
        finally:
            self.sock.close()

    def _start_handshake(self, conn, peer):
        # type: (socket.socket, str) -> None
        if not self._handshake_slots.acquire(False):
            reason = "more than %d handshakes at once; try again later" % (self.max_handshakes,)
            self.log("%s: refused: %s" % (peer, reason))
            try:
                conn.setblocking(False)  # never stall the accept loop on a bad client
                conn.send(MAGIC + bytes([VERSION]) + refusal(reason))
            except OSError:
                pass
            conn.close()
            return
        thread = threading.Thread(target=self._serve_client, args=(conn, peer),
                                  name="execwire-server-%s" % peer)
        thread.daemon = True
        try:
            thread.start()
        except RuntimeError as exc:  # cannot start a thread
            self._handshake_slots.release()
            self.log("%s: refused: %s" % (peer, exc))
            conn.close()

    def _serve_client(self, conn, peer):
        # type: (socket.socket, str) -> None
        linger = False
        try:
            stage1 = self.handshake(conn, time.monotonic() + self.handshake_timeout)
            failure = None  # type: Optional[str]
        except Refused as exc:
            failure, linger = "refused: %s" % (exc,), True
        except socket.timeout:  # noqa: UP041 - a distinct class before Python 3.10
            failure = "refused: no complete handshake within %g seconds" % (self.handshake_timeout,)
        except OSError as exc:
            failure = "refused: connection failed during the handshake: %s" % (exc,)
        except Exception as exc:  # a bug here must not stop the server
            failure = "refused: server error during the handshake: %r" % (exc,)
        finally:
            self._handshake_slots.release()  # before the client can see the outcome
        if failure is not None:
            self.log("%s: %s" % (peer, failure))
            if linger:
                _linger_close(conn)
            else:
                conn.close()
            return
        try:
            popen = self.start_python(conn, stage1)
        except OSError as exc:
            self.log("%s: cannot start %s: %s" % (peer, sys.executable, exc))
            return
        finally:
            conn.close()  # the far Python holds its own copy
        if self.log_accepts:
            self.log("%s: authenticated; far Python pid %d started" % (peer, popen.pid))
        code = popen.wait()
        if self.log_accepts:
            self.log("%s: far Python pid %d ended with exit code %s" % (peer, popen.pid, code))

    def handshake(self, conn, deadline):
        # type: (socket.socket, float) -> str
        """Run the server's half of the handshake; return the client's stage-1 program.

        Raises Refused (with the reason for the log; the client has been told)
        or socket.timeout.
        """
        head = recv_exact(conn, len(MAGIC) + 1, deadline, _check_magic)
        if head[-1] != VERSION:
            reason = "handshake version %d is not supported; this server speaks version %d" % (head[-1], VERSION)
            conn.sendall(MAGIC + bytes([VERSION]) + refusal(reason))
            raise Refused(reason)
        client_nonce = recv_exact(conn, NONCE_SIZE, deadline)
        server_nonce = os.urandom(NONCE_SIZE)
        conn.sendall(MAGIC + bytes([VERSION, OK]) + server_nonce
                     + proof(self.token, b"server", client_nonce, server_nonce))
        client_proof = recv_exact(conn, PROOF_SIZE, deadline)
        if not hmac.compare_digest(client_proof, proof(self.token, b"client", client_nonce, server_nonce)):
            conn.sendall(refusal("wrong token: the client's token differs from the server's"))
            raise Refused("wrong token")
        size = LENGTH.unpack(recv_exact(conn, LENGTH.size, deadline))[0]
        if size > MAX_STAGE1:
            reason = "stage-1 program of %d bytes is over the limit of %d bytes" % (size, MAX_STAGE1)
            conn.sendall(refusal(reason))
            raise Refused(reason)
        try:
            program = recv_exact(conn, size, deadline).decode("utf-8")
        except UnicodeDecodeError:
            conn.sendall(refusal("the stage-1 program is not UTF-8 text"))
            raise Refused("the stage-1 program is not UTF-8 text")
        conn.sendall(bytes([OK]))
        return program

    def start_python(self, conn, program):
        # type: (socket.socket, str) -> subprocess.Popen[bytes]
        """Run ``program`` in a new Python whose stdin and stdout are the connection."""
        conn.settimeout(None)  # blocking again: the far Python shares this descriptor's flags
        return subprocess.Popen([sys.executable, "-c", program], stdin=conn.fileno(), stdout=conn.fileno(),
                                stderr=self.child_stderr, close_fds=True, start_new_session=True)


def _check_magic(received):
    # type: (bytes) -> None
    if not MAGIC.startswith(received[:len(MAGIC)]):
        raise Refused("not an execwire client (it sent %r)" % (received,))


def _linger_close(conn):
    # type: (socket.socket) -> None
    """Close so that the refusal we sent arrives instead of a reset: stop writing, drain briefly."""
    try:
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 1.0
        drained = 0
        while drained < 1 << 20 and time.monotonic() < deadline:
            conn.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = conn.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:
        pass
    finally:
        conn.close()


def bind(host, port):
    # type: (str, int) -> socket.socket
    """A listening socket on ``host``:``port`` (port 0: a free port)."""
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    error = None  # type: Optional[OSError]
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError("no address found for %r" % (host,))


def _log_to_stderr(message):
    # type: (str) -> None
    line = "execwire.server %s: %s\n" % (time.strftime("%H:%M:%S"), message)
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def read_token(token_file):
    # type: (Optional[str]) -> bytes
    """The shared secret from ``token_file`` or $EXECWIRE_TOKEN; SystemExit naming what to do if none."""
    if token_file:
        try:
            with open(token_file, "rb") as stream:
                token = stream.read().strip()
            mode = os.stat(token_file).st_mode
        except OSError as exc:
            raise SystemExit("execwire.server: cannot read the token file %s: %s" % (token_file, exc.strerror))
        if not token:
            raise SystemExit("execwire.server: the token file %s is empty; %s" % (token_file, HOW_TO_MAKE_A_TOKEN))
        if mode & 0o077:
            _log_to_stderr("warning: the token file %s can be read by other users; chmod 600 it" % token_file)
        return token
    token = os.environ.get(TOKEN_ENV, "").strip().encode("utf-8")
    if not token:
        raise SystemExit("execwire.server: no token, so nobody could connect safely; " + HOW_TO_MAKE_A_TOKEN)
    return token


def main(argv=None):
    # type: (Optional[List[str]]) -> int
    parser = argparse.ArgumentParser(
        prog="python -m execwire.server",
        description="Serve execwire socket gateways: start a Python for every client that knows the token.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 or :: for every interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port to listen on (default %d; 0 picks a free one)" % DEFAULT_PORT)
    parser.add_argument("--token-file", help="file holding the shared secret (default: $%s)" % TOKEN_ENV)
    parser.add_argument("--handshake-timeout", type=float, default=DEFAULT_HANDSHAKE_TIMEOUT,
                        help="seconds a client has to authenticate (default %g)" % DEFAULT_HANDSHAKE_TIMEOUT)
    parser.add_argument("--max-handshakes", type=int, default=DEFAULT_MAX_HANDSHAKES,
                        help="clients authenticating at the same time (default %d)" % DEFAULT_MAX_HANDSHAKES)
    options = parser.parse_args(argv)
    token = read_token(options.token_file)
    try:
        server = Server(options.host, options.port, token, options.handshake_timeout, options.max_handshakes)
    except (OSError, OverflowError) as exc:
        raise SystemExit("execwire.server: cannot listen on %s: %s"
                         % (format_address(options.host, options.port), exc))
    sys.stdout.write("listening on %s\n" % server.address)
    sys.stdout.flush()
    try:
        server.serve()
    except KeyboardInterrupt:
        _log_to_stderr("stopped")
    return 0


def serve_channel(channel):
    # type: (Any) -> None
    """Start serving inside a gateway (SocketGateway.new_remote) and return at once.

    Settings arrive on ``channel``; back go the bound address and a control
    channel: the server stops when the other side closes that channel, or when
    this gateway ends. Returning at once keeps the gateway's exec slot free.
    """
    options = channel.receive()
    server = Server(options["host"], options["port"], options["token"].encode("utf-8"),
                    options.get("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT), log_accepts=False,
                    # not our stderr: that is this gateway's output pipe, which must close when it ends
                    child_stderr=subprocess.DEVNULL)
    control = channel.gateway.newchannel()
    stop = threading.Event()

    def watch():
        # type: () -> None
        try:
            control.waitclose()
        except Exception:
            pass  # closed because the link broke: stop all the same
        stop.set()

    for thread in (threading.Thread(target=watch, name="execwire-server-watch"),
                   threading.Thread(target=server.serve, args=(stop,), name="execwire-server")):
        thread.daemon = True
        thread.start()
    channel.send((server.host, server.port, control))


if __name__ == "__channelexec__":
    serve_channel(globals()["channel"])
elif __name__ == "__main__":
    sys.exit(main())
