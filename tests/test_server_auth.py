"""Socket server authentication as an attacker tries it: guessing a weak token offline, and weak tokens.

The handshake is SPAKE2 with the token as the password (see server.py). A weak token (``hunter2``)
is used on purpose, in a server started with ``weak_token_ok=True``, to show that a client or a
server without the token gets nothing from a connection that lets it try a dictionary offline.
The attacks are checked to work where they should: against the old handshake (an HMAC of the
token sent before the client proved anything) and against a SPAKE2 connection whose one online
guess was right. Traffic goes to loopback only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from test_server import MAGIC, closed_by_peer, make_token_file, recv_exact, start_server

import execwire
from execwire import server as srv

pytestmark = pytest.mark.timeout(60)

WEAK = b"hunter2"
# a small dictionary with the weak token somewhere in it
WORDS = [word.encode() for word in (
    "123456 password 12345678 qwerty abc123 monkey letmein dragon 111111 baseball iloveyou trustno1 "
    "sunshine master welcome shadow ashley football jesus michael ninja mustang password1 hunter "
    "hunter1 hunter2 hunter3 secret execwire admin root toor changeme"
).split()]


class InProcessServer:
    """A Server in a thread of this process, so a test can give it a weak token."""

    def __init__(self, token: bytes, log_path: Path) -> None:
        self.lines: list[str] = []
        self.server = srv.Server("127.0.0.1", 0, token, handshake_timeout=5, log=self.lines.append,
                                 weak_token_ok=True, child_stderr=subprocess.DEVNULL)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.server.serve, args=(self.stop,), daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.server.host, self.server.port

    def wait_log(self, text: str) -> bool:
        return wait_until(lambda: any(text in line for line in self.lines), 10)


@pytest.fixture
def weak_server(tmp_path: Path) -> Iterator[InProcessServer]:
    running = InProcessServer(WEAK, tmp_path / "log")
    try:
        yield running
    finally:
        running.stop.set()
        running.thread.join(10)


# -- the attacks ------------------------------------------------------------------------------------
def old_handshake_transcript(token: bytes) -> tuple[bytes, bytes, bytes]:
    """What the old server sent anyone who connected: (client nonce, server nonce, HMAC proof)."""
    client_nonce, server_nonce = os.urandom(32), os.urandom(32)
    proof = hmac.new(token, b"execwire-socket server " + client_nonce + server_nonce, hashlib.sha256).digest()
    return client_nonce, server_nonce, proof


def guess_old_handshake(client_nonce: bytes, server_nonce: bytes, proof: bytes) -> list[bytes]:
    """Every word that reproduces the proof."""
    return [word for word in WORDS
            if hmac.new(word, b"execwire-socket server " + client_nonce + server_nonce,
                        hashlib.sha256).digest() == proof]


def guess_as_client(exchange: srv.Spake2, server_message: bytes, server_confirmation: bytes) -> list[bytes]:
    """An impostor client knows its own secret exponent and everything it received: for every word,
    compute the server's confirmation as it would be if the server's token were that word."""
    found = []
    for word in WORDS:
        exchange._powers = srv.TokenPowers(word)  # the same exponent and message, another token
        if exchange.confirmations(server_message, b"")[1] == server_confirmation:
            found.append(word)
    return found


def guess_as_server(exchange: srv.Spake2, client_message: bytes, received_after: bytes) -> list[bytes]:
    """An impostor server knows its secret exponent and what the client sent: for every word, compute
    the client's confirmation as it would be if the client's token were that word, and look for it."""
    found = []
    for word in WORDS:
        exchange._powers = srv.TokenPowers(word)
        if exchange.confirmations(client_message, b"")[1] in received_after:
            found.append(word)
    return found


def impostor_client(address: tuple[str, int], guess: bytes) -> tuple[srv.Spake2, bytes, bytes]:
    """Connect with ``guess`` for a token; return the exchange and the server's message and confirmation."""
    exchange = srv.Spake2(srv.TokenPowers(guess), b"client")
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(MAGIC + bytes([srv.VERSION]) + exchange.message)
        assert recv_exact(sock, len(MAGIC) + 2) == MAGIC + bytes([srv.VERSION, srv.OK])
        server_message = recv_exact(sock, srv.ELEMENT_SIZE)
        server_confirmation = recv_exact(sock, srv.CONFIRM_SIZE)
    return exchange, server_message, server_confirmation


def test_the_old_handshake_gave_the_token_away_to_anyone_who_connected():
    # the dictionary attack itself works: on what the old server sent before the client proved anything
    assert guess_old_handshake(*old_handshake_transcript(WEAK)) == [WEAK]


def test_an_impostor_client_cannot_test_guesses_offline(weak_server):
    exchange, server_message, server_confirmation = impostor_client(weak_server.address, b"password")
    assert guess_as_client(exchange, server_message, server_confirmation) == []  # not even hunter2
    assert weak_server.wait_log("refused: the client closed the connection without proving it knows the token")
    # the same attack finds the token when the impostor's one online guess was right: each
    # connection tests one guess, and the server logs it
    assert guess_as_client(*impostor_client(weak_server.address, WEAK)) == [WEAK]


def test_an_impostor_server_gets_no_proof_and_nothing_to_test_guesses_against(tmp_path):
    token_file = make_token_file(tmp_path, WEAK.decode())
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, object] = {}

    def impostor() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            head = recv_exact(conn, len(MAGIC) + 1)
            client_message = recv_exact(conn, srv.ELEMENT_SIZE)
            exchange = srv.Spake2(srv.TokenPowers(b"password"), b"server")  # its best guess
            ours, _ = exchange.confirmations(client_message, b"")
            conn.sendall(MAGIC + bytes([srv.VERSION, srv.OK]) + exchange.message + ours)
            after = b""
            while chunk := conn.recv(4096):
                after += chunk
            seen.update(head=head, exchange=exchange, client_message=client_message, after=after)

    thread = threading.Thread(target=impostor, daemon=True)
    thread.start()
    group = execwire.Group()
    try:
        with pytest.raises(execwire.AuthenticationError, match="could not prove it knows our token"):
            group.makegateway(f"socket=127.0.0.1:{listener.getsockname()[1]}//token_file={token_file}")
    finally:
        group.terminate(timeout=5)
        thread.join(10)
        listener.close()
    assert seen["head"] == MAGIC + bytes([srv.VERSION])
    assert seen["after"] == b""  # the client sent no confirmation, no program, no code
    assert guess_as_server(seen["exchange"], seen["client_message"], seen["after"]) == []


def test_a_client_with_the_weak_token_still_connects(weak_server, tmp_path):
    # the PAKE works for any token; only the server's start-up rule refuses weak ones
    token_file = make_token_file(tmp_path, WEAK.decode())
    group = execwire.Group()
    try:
        host, port = weak_server.address
        gw = group.makegateway(f"socket={host}:{port}//token_file={token_file}")
        assert gw.remote_exec("channel.send(6 * 7)").receive(timeout=20) == 42
    finally:
        group.terminate(timeout=5)


def test_a_wrong_confirmation_is_refused_and_runs_nothing(weak_server, tmp_path):
    exchange = srv.Spake2(srv.TokenPowers(b"password"), b"client")
    with socket.create_connection(weak_server.address, timeout=10) as sock:
        sock.sendall(MAGIC + bytes([srv.VERSION]) + exchange.message)
        recv_exact(sock, len(MAGIC) + 2 + srv.ELEMENT_SIZE + srv.CONFIRM_SIZE)
        sock.sendall(os.urandom(32) + b"\0\0\0\x05" + b"pass\n")
        assert recv_exact(sock, 1) == b"\x01"
        assert closed_by_peer(sock, 5)
    assert weak_server.wait_log("refused: wrong token")


@pytest.mark.parametrize("message", [b"\0" * 256, b"\0" * 255 + b"\x01", (srv.PRIME - 1).to_bytes(256, "big"),
                                     b"\xff" * 256])
def test_a_spake2_message_outside_the_group_is_refused(weak_server, message):
    with socket.create_connection(weak_server.address, timeout=10) as sock:
        sock.sendall(MAGIC + bytes([srv.VERSION]) + message)
        assert recv_exact(sock, len(MAGIC) + 2) == MAGIC + bytes([srv.VERSION, srv.REFUSED])
    assert weak_server.wait_log("refused: invalid handshake: its SPAKE2 message is not an element of the group")


def test_the_group_is_a_safe_prime_and_the_points_lie_in_its_subgroup():
    def probably_prime(number: int) -> bool:  # Miller-Rabin with fixed bases
        odd, twos = number - 1, 0
        while odd % 2 == 0:
            odd, twos = odd // 2, twos + 1
        for base in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
            x = pow(base, odd, number)
            if x in (1, number - 1):
                continue
            for _ in range(twos - 1):
                x = pow(x, 2, number)
                if x == number - 1:
                    break
            else:
                return False
        return True

    order = (srv.PRIME - 1) // 2
    assert srv.PRIME.bit_length() == 2048 and probably_prime(srv.PRIME) and probably_prime(order)
    for point in (srv.POINT_M, srv.POINT_N):
        assert 1 < point < srv.PRIME - 1 and pow(point, order, srv.PRIME) == 1
    assert srv.POINT_M != srv.POINT_N


def test_a_version_1_client_is_told_to_update(weak_server):
    with socket.create_connection(weak_server.address, timeout=10) as sock:
        sock.sendall(MAGIC + b"\x01" + os.urandom(32))
        assert recv_exact(sock, len(MAGIC) + 2) == MAGIC + bytes([srv.VERSION, srv.REFUSED])
        size = int.from_bytes(recv_exact(sock, 2), "big")
        assert "version 1 is not supported; this server speaks version 2: update execwire" in \
            recv_exact(sock, size).decode()


# -- the token rule -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("token", "why"), [
    ("hunter2", "it has 7 characters, fewer than 32"),
    ("a" * 40, "it uses only 1 different characters, fewer than 8"),
    ("31415926535897932384626433832795", "32 decimal digits are worth about 106 bits, fewer than 128"),
    ("password1234password1234password1234", "it repeats a pattern of 12 characters"),
    ("0123456789abcdef" * 2 + "01", "it repeats a pattern of 16 characters"),
    ("x" * 2000, "it has 2000 characters, more than 1024"),
])
def test_the_server_refuses_a_weak_token_naming_the_file_and_the_rule(tmp_path, token, why):
    token_file = make_token_file(tmp_path, token)
    result = subprocess.run([sys.executable, "-m", "execwire.server", "--port", "0", "--token-file", str(token_file)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and result.stdout == ""  # it never listened
    assert f"the token in the token file {token_file} is too weak: {why}" in result.stderr
    assert "a token needs 32 to 1024 characters" in result.stderr and "--new-token FILE" in result.stderr
    env = dict(os.environ, EXECWIRE_TOKEN=token)
    result = subprocess.run([sys.executable, "-m", "execwire.server", "--port", "0"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and f"the token in $EXECWIRE_TOKEN is too weak: {why}" in result.stderr
    with pytest.raises(ValueError, match="the token is too weak"):
        srv.Server("127.0.0.1", 0, token.encode())


@pytest.mark.parametrize("token", [
    "0123456789abcdeffedcba9876543210",  # 32 hex digits: 128 bits
    "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0",  # base64-like
    "correct horse battery staple, with a typo: stapel!",
])
def test_the_server_accepts_a_strong_token(token):
    assert srv.token_weakness(token.encode()) is None


def test_generated_tokens_always_pass_the_rule():
    import secrets

    for _ in range(2000):
        assert srv.token_weakness(secrets.token_hex(16).encode()) is None
        assert srv.token_weakness(secrets.token_urlsafe(24).encode()) is None


# -- --new-token ----------------------------------------------------------------------------------------
def new_token(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "execwire.server", "--new-token", str(path), *extra],
                          capture_output=True, text=True, timeout=30, preexec_fn=lambda: os.umask(0))


def test_new_token_writes_a_strong_token_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "token"
    result = new_token(path)  # with umask 0: the mode must not depend on it
    assert result.returncode == 0, result.stderr
    assert f"wrote a new token (256 bits, mode 0600) to {path}" in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text()
    assert token.endswith("\n") and len(token.strip()) == 64 and int(token, 16) > 0
    running = start_server([sys.executable, "-m", "execwire.server", "--port", "0", "--token-file", str(path)],
                           tmp_path / "log")
    try:
        group = execwire.Group()
        try:
            gw = group.makegateway(f"socket={running.spec_address}//token_file={path}")
            assert gw.remote_exec("channel.send('fresh')").receive(timeout=20) == "fresh"
        finally:
            group.terminate(timeout=5)
    finally:
        running.stop()
    assert "warning" not in running.log()


def test_new_token_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "token"
    path.write_text("keep me\n")
    result = new_token(path)
    assert result.returncode != 0
    assert f"{path} exists; not overwriting it (add --force to replace it" in result.stderr
    assert path.read_text() == "keep me\n"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")  # a dangling link is not followed either
    assert new_token(link).returncode != 0 and not (tmp_path / "elsewhere").exists()
    path.chmod(0o644)
    result = new_token(path, "--force")
    assert result.returncode == 0, result.stderr
    assert path.read_text() != "keep me\n" and len(path.read_text().strip()) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "token"]  # no temporary file left


def test_new_token_errors_name_the_problem(tmp_path):
    result = new_token(tmp_path / "missing-folder" / "token")
    assert result.returncode != 0 and "cannot write the token file" in result.stderr
    result = subprocess.run([sys.executable, "-m", "execwire.server", "--force"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and "--force goes with --new-token" in result.stderr
