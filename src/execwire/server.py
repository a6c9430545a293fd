"""The execwire socket server: runs a far Python for every client that proves it knows the token.

Usage: ``python -m execwire.server [--host H] [--port P] [--token-file F] [--tls-cert C --tls-key K]``,
``python -m execwire.server --new-token F`` to write a token, or copy this one file anywhere and
run ``python server.py ...``: it needs nothing but the standard library of Python 3.6 or newer
(execwire itself need not be there).

Handshake (all before anything runs; every message has a fixed size or a bounded length, and the
whole handshake, TLS included, has a deadline). Both sides run SPAKE2 (RFC 9382) with the token as
the password, in the 2048-bit MODP group of RFC 3526, with key confirmation:

1. client: MAGIC, VERSION, T = g^x * M^w (256 bytes)
2. server: MAGIC, VERSION, OK, S = g^y * N^w (256 bytes), the server's confirmation (32 bytes);
   or MAGIC, VERSION, REFUSED, reason (it cannot talk this version, or needs TLS)
3. client, only if the server's confirmation checks out: its own confirmation, the length of its
   stage-1 program (4 bytes) and the program; otherwise it closes the connection and sends nothing
4. server: OK, then runs ``[python, "-c", program]`` with the connection as its stdin and stdout;
   or REFUSED, a 2-byte length and the reason.

w is a hash of the token; the confirmations are HMACs under a hash of the whole transcript (the
TLS certificate's hash, T, S, the shared group element and w). T and S look random to anyone who
lacks the token, and a confirmation can be checked against one guess of the token only: the one
its sender's peer used. So a client or server that does not know the token (or listens in) learns
nothing that lets it test guesses offline; each connection is one online guess.

With --tls-cert the connection is TLS from its first byte, the certificate's hash is part of the
transcript (a man in the middle with another certificate fails the confirmations), and a relay
thread copies between the TLS connection and the far Python's pipes.

From then on the client speaks to that Python exactly as to a popen gateway.
"""

import argparse
import hashlib
import hmac
import os
import secrets
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple  # noqa: F401, UP035 - type comments, for 3.6

MAGIC = b"execwire"
VERSION = 2
OK = 0
REFUSED = 1
MAX_STAGE1 = 64 * 1024  # the stage-1 program is a few hundred bytes
MAX_REASON = 1024
DEFAULT_PORT = 8888
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
DEFAULT_MAX_HANDSHAKES = 256
DEFAULT_MAX_PER_ADDRESS = 8
TOKEN_ENV = "EXECWIRE_TOKEN"
LENGTH = struct.Struct("!I")
REASON_LENGTH = struct.Struct("!H")
TLS_RECORD_BYTE = 0x16  # the first byte of a TLS ClientHello

HOW_TO_MAKE_A_TOKEN = (
    "make a token with: python -m execwire.server --new-token FILE, then start the server with "
    "--token-file FILE (or set %s), and give the clients the same token (%s, or //token_file=FILE "
    "in the gateway spec)" % (TOKEN_ENV, TOKEN_ENV))


class Refused(Exception):
    """A client broke the handshake; the message says how, for the log."""


def format_address(host, port):
    # type: (str, int) -> str
    """HOST:PORT, with an IPv6 address in brackets, as a gateway spec writes it."""
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


# -- tokens -----------------------------------------------------------------------------------
MIN_TOKEN_LENGTH = 32
MAX_TOKEN_LENGTH = 1024
MIN_TOKEN_BITS = 128
MIN_TOKEN_DISTINCT = 8
_DIGITS = b"0123456789"
_LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# (name, characters, bits each): a token counts the bits of the first alphabet holding all its characters
TOKEN_ALPHABETS = (
    ("decimal digits", _DIGITS, 3.32),
    ("hex digits", _DIGITS + b"abcdef", 4.0),
    ("hex digits", _DIGITS + b"ABCDEF", 4.0),
    ("letters and digits", _DIGITS + _LETTERS, 5.95),
    ("base64 characters", _DIGITS + _LETTERS + b"+/-_=", 6.0),
    ("printable ASCII characters", bytes(range(0x20, 0x7F)), 6.57),
)
TOKEN_RULE = (
    "a token needs %d to %d characters, at least %d different ones, no repeating pattern, and %d bits "
    "where each character counts for the smallest alphabet that holds them all (decimal digits 3.32 "
    "bits, hex digits 4, letters and digits 5.95, base64 6, printable ASCII 6.57, other bytes 8)"
    % (MIN_TOKEN_LENGTH, MAX_TOKEN_LENGTH, MIN_TOKEN_DISTINCT, MIN_TOKEN_BITS))


def token_weakness(token):
    # type: (bytes) -> Optional[str]
    """Why ``token`` is too weak to guard the server (see TOKEN_RULE), or None if it is not."""
    size = len(token)
    if size < MIN_TOKEN_LENGTH:
        return "it has %d characters, fewer than %d" % (size, MIN_TOKEN_LENGTH)
    if size > MAX_TOKEN_LENGTH:
        return "it has %d characters, more than %d" % (size, MAX_TOKEN_LENGTH)
    name, bits = "bytes", 8.0
    characters = set(token)
    for candidate, alphabet, each in TOKEN_ALPHABETS:
        if characters <= set(alphabet):
            name, bits = candidate, each
            break
    if size * bits < MIN_TOKEN_BITS:
        return "%d %s are worth about %d bits, fewer than %d" % (size, name, size * bits, MIN_TOKEN_BITS)
    if len(characters) < MIN_TOKEN_DISTINCT:
        return "it uses only %d different characters, fewer than %d" % (len(characters), MIN_TOKEN_DISTINCT)
    for period in range(1, size // 2 + 1):
        if token[period:] == token[:-period]:
            return "it repeats a pattern of %d characters" % period
    return None


def write_new_token(path, force):
    # type: (str, bool) -> None
    """Write a fresh 256-bit token to ``path``, readable by its owner only; never overwrite without ``force``."""
    token = (secrets.token_hex(32) + "\n").encode("ascii")
    if force:
        folder = os.path.dirname(os.path.abspath(path))
        temporary = os.path.join(folder, ".%s.%s.new" % (os.path.basename(path), secrets.token_hex(4)))
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    else:
        temporary = None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # fails if it exists, even as a link
    try:
        os.write(fd, token)
        os.fsync(fd)
    finally:
        os.close(fd)
    if temporary is not None:
        os.replace(temporary, path)


# -- SPAKE2 over the 2048-bit MODP group of RFC 3526 ------------------------------------------------
PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)  # a safe prime: (PRIME - 1) / 2 is prime too
GENERATOR = 2
ELEMENT_SIZE = 256  # bytes of a group element on the wire
EXPONENT_BITS = 256  # random exponents: twice the group's strength of about 112 bits, with room
CONFIRM_SIZE = 32  # HMAC-SHA256


def _hash_to_group(label):
    # type: (bytes) -> int
    """A group element nobody knows the logarithm of: a hash, squared into the subgroup of prime order."""
    digest = hashlib.shake_256(label).digest(ELEMENT_SIZE + 32)
    return pow(int.from_bytes(digest, "big") % PRIME, 2, PRIME)


POINT_M = _hash_to_group(b"execwire spake2 point M")
POINT_N = _hash_to_group(b"execwire spake2 point N")


def _inverse(value):
    # type: (int) -> int
    try:
        return pow(value, -1, PRIME)
    except ValueError:  # Python < 3.8
        return pow(value, PRIME - 2, PRIME)


def _element_bytes(value):
    # type: (int) -> bytes
    return value.to_bytes(ELEMENT_SIZE, "big")


class TokenPowers(object):
    """What SPAKE2 derives from the token alone, computed once per token (the server keeps it).

    Computing it once also keeps the token-dependent exponentiations out of each connection's timing.
    """

    def __init__(self, token):
        # type: (bytes) -> None
        scalar = int.from_bytes(hashlib.sha256(b"execwire spake2 password\0" + token).digest(), "big")
        self.scalar_bytes = scalar.to_bytes(32, "big")
        m_w, n_w = pow(POINT_M, scalar, PRIME), pow(POINT_N, scalar, PRIME)
        # a side blinds its message with its own point and unblinds its peer's with the other one
        self.blind = {b"client": m_w, b"server": n_w}
        self.unblind = {b"client": _inverse(n_w), b"server": _inverse(m_w)}


class Spake2(object):
    """One side's half of one SPAKE2 exchange: ``message`` to send, then ``confirmations``."""

    def __init__(self, powers, side):
        # type: (TokenPowers, bytes) -> None
        self._powers = powers
        self._side = side  # b"client" or b"server"
        self._exponent = secrets.randbits(EXPONENT_BITS) | 1
        self.message = _element_bytes(pow(GENERATOR, self._exponent, PRIME) * powers.blind[side] % PRIME)

    def confirmations(self, peer_message, binding):
        # type: (bytes, bytes) -> Tuple[bytes, bytes]
        """(the confirmation we send, the one our peer must send); ValueError for a bad peer message.

        ``binding`` is what both sides must agree on besides the token (the TLS certificate's hash).
        """
        peer = int.from_bytes(peer_message, "big")
        if len(peer_message) != ELEMENT_SIZE or not 1 < peer < PRIME - 1:
            raise ValueError("its SPAKE2 message is not an element of the group")
        # squaring (the factor 2) removes any part of order 2 a peer might slip in
        shared = pow(peer * self._powers.unblind[self._side] % PRIME, 2 * self._exponent, PRIME)
        if shared == 1:
            raise ValueError("its SPAKE2 message leads to the identity element")
        client, server = ((self.message, peer_message) if self._side == b"client"
                          else (peer_message, self.message))
        transcript = hashlib.sha256()
        for part in (b"execwire spake2 v2", binding, client, server, _element_bytes(shared),
                     self._powers.scalar_bytes):
            transcript.update(LENGTH.pack(len(part)) + part)
        key = transcript.digest()
        from_client = hmac.new(key, b"client confirms", hashlib.sha256).digest()
        from_server = hmac.new(key, b"server confirms", hashlib.sha256).digest()
        return (from_client, from_server) if self._side == b"client" else (from_server, from_client)


def certificate_binding(der):
    # type: (bytes) -> bytes
    """What the handshake binds to: the hash of the server's certificate (RFC 5929's tls-server-end-point)."""
    return hashlib.sha256(der).digest() if der else b""


# -- reading and refusing -------------------------------------------------------------------------
def recv_exact(conn, size, deadline, what, check=None):
    # type: (socket.socket, int, float, str, Optional[Callable[[bytes], None]]) -> bytes
    """Read exactly ``size`` bytes of ``what`` before ``deadline`` (time.monotonic()).

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
            raise Refused("closed the connection after %d of %d bytes of %s" % (len(data), size, what))
        data += chunk
        if check is not None:
            check(data)
    return data


def refusal(reason):
    # type: (str) -> bytes
    text = reason.encode("utf-8")[:MAX_REASON]
    return bytes([REFUSED]) + REASON_LENGTH.pack(len(text)) + text


def _check_magic(received):
    # type: (bytes) -> None
    if received[0] == TLS_RECORD_BYTE:
        raise Refused("the client speaks TLS (//tls), but this server was started without --tls-cert")
    if not MAGIC.startswith(received[:len(MAGIC)]):
        raise Refused("not an execwire client (it sent %r)" % (received,))


def address_key(host):
    # type: (str) -> str
    """The unit the per-address limit counts: an IPv4 address, or the /64 network of an IPv6 one."""
    host = host.split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:
        return host[7:]  # IPv4 through a dual-stack socket
    if ":" not in host:
        return host
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError):
        return host
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8)) + "/64"


# -- TLS --------------------------------------------------------------------------------------
def server_tls_context(cert_file, key_file):
    # type: (str, Optional[str]) -> Tuple[Any, bytes]
    """(an SSLContext serving ``cert_file``, the binding of that certificate); ValueError naming the file."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if hasattr(context, "minimum_version"):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    else:  # Python 3.6
        context.options |= ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        names = cert_file if key_file is None else "%s and %s" % (cert_file, key_file)
        raise ValueError("cannot load the TLS certificate and key from %s: %s"
                         % (names, getattr(exc, "strerror", None) or exc))
    with open(cert_file) as stream:
        text = stream.read()
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        raise ValueError("no PEM certificate in %s" % cert_file)
    der = ssl.PEM_cert_to_DER_cert(text[begin:end + len("-----END CERTIFICATE-----")])
    return context, certificate_binding(der)


RELAY_CHUNK = 65536
RELAY_LIMIT = 1 << 20  # bytes buffered each way before the relay stops reading that side


class TlsRelay(object):
    """Copies between a TLS socket and plain descriptors until both directions have ended.

    What arrives over TLS is written to ``write_fd``; what ``read_fd`` gives is sent over TLS.
    One thread does all the TLS work, because an SSL connection must not be used by two threads
    at once. When TLS ends, ``end_write()`` tells the plain side; when ``read_fd`` ends, the TLS
    connection is half-closed and, after at most ``linger`` seconds (None: no limit) for the peer
    to finish, closed.
    """

    def __init__(self, tls, read_fd, write_fd, end_write, linger=None):
        # type: (Any, int, int, Callable[[], None], Optional[float]) -> None
        self.tls = tls
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.end_write = end_write
        self.linger = linger

    def stop(self):
        # type: () -> None
        """End the relay from another thread: the TLS connection is shut down, unsent bytes dropped."""
        try:
            socket.socket.shutdown(self.tls, socket.SHUT_RDWR)  # the raw socket: SSLSocket's would drop TLS
        except OSError:
            pass

    def run(self):
        # type: () -> None
        import ssl

        tls = self.tls
        tls.setblocking(False)
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        to_plain = bytearray()
        queued = bytearray()  # plain bytes waiting for TLS
        sending = b""  # the piece TLS could not take yet: offered again unchanged
        sending_waits_for = 0  # select.POLLOUT or POLLIN: what TLS needs before that piece goes
        net_in = plain_in = True  # still reading each side
        net_ok = plain_ok = True  # still able to write each side
        plain_ended = net_ended = False  # we told each side that the other one ended
        give_up_at = None  # type: Optional[float]
        poller = select.poll()
        while True:
            while net_in and len(to_plain) < RELAY_LIMIT:  # whatever TLS has for us, up to the limit
                try:
                    data = tls.recv(RELAY_CHUNK)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                except OSError:
                    net_in = net_ok = False
                    break
                if not data:
                    net_in = False
                    break
                to_plain += data
            if to_plain and plain_ok:
                try:
                    del to_plain[:os.write(self.write_fd, to_plain)]
                except BlockingIOError:
                    pass
                except OSError:
                    plain_ok = False
            if not plain_ok:
                del to_plain[:]
            if not net_in and not to_plain and not plain_ended:
                plain_ended = True
                self.end_write()
            while plain_in and net_ok and len(queued) < RELAY_LIMIT:
                try:
                    data = os.read(self.read_fd, RELAY_CHUNK)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    plain_in = False
                    break
                queued += data
            while net_ok and (sending or queued):
                if not sending:
                    sending = bytes(queued[:16384])  # one TLS record
                    del queued[:len(sending)]
                try:
                    sending = sending[tls.send(sending):]
                    sending_waits_for = 0
                except ssl.SSLWantWriteError:
                    sending_waits_for = select.POLLOUT
                    break
                except ssl.SSLWantReadError:
                    sending_waits_for = select.POLLIN
                    break
                except OSError:
                    net_ok = False
            if not net_ok:
                sending, plain_in = b"", False
                del queued[:]
            if not plain_in and not sending and not queued and not net_ended:
                net_ended = True
                if net_ok:
                    try:
                        socket.socket.shutdown(tls, socket.SHUT_WR)  # as stop(): keep TLS for reading
                    except OSError:
                        net_ok = False
                if self.linger is not None:
                    give_up_at = time.monotonic() + self.linger
            if net_ended and plain_ended:
                return
            timeout = None
            if give_up_at is not None:
                timeout = give_up_at - time.monotonic()
                if timeout <= 0:
                    return
            self._wait(poller, net_in and len(to_plain) < RELAY_LIMIT, sending_waits_for if sending else 0,
                       plain_in and len(queued) < RELAY_LIMIT, bool(to_plain) and plain_ok, timeout)

    def _wait(self, poller, net_read, net_needs, plain_read, plain_write, timeout):
        # type: (Any, bool, int, bool, bool, Optional[float]) -> None
        """Sleep until one of the wanted directions can move."""
        wanted = {}  # type: Dict[int, int]
        net_events = (select.POLLIN if net_read else 0) | net_needs
        for fd, events in ((self.tls.fileno(), net_events),
                           (self.read_fd, select.POLLIN if plain_read else 0),
                           (self.write_fd, select.POLLOUT if plain_write else 0)):
            if events:
                wanted[fd] = wanted.get(fd, 0) | events
        for fd, events in wanted.items():
            poller.register(fd, events)
        try:
            poller.poll(None if timeout is None else max(timeout, 0.0) * 1000)
        except InterruptedError:
            pass
        finally:
            for fd in wanted:
                poller.unregister(fd)


# -- the server -------------------------------------------------------------------------------
class Server(object):
    """Accepts clients, runs the handshake, and starts a far Python for each one that proves the token."""

    def __init__(self, host, port, token, handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT,
                 max_handshakes=DEFAULT_MAX_HANDSHAKES, log=None, log_accepts=True, child_stderr=None,
                 max_per_address=DEFAULT_MAX_PER_ADDRESS, tls_cert=None, tls_key=None, weak_token_ok=False):
        # type: (str, int, bytes, float, int, Optional[Callable[[str], None]], bool, Optional[int], int, Optional[str], Optional[str], bool) -> None  # noqa: E501
        if not token:
            raise ValueError("the token is empty; " + HOW_TO_MAKE_A_TOKEN)
        weakness = None if weak_token_ok else token_weakness(token)
        if weakness is not None:
            raise ValueError("the token is too weak: %s (%s)" % (weakness, TOKEN_RULE))
        self.powers = TokenPowers(token)
        self.handshake_timeout = handshake_timeout
        self.log = log or _log_to_stderr
        self.log_accepts = log_accepts
        self.child_stderr = child_stderr  # None: the far Pythons write to our stderr
        self.max_handshakes = max_handshakes
        self.max_per_address = max_per_address
        self.tls = None  # type: Any
        self.binding = b""
        if tls_cert is not None:
            self.tls, self.binding = server_tls_context(tls_cert, tls_key)
        self._slots = threading.Lock()
        self._in_handshake = {}  # type: Dict[str, int]  # address key -> handshakes running
        self._handshakes = 0
        self._busy_log = {}  # type: Dict[str, List[float]]  # address key -> [time of last line, lines held back]
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
                self._start_handshake(conn, peer[0], format_address(peer[0], peer[1]))
        finally:
            self.sock.close()

    def _start_handshake(self, conn, host, peer):
        # type: (socket.socket, str, str) -> None
        key = address_key(host)
        with self._slots:
            if self._in_handshake.get(key, 0) >= self.max_per_address:
                reason = "more than %d handshakes at once from %s" % (self.max_per_address, key)
            elif self._handshakes >= self.max_handshakes:
                reason = "more than %d handshakes at once" % (self.max_handshakes,)
            else:
                reason = None
                self._in_handshake[key] = self._in_handshake.get(key, 0) + 1
                self._handshakes += 1
        if reason is not None:
            self._refuse_busy(conn, key, peer, reason + "; try again later")
            return
        thread = threading.Thread(target=self._serve_client, args=(conn, key, peer),
                                  name="execwire-server-%s" % peer)
        thread.daemon = True
        try:
            thread.start()
        except RuntimeError as exc:  # cannot start a thread
            self._release(key)
            self.log("%s: refused: %s" % (peer, exc))
            conn.close()

    def _refuse_busy(self, conn, key, peer, reason):
        # type: (socket.socket, str, str, str) -> None
        """Refuse at once, without a thread; one log line per address every 10 seconds at most."""
        if self.tls is None:  # a TLS client could not read a plain answer: it only sees the close
            try:
                conn.setblocking(False)  # never stall the accept loop on a bad client
                conn.send(MAGIC + bytes([VERSION]) + refusal(reason))
            except OSError:
                pass
        conn.close()
        now = time.monotonic()
        with self._slots:
            last = self._busy_log.setdefault(key, [-1e9, 0])
            if now - last[0] < 10.0:
                last[1] += 1
                return
            held_back, last[0], last[1] = last[1], now, 0
            if len(self._busy_log) > 10000:
                self._busy_log.clear()
        more = " (and %d more refused like it)" % held_back if held_back else ""
        self.log("%s: refused: %s%s" % (peer, reason, more))

    def _release(self, key):
        # type: (str) -> None
        with self._slots:
            self._handshakes -= 1
            left = self._in_handshake[key] - 1
            if left:
                self._in_handshake[key] = left
            else:
                del self._in_handshake[key]

    def _serve_client(self, conn, key, peer):
        # type: (socket.socket, str, str) -> None
        linger = False
        stage1 = ""
        deadline = time.monotonic() + self.handshake_timeout
        try:
            if self.tls is not None:
                conn = self._tls_handshake(conn, deadline)
            stage1 = self.handshake(conn, deadline)
            failure = None  # type: Optional[str]
        except Refused as exc:
            failure, linger = "refused: %s" % (exc,), True
        except socket.timeout:  # noqa: UP041 - a distinct class before Python 3.10
            failure = "refused: no complete handshake within %g seconds" % (self.handshake_timeout,)
        except OSError as exc:  # ssl.SSLError too
            failure = "refused: connection failed during the handshake: %s" % (exc,)
        except Exception as exc:  # a bug here must not stop the server
            failure = "refused: server error during the handshake: %r" % (exc,)
        finally:
            self._release(key)  # before the client can see the outcome
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
            conn.close()
            return
        if self.tls is None:
            conn.close()  # the far Python holds its own copy
        if self.log_accepts:
            self.log("%s: authenticated; far Python pid %d started" % (peer, popen.pid))
        if self.tls is not None:
            self._relay_for(conn, popen)
        code = popen.wait()
        if self.log_accepts:
            self.log("%s: far Python pid %d ended with exit code %s" % (peer, popen.pid, code))

    def _relay_for(self, conn, popen):
        # type: (Any, subprocess.Popen[bytes]) -> None
        assert popen.stdin is not None and popen.stdout is not None
        child_in, child_out = popen.stdin, popen.stdout
        try:
            TlsRelay(conn, child_out.fileno(), child_in.fileno(), child_in.close, linger=10.0).run()
        finally:
            for stream in (child_in, child_out, conn):
                try:
                    stream.close()
                except OSError:
                    pass

    def handshake(self, conn, deadline):
        # type: (socket.socket, float) -> str
        """Run the server's half of the handshake (after TLS, if so); return the client's stage-1 program.

        Raises Refused (with the reason for the log; the client has been told) or socket.timeout.
        """
        head = recv_exact(conn, len(MAGIC) + 1, deadline, "its hello", _check_magic)
        if head[-1] != VERSION:
            reason = "handshake version %d is not supported; this server speaks version %d" % (head[-1], VERSION)
            if head[-1] < VERSION:
                reason += ": update execwire on the client"
            conn.sendall(MAGIC + bytes([VERSION]) + refusal(reason))
            raise Refused(reason)
        client_message = recv_exact(conn, ELEMENT_SIZE, deadline, "its SPAKE2 message")
        exchange = Spake2(self.powers, b"server")
        try:
            ours, theirs = exchange.confirmations(client_message, self.binding)
        except ValueError as exc:
            conn.sendall(MAGIC + bytes([VERSION]) + refusal("invalid handshake: %s" % exc))
            raise Refused("invalid handshake: %s" % exc)
        conn.sendall(MAGIC + bytes([VERSION, OK]) + exchange.message + ours)
        try:
            proof = recv_exact(conn, CONFIRM_SIZE, deadline, "its confirmation")
        except Refused:
            raise Refused("the client closed the connection without proving it knows the token "
                          "(a client with another token does that)")
        if not hmac.compare_digest(proof, theirs):
            conn.sendall(refusal("wrong token: the client's confirmation does not match the server's token"))
            raise Refused("wrong token: the client's confirmation does not match")
        size = LENGTH.unpack(recv_exact(conn, LENGTH.size, deadline, "the program's length"))[0]
        if size > MAX_STAGE1:
            reason = "stage-1 program of %d bytes is over the limit of %d bytes" % (size, MAX_STAGE1)
            conn.sendall(refusal(reason))
            raise Refused(reason)
        try:
            program = recv_exact(conn, size, deadline, "the stage-1 program").decode("utf-8")
        except UnicodeDecodeError:
            conn.sendall(refusal("the stage-1 program is not UTF-8 text"))
            raise Refused("the stage-1 program is not UTF-8 text")
        conn.sendall(bytes([OK]))
        return program

    def _tls_handshake(self, conn, deadline):
        # type: (socket.socket, float) -> socket.socket
        """The TLS connection; Refused (a plain execwire client is told why) or socket.timeout."""
        conn.settimeout(max(deadline - time.monotonic(), 0.001))
        first = conn.recv(1, socket.MSG_PEEK)
        if not first:
            raise Refused("closed the connection before the handshake")
        if first == MAGIC[:1]:
            reason = "this server requires TLS: add //tls (or //tls_ca=PATH) to the gateway spec"
            conn.sendall(MAGIC + bytes([VERSION]) + refusal(reason))
            raise Refused("a client without TLS: " + reason)
        tls = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()  # noqa: UP041
        tls.settimeout(remaining)
        try:
            tls.do_handshake()
        except OSError as exc:
            tls.close()
            if isinstance(exc, socket.timeout):  # noqa: UP041
                raise
            raise Refused("the TLS handshake failed: %s" % (exc,))
        return tls

    def start_python(self, conn, program):
        # type: (socket.socket, str) -> subprocess.Popen[bytes]
        """Run ``program`` in a new Python whose stdin and stdout are the connection (or pipes to the
        TLS relay)."""
        argv = [sys.executable, "-c", program]
        if self.tls is not None:
            return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.child_stderr,
                                    close_fds=True, start_new_session=True, bufsize=0)
        conn.settimeout(None)  # blocking again: the far Python shares this descriptor's flags
        return subprocess.Popen(argv, stdin=conn.fileno(), stdout=conn.fileno(),
                                stderr=self.child_stderr, close_fds=True, start_new_session=True)


def _linger_close(conn):
    # type: (socket.socket) -> None
    """Close so that the refusal we sent arrives instead of a reset: stop writing, drain briefly."""
    try:
        socket.socket.shutdown(conn, socket.SHUT_WR)  # also under TLS: the peer has read our refusal
        deadline = time.monotonic() + 1.0
        drained = 0
        while drained < 1 << 20 and time.monotonic() < deadline:
            conn.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = conn.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except (OSError, ValueError):
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
            sock.listen(1024)
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
    """The shared secret from ``token_file`` or $EXECWIRE_TOKEN; SystemExit naming what to do if none
    or if it is too weak."""
    if token_file:
        try:
            with open(token_file, "rb") as stream:
                token = stream.read().strip()
            mode = os.stat(token_file).st_mode
        except OSError as exc:
            raise SystemExit("execwire.server: cannot read the token file %s: %s" % (token_file, exc.strerror))
        where = "the token file %s" % token_file
        if not token:
            raise SystemExit("execwire.server: %s is empty; %s" % (where, HOW_TO_MAKE_A_TOKEN))
        if mode & 0o077:
            _log_to_stderr("warning: the token file %s can be read by other users; chmod 600 it" % token_file)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip().encode("utf-8")
        where = "$%s" % TOKEN_ENV
        if not token:
            raise SystemExit("execwire.server: no token, so nobody could connect safely; " + HOW_TO_MAKE_A_TOKEN)
    weakness = token_weakness(token)
    if weakness is not None:
        raise SystemExit("execwire.server: the token in %s is too weak: %s; %s. Make a strong one with: "
                         "python -m execwire.server --new-token FILE" % (where, weakness, TOKEN_RULE))
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
    parser.add_argument("--new-token", metavar="FILE",
                        help="write a new random token to FILE (mode 0600) and exit; see --force")
    parser.add_argument("--force", action="store_true", help="with --new-token: replace FILE if it exists")
    parser.add_argument("--tls-cert", metavar="FILE",
                        help="serve TLS with this PEM certificate (chain); clients then need //tls")
    parser.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (default: in --tls-cert)")
    parser.add_argument("--handshake-timeout", type=float, default=DEFAULT_HANDSHAKE_TIMEOUT,
                        help="seconds a client has to authenticate (default %g)" % DEFAULT_HANDSHAKE_TIMEOUT)
    parser.add_argument("--max-handshakes", type=int, default=DEFAULT_MAX_HANDSHAKES,
                        help="clients authenticating at the same time (default %d)" % DEFAULT_MAX_HANDSHAKES)
    parser.add_argument("--max-per-address", type=int, default=DEFAULT_MAX_PER_ADDRESS,
                        help="of those, from one IPv4 address or IPv6 /64 (default %d)" % DEFAULT_MAX_PER_ADDRESS)
    options = parser.parse_args(argv)
    if options.new_token:
        return _new_token(options.new_token, options.force)
    if options.force:
        parser.error("--force goes with --new-token")
    if options.tls_key and not options.tls_cert:
        parser.error("--tls-key goes with --tls-cert")
    token = read_token(options.token_file)
    try:
        server = Server(options.host, options.port, token, options.handshake_timeout, options.max_handshakes,
                        max_per_address=options.max_per_address, tls_cert=options.tls_cert,
                        tls_key=options.tls_key)
    except ValueError as exc:  # the TLS certificate or key
        raise SystemExit("execwire.server: %s" % (exc,))
    except (OSError, OverflowError) as exc:
        raise SystemExit("execwire.server: cannot listen on %s: %s"
                         % (format_address(options.host, options.port), exc))
    if server.tls is not None:
        _log_to_stderr("serving TLS with the certificate in %s" % options.tls_cert)
    sys.stdout.write("listening on %s\n" % server.address)
    sys.stdout.flush()
    try:
        server.serve()
    except KeyboardInterrupt:
        _log_to_stderr("stopped")
    return 0


def _new_token(path, force):
    # type: (str, bool) -> int
    try:
        write_new_token(path, force)
    except FileExistsError:
        raise SystemExit("execwire.server: %s exists; not overwriting it (add --force to replace it with a "
                         "new token)" % path)
    except OSError as exc:
        raise SystemExit("execwire.server: cannot write the token file %s: %s" % (path, exc.strerror or exc))
    sys.stdout.write("wrote a new token (256 bits, mode 0600) to %s; start the server with --token-file %s\n"
                     % (path, path))
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
                   threading.Thread(target=server.serve, args=(stop,), name="execwire-server"),):
        thread.daemon = True
        thread.start()
    channel.send((server.host, server.port, control))


if __name__ == "__channelexec__":
    serve_channel(globals()["channel"])
elif __name__ == "__main__":
    sys.exit(main())
