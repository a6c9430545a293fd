"""TLS for socket gateways: --tls-cert/--tls-key on the server, //tls and //tls_ca=PATH on the client.

The certificates are made by each test run (a certificate authority, and certificates it signs)
with the ``cryptography`` package; the server itself uses only the standard library's ``ssl``.
A tap between client and server records the bytes on the wire. Traffic goes to loopback only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import find_python, pid_gone, wait_until
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_server import SERVER_PY, RunningServer, make_token_file, module_server_argv, start_server

import execwire

pytestmark = pytest.mark.timeout(90)

MARKER = "a-secret-that-must-not-travel-in-clear"


# -- certificates ----------------------------------------------------------------------------------
class Authority:
    """A certificate authority of this test run; ``issue`` writes a certificate and key it signed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "execwire test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.path = folder / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        alternatives: list[x509.GeneralName] = []
        for entry in names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(entry)))
            except ValueError:
                alternatives.append(x509.DNSName(entry))
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
                .sign(self.key, hashes.SHA256()))
        cert_path, key_path = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
        return cert_path, key_path


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return make_token_file(tmp_path)


@pytest.fixture
def tls_server(tmp_path: Path, token_file: Path, authority: Authority) -> Iterator[RunningServer]:
    cert, key = authority.issue("server")
    running = start_server(module_server_argv(token_file, "--tls-cert", str(cert), "--tls-key", str(key),
                                              "--handshake-timeout", "5"), tmp_path / "server.log")
    try:
        yield running
    finally:
        running.stop()


def tls_spec(server: RunningServer, token_file: Path, authority: Authority, address: str | None = None) -> str:
    return f"socket={address or server.spec_address}//token_file={token_file}//tls_ca={authority.path}"


# -- a tap and a man in the middle -------------------------------------------------------------------
class Tap:
    """Listens on loopback and forwards every connection to ``target``, recording both directions."""

    def __init__(self, target: tuple[str, int], wrap_client=None, wrap_server=None) -> None:
        self.target = target
        self.wrap_client = wrap_client  # called on the accepted socket (a man in the middle: TLS)
        self.wrap_server = wrap_server  # called on the socket to the target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.recorded = bytearray()
        self.errors: list[BaseException] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
            if self.wrap_client is not None:
                conn = self.wrap_client(conn)
            if self.wrap_server is not None:
                upstream = self.wrap_server(upstream)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(exc)
            conn.close()
            return
        for source, sink in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            source.settimeout(30)
            while data := source.recv(65536):
                self.recorded += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:  # the raw socket's shutdown: it wakes the other pump, and the peer sees the end
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self) -> None:
        self.listener.close()


def send_marker_through(group: execwire.Group, spec: str) -> None:
    gw = group.makegateway(spec)
    channel = gw.remote_exec("channel.send(channel.receive().upper())")
    channel.send(MARKER)
    assert channel.receive(timeout=20) == MARKER.upper()
    gw.exit()


# -- it works, and the wire shows nothing ------------------------------------------------------------
def test_a_tls_gateway_round_trip_and_nothing_readable_on_the_wire(group, tls_server, token_file, authority,
                                                                  tmp_path):
    tap = Tap((tls_server.host, tls_server.port))
    try:
        send_marker_through(group, tls_spec(tls_server, token_file, authority, f"127.0.0.1:{tap.port}"))
        assert wait_until(lambda: len(tap.recorded) > 10_000, 10)  # the boot payload went through it
        assert MARKER.encode() not in tap.recorded and MARKER.upper().encode() not in tap.recorded
        assert b"channel.send" not in tap.recorded and b"execwire" not in tap.recorded
    finally:
        tap.close()
    # the same tap on a plain server sees everything: it can tell
    plain = start_server(module_server_argv(token_file), tmp_path / "plain.log")
    tap = Tap((plain.host, plain.port))
    try:
        send_marker_through(group, f"socket=127.0.0.1:{tap.port}//token_file={token_file}")
        assert wait_until(lambda: MARKER.upper().encode() in tap.recorded, 10)
    finally:
        tap.close()
        plain.stop()


def test_a_tls_gateway_carries_bulk_both_ways_and_exits_cleanly(group, tls_server, token_file, authority):
    gw = group.makegateway(tls_spec(tls_server, token_file, authority))
    channel = gw.remote_exec("for item in channel: channel.send(item)")
    blob = os.urandom(4 * 1024 * 1024)
    echoed: list[bool] = []
    reader = threading.Thread(target=lambda: echoed.extend(channel.receive(timeout=30) == blob for _ in range(5)))
    reader.start()
    for _ in range(5):  # 20 MiB each way at once
        channel.send(blob)
    reader.join(60)
    assert echoed == [True] * 5
    for number in range(2000):
        channel.send(number)
    assert [channel.receive(timeout=30) for _ in range(2000)] == list(range(2000))
    channel.close()
    pid = gw._rinfo().pid
    gw.exit()
    assert wait_until(lambda: pid_gone(pid), 10)
    assert tls_server.wait_log(f"far Python pid {pid} ended with exit code 0")
    assert tls_server.children() == []


def test_the_far_python_ends_when_a_tls_client_is_killed(tls_server, token_file, authority, tmp_path):
    script = (
        "import execwire, sys\n"
        f"gw = execwire.makegateway({tls_spec(tls_server, token_file, authority)!r})\n"
        "print(gw._rinfo().pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    client = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert client.stdout is not None
        pid = int(client.stdout.readline())
        assert not pid_gone(pid)
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        assert wait_until(lambda: pid_gone(pid), 15)  # its relay saw the connection end
        assert tls_server.wait_log(f"far Python pid {pid} ended")
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)


def test_tls_trusts_the_system_store_without_tls_ca(group, tls_server, token_file, authority, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.path))  # what OpenSSL reads as the system's store
    gw = group.makegateway(f"socket={tls_server.spec_address}//token_file={token_file}//tls")
    assert gw.remote_exec("channel.send('by the system store')").receive(timeout=20) == "by the system store"


# -- who is refused ------------------------------------------------------------------------------------
def test_an_untrusted_certificate_is_an_authentication_error(group, tls_server, token_file, tmp_path,
                                                              monkeypatch):
    other = Authority(tmp_path)  # not the one that signed the server's certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(other.path))
    with pytest.raises(execwire.AuthenticationError, match="certificate is not trusted.*//tls_ca=PATH"):
        group.makegateway(f"socket={tls_server.spec_address}//token_file={token_file}//tls")
    with pytest.raises(execwire.AuthenticationError, match="certificate is not trusted"):
        group.makegateway(f"socket={tls_server.spec_address}//token_file={token_file}//tls_ca={other.path}")
    assert tls_server.wait_log("refused: the TLS handshake failed")
    assert tls_server.children() == []


def test_a_certificate_for_another_name_is_refused(group, tmp_path, token_file, authority):
    cert, key = authority.issue("elsewhere", names=("elsewhere.example",))
    running = start_server(module_server_argv(token_file, "--tls-cert", str(cert), "--tls-key", str(key)),
                           tmp_path / "log")
    try:
        with pytest.raises(execwire.AuthenticationError, match="not trusted: IP address mismatch"):
            group.makegateway(tls_spec(running, token_file, authority))
    finally:
        running.stop()


def test_a_man_in_the_middle_with_a_trusted_certificate_fails_the_token_check(group, tls_server, token_file,
                                                                               authority):
    # say a certificate authority the client trusts signed a certificate for the attacker: it terminates
    # TLS and forwards the handshake unchanged, but the handshake covers the server's certificate
    cert, key = authority.issue("mitm")
    client_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client_side.load_cert_chain(str(cert), str(key))
    server_side = ssl.create_default_context(cafile=str(authority.path))
    tap = Tap((tls_server.host, tls_server.port),
              wrap_client=lambda sock: client_side.wrap_socket(sock, server_side=True),
              wrap_server=lambda sock: server_side.wrap_socket(sock, server_hostname="127.0.0.1"))
    try:
        with pytest.raises(execwire.AuthenticationError, match="could not prove it knows our token"):
            group.makegateway(tls_spec(tls_server, token_file, authority, f"127.0.0.1:{tap.port}"))
        assert tap.errors == []  # it was a working relay: only the handshake told it apart
        assert tls_server.wait_log("refused: the client closed the connection without proving it knows the token")
        assert tls_server.children() == []
    finally:
        tap.close()


def test_plain_and_tls_mismatches_say_what_to_do(group, tls_server, token_file, authority, tmp_path):
    with pytest.raises(execwire.GatewayStartError, match="this server requires TLS: add //tls"):
        group.makegateway(f"socket={tls_server.spec_address}//token_file={token_file}")
    plain = start_server(module_server_argv(token_file), tmp_path / "plain.log")
    try:
        with pytest.raises(execwire.GatewayStartError, match="closed the connection during the TLS handshake"):
            group.makegateway(tls_spec(plain, token_file, authority))
        assert plain.wait_log("refused: the client speaks TLS (//tls), but this server was started without "
                              "--tls-cert")
    finally:
        plain.stop()


def test_the_server_names_a_bad_certificate_or_key(tmp_path, token_file, authority):
    cert, key = authority.issue("good")
    for argv, message in [
        (["--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(key)],
         f"cannot load the TLS certificate and key from {tmp_path / 'missing.pem'} and {key}"),
        (["--tls-cert", str(key)], f"cannot load the TLS certificate and key from {key}"),
        (["--tls-key", str(key)], "--tls-key goes with --tls-cert"),
    ]:
        result = subprocess.run(module_server_argv(token_file, *argv), capture_output=True, text=True, timeout=30)
        assert result.returncode != 0 and result.stdout == "", argv
        assert message in result.stderr, (argv, result.stderr)
    combined = tmp_path / "combined.pem"
    combined.write_bytes(key.read_bytes() + cert.read_bytes())  # key and certificate in one file
    running = start_server(module_server_argv(token_file, "--tls-cert", str(combined)), tmp_path / "log")
    running.stop()


def test_spec_keys_for_tls_are_checked(group, tmp_path, token_file):
    for spec, message in [
        ("popen//tls", "key 'tls' goes with socket=HOST:PORT"),
        ("popen//tls_ca=/x", "key 'tls_ca' goes with socket=HOST:PORT"),
        ("socket//installvia=gw0//tls", "key 'tls' goes with socket=HOST:PORT .*installvia"),
        ("socket=127.0.0.1:1//tls=yes", "key 'tls' takes no value"),
        ("socket=127.0.0.1:1//tls_ca=", r"key 'tls_ca' needs a value"),
    ]:
        with pytest.raises(ValueError, match=message):
            execwire.XSpec(spec)
    spec = execwire.XSpec("socket=[::1]:8888//tls//tls_ca=~/ca.pem")
    assert (spec.tls, spec.tls_ca) == (True, "~/ca.pem")
    with pytest.raises(execwire.GatewayStartError, match="cannot read tls_ca .*missing.pem"):
        group.makegateway(f"socket=127.0.0.1:1//token_file={token_file}//tls_ca={tmp_path / 'missing.pem'}")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(execwire.GatewayStartError, match="cannot read tls_ca"):
        group.makegateway(f"socket=127.0.0.1:1//token_file={token_file}//tls_ca={garbage}")


@pytest.mark.parametrize("version", ["3.6", "3.13"])
def test_a_copy_of_the_file_serves_tls_alone(group, tmp_path, token_file, authority, version):
    python = find_python(f"{version}*")
    if python is None:
        pytest.skip(f"no Python {version} under pyenv")
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(SERVER_PY, folder / "server.py")
    cert, key = authority.issue("copy")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    running = start_server([python, "server.py", "--port", "0", "--token-file", str(token_file),
                            "--tls-cert", str(cert), "--tls-key", str(key)], tmp_path / "log", env=env, cwd=folder)
    try:
        gw = group.makegateway(tls_spec(running, token_file, authority))
        channel = gw.remote_exec("import sys; channel.send(tuple(sys.version_info[:2])); "
                                 "channel.send(channel.receive())")
        assert channel.receive(timeout=20) == tuple(int(part) for part in version.split("."))
        blob = os.urandom(2 * 1024 * 1024)
        channel.send(blob)
        assert channel.receive(timeout=30) == blob
        pid = gw._rinfo().pid
        gw.exit()
        assert running.wait_log(f"far Python pid {pid} ended with exit code 0")
    finally:
        running.stop()
