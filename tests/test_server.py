"""The socket server as a real process: start-up, plain-script use without execwire, and bad clients.

Every bad client (garbage, a frame header, a wrong token, silence, a 4 GiB length) must be
refused or timed out with a line in the server's log, start nothing, and leave the server
serving good clients. Traffic goes to loopback only.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import find_python, wait_until

import execwire
import execwire.server

pytestmark = pytest.mark.timeout(60)

SERVER_PY = Path(execwire.server.__file__)
MAGIC = b"execwire"


# -- helpers, also used by test_socket_gateway.py ----------------------------------------------------------
class RunningServer:
    """A server process, the address it printed and its log (stderr, written to a file)."""

    def __init__(self, popen: subprocess.Popen[bytes], host: str, port: int, log_path: Path) -> None:
        self.popen = popen
        self.host = host
        self.port = port
        self.log_path = log_path

    @property
    def spec_address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, count: int = 1, timeout: float = 10.0) -> bool:
        """True once ``text`` appears ``count`` times in the log."""
        return wait_until(lambda: self.log().count(text) >= count, timeout)

    def children(self) -> list[int]:
        """Pids of the server's live child processes (far Pythons it started)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.popen.pid and fields[0] not in ("Z", "X"):
                found.append(int(stat.parent.name))
        return found

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def start_server(argv: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, timeout: float = 15.0) -> RunningServer:
    """Run a server command and wait (bounded) for its ``listening on HOST:PORT`` line."""
    log = log_path.open("wb")
    popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env, cwd=cwd)
    log.close()
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([popen.stdout], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(popen.stdout.fileno(), 1) if ready else b""
        if not chunk:
            popen.kill()
            popen.wait(5)
            raise AssertionError(f"server printed no address: {line!r}; log: {log_path.read_text()}")
        line += chunk
    text = line.decode().strip()
    assert text.startswith("listening on "), text
    host, _, port = text[len("listening on "):].rpartition(":")
    return RunningServer(popen, host.strip("[]"), int(port), log_path)


def make_token_file(folder: Path, token: str | None = None) -> Path:
    path = folder / "token"
    path.write_text((token or secrets.token_hex(32)) + "\n")
    path.chmod(0o600)
    return path


def module_server_argv(token_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "execwire.server", "--port", "0", "--token-file", str(token_file), *extra]


def loopback_v6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


# -- a client written from the protocol description, to misbehave on purpose ---------------------------
def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"closed after {data!r}")
        data += chunk
    return data


class Hello:
    """A client's side after the first two messages: the socket, and what it needs to go on."""

    def __init__(self, sock: socket.socket, exchange: execwire.server.Spake2, server_message: bytes,
                 server_confirmation: bytes) -> None:
        self.sock = sock
        self.exchange = exchange
        self.server_message = server_message
        self.server_confirmation = server_confirmation

    def confirmations(self, binding: bytes = b"") -> tuple[bytes, bytes]:
        """(ours, the server's as our token predicts it)."""
        return self.exchange.confirmations(self.server_message, binding)


def hello(server: RunningServer, token: bytes) -> Hello:
    """Connect and exchange the SPAKE2 messages as a client with ``token``."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    exchange = execwire.server.Spake2(execwire.server.TokenPowers(token), b"client")
    sock.sendall(MAGIC + b"\x02" + exchange.message)
    assert recv_exact(sock, len(MAGIC) + 2) == MAGIC + b"\x02\x00"
    return Hello(sock, exchange, recv_exact(sock, 256), recv_exact(sock, 32))


def read_refusal(sock: socket.socket) -> str:
    status = recv_exact(sock, 1)
    assert status == b"\x01", status
    size = struct.unpack("!H", recv_exact(sock, 2))[0]
    return recv_exact(sock, size).decode()


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True if the peer closes within ``timeout`` (whatever it sent before is skipped)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:  # noqa: UP041 - same class on 3.10+, spelled as the docs do
        return False
    except ConnectionResetError:
        pass
    return True


def assert_serves_a_good_client(server: RunningServer, token_file: Path) -> None:
    group = execwire.Group()
    try:
        gw = group.makegateway(f"socket={server.spec_address}//token_file={token_file}")
        assert gw.remote_exec("channel.send(channel.receive() + 1)").send(41) is None
        channel = gw.remote_exec("channel.send(6 * 7)")
        assert channel.receive(timeout=20) == 42
    finally:
        group.terminate(timeout=5)


# -- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return make_token_file(tmp_path)


@pytest.fixture
def server(tmp_path: Path, token_file: Path) -> Iterator[RunningServer]:
    """``python -m execwire.server`` on a free loopback port; bad clients get 5 s to finish a handshake."""
    running = start_server(module_server_argv(token_file, "--handshake-timeout", "5"), tmp_path / "server.log")
    try:
        yield running
    finally:
        running.stop()


# -- start-up --------------------------------------------------------------------------------------------
def test_module_server_listens_on_loopback_and_runs_a_gateway(server, token_file):
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert_serves_a_good_client(server, token_file)
    assert server.wait_log("authenticated; far Python pid")
    assert server.wait_log("ended with exit code 0")  # the gateway's exit ended its far Python
    assert "RuntimeWarning" not in server.log()


@pytest.mark.parametrize("version", ["3.6", "3.13"])
def test_a_copy_of_the_file_runs_alone_without_execwire(tmp_path, token_file, version):
    python = find_python(f"{version}*")
    if python is None:
        pytest.skip(f"no Python {version} under pyenv")
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(SERVER_PY, folder / "server.py")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    check = subprocess.run([python, "-c", "import execwire"], cwd=folder, env=env, capture_output=True, timeout=30)
    assert check.returncode != 0 and b"No module named 'execwire'" in check.stderr
    running = start_server([python, "server.py", "--port", "0", "--token-file", str(token_file)],
                           tmp_path / "server.log", env=env, cwd=folder)
    try:
        group = execwire.Group()
        try:
            gw = group.makegateway(f"socket={running.spec_address}//token_file={token_file}")
            assert gw._rinfo().version_info[:2] == tuple(int(part) for part in version.split("."))
            channel = gw.remote_exec("import sys; channel.send(sys.executable)")
            assert channel.receive(timeout=20) == python
        finally:
            group.terminate(timeout=5)
    finally:
        running.stop()


def test_refuses_to_start_without_a_token(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "EXECWIRE_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "execwire.server", "--port", "0"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert result.stdout == ""  # it never listened
    assert "no token" in result.stderr
    assert "--token-file" in result.stderr and "EXECWIRE_TOKEN" in result.stderr
    assert "--new-token FILE" in result.stderr  # says how to make one
    empty = tmp_path / "empty"
    empty.write_text("\n")
    result = subprocess.run([sys.executable, str(SERVER_PY), "--port", "0", "--token-file", str(empty)],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "is empty" in result.stderr


def test_token_from_the_environment(tmp_path, monkeypatch):
    token = secrets.token_hex(16)
    env = dict(os.environ, EXECWIRE_TOKEN=token)
    running = start_server([sys.executable, "-m", "execwire.server", "--port", "0"], tmp_path / "log", env=env)
    try:
        monkeypatch.setenv("EXECWIRE_TOKEN", token)
        group = execwire.Group()
        try:
            gw = group.makegateway(f"socket={running.spec_address}")
            assert gw.remote_exec("channel.send('hi')").receive(timeout=20) == "hi"
        finally:
            group.terminate(timeout=5)
    finally:
        running.stop()


# -- bad clients -----------------------------------------------------------------------------------------
def test_garbage_is_refused_at_once(server, token_file):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        started = time.monotonic()
        assert closed_by_peer(sock, 4.0)  # well before the 5 s handshake deadline
        assert time.monotonic() - started < 3.0
    assert server.wait_log("refused: not an execwire client (it sent b'G")
    assert server.children() == []
    assert_serves_a_good_client(server, token_file)


def test_a_frame_header_claiming_4_gib_is_refused_before_authentication(server, token_file):
    frame_header = struct.pack("!2sBII", b"\xe7W", 3, 1, 0xFFFFFFFF)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(frame_header)
        assert closed_by_peer(sock, 4.0)
    assert server.wait_log("refused: not an execwire client")
    assert server.children() == []
    assert_serves_a_good_client(server, token_file)


def test_a_stage1_length_of_4_gib_is_refused_after_authentication(server, token_file, tmp_path):
    client = hello(server, token_file.read_bytes().strip())
    with client.sock as sock:
        sock.sendall(client.confirmations()[0] + struct.pack("!I", 0xFFFFFFFF))
        started = time.monotonic()
        reason = read_refusal(sock)
        assert "4294967295 bytes is over the limit" in reason
        assert closed_by_peer(sock, 4.0)
        assert time.monotonic() - started < 3.0  # it did not try to read 4 GiB
    assert server.wait_log("refused: stage-1 program of 4294967295 bytes is over the limit")
    assert server.children() == []
    assert_serves_a_good_client(server, token_file)


def test_a_wrong_token_runs_nothing(server, token_file, tmp_path):
    marker = tmp_path / "ran"
    program = f"open({str(marker)!r}, 'w').close()".encode()
    client = hello(server, secrets.token_hex(32).encode())  # another token
    with client.sock as sock:
        ours, expected = client.confirmations()
        assert client.server_confirmation != expected  # a real client would stop here; this one goes on
        sock.sendall(ours + struct.pack("!I", len(program)) + program)
        assert read_refusal(sock).startswith("wrong token")
        assert closed_by_peer(sock, 4.0)
    assert server.wait_log("refused: wrong token")
    assert server.children() == []
    assert not marker.exists()
    assert_serves_a_good_client(server, token_file)
    assert not marker.exists()


def test_an_unknown_handshake_version_is_refused_with_the_reason(server, token_file):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(MAGIC + b"\x09" + os.urandom(32))
        assert recv_exact(sock, len(MAGIC) + 1) == MAGIC + b"\x02"
        assert "version 9 is not supported" in read_refusal(sock)
    assert server.wait_log("refused: handshake version 9 is not supported")
    assert_serves_a_good_client(server, token_file)


def test_a_silent_client_is_dropped_after_the_deadline_and_does_not_block_others(tmp_path, token_file):
    running = start_server(module_server_argv(token_file, "--handshake-timeout", "1"), tmp_path / "log")
    try:
        with socket.create_connection((running.host, running.port), timeout=10) as silent, \
                socket.create_connection((running.host, running.port), timeout=10) as half:
            half.sendall(MAGIC)  # a partial hello, then nothing
            started = time.monotonic()
            assert_serves_a_good_client(running, token_file)  # while both wait
            assert closed_by_peer(silent, 8.0)
            assert closed_by_peer(half, 8.0)
            assert 0.8 <= time.monotonic() - started < 6.0
        assert running.wait_log("refused: no complete handshake within 1 seconds", count=2)
        assert running.children() == []
    finally:
        running.stop()


def test_too_many_handshakes_at_once_are_refused(tmp_path, token_file):
    running = start_server(module_server_argv(token_file, "--max-handshakes", "2", "--handshake-timeout", "2"),
                           tmp_path / "log")
    try:
        first = socket.create_connection((running.host, running.port), timeout=10)
        second = socket.create_connection((running.host, running.port), timeout=10)
        with first, second, socket.create_connection((running.host, running.port), timeout=10) as third:
            assert closed_by_peer(third, 1.5)  # refused at once, the other two wait for their deadline
            assert running.wait_log("refused: more than 2 handshakes at once")
            assert closed_by_peer(first, 8.0)
            assert closed_by_peer(second, 8.0)
        assert_serves_a_good_client(running, token_file)  # slots are given back
    finally:
        running.stop()


def test_a_client_that_vanishes_mid_handshake_is_logged(server, token_file):
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(MAGIC + b"\x02" + b"x" * 10)
    sock.close()
    assert server.wait_log("refused: closed the connection after 10 of 256 bytes of its SPAKE2 message")
    assert_serves_a_good_client(server, token_file)


def test_listens_on_ipv6_loopback(tmp_path, token_file):
    if not loopback_v6_available():
        pytest.skip("no IPv6 loopback here")
    running = start_server(module_server_argv(token_file, "--host", "::1"), tmp_path / "log")
    try:
        assert running.host == "::1"
        assert_serves_a_good_client(running, token_file)
    finally:
        running.stop()
