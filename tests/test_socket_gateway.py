"""Socket gateways end to end: spec and SocketGateway, many clients, IPv6, errors, new_remote and installvia.

A real ``python -m execwire.server`` on loopback for each test; nothing leaves 127.0.0.1 or ::1.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import pid_gone, wait_until
from test_server import RunningServer, loopback_v6_available, make_token_file, module_server_argv, start_server

import execwire

pytest_plugins = ["socket_server_fixture"]  # token_file, server

pytestmark = pytest.mark.timeout(60)

ECHO = "for item in channel: channel.send(item)"


def socket_spec(server: RunningServer, token_file: Path, extra: str = "") -> str:
    return f"socket={server.spec_address}//token_file={token_file}{extra}"


def refused_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def connectable(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=2).close()
        return True
    except OSError:
        return False


# -- round trips --------------------------------------------------------------------------------------------
def test_spec_gateway_round_trip_and_clean_exit(group, server, token_file, tmp_path):
    gw = group.makegateway(socket_spec(server, token_file, f"//chdir={tmp_path}//env:MODE=socket"))
    channel = gw.remote_exec(ECHO)  # sent before the connection is up: it waits in memory, in order
    for item in (1, "two", b"three", [4.0, None], {"five": (5,)}):
        channel.send(item)
        assert channel.receive(timeout=20) == item
    big = os.urandom(3 * 1024 * 1024)
    channel.send(big)
    assert channel.receive(timeout=20) == big
    channel.close()
    info = gw._rinfo()
    assert info.cwd == str(tmp_path)
    assert gw.remote_exec("import os; channel.send(os.environ['MODE'])").receive(timeout=20) == "socket"
    assert info.pid in [int(line.split("pid ")[1].split()[0]) for line in server.log().splitlines()
                        if "far Python pid" in line]  # it is the server's child
    assert gw.state == "up"
    gw.exit()
    assert gw.state == "closed"
    assert wait_until(lambda: pid_gone(info.pid), 10)
    assert server.wait_log(f"far Python pid {info.pid} ended with exit code 0")


def test_socketgateway_function_and_the_default_token(server, token_file, monkeypatch, clean_default_group):
    gw = execwire.SocketGateway(server.host, server.port, token_file=str(token_file))
    assert gw in execwire.default_group
    assert gw.remote_exec("channel.send(1 + 1)").receive(timeout=20) == 2
    gw.exit()
    monkeypatch.setenv("EXECWIRE_TOKEN", token_file.read_text().strip())
    gw = execwire.SocketGateway(server.host, server.port)
    assert gw.remote_exec("channel.send('env token')").receive(timeout=20) == "env token"
    gw.exit()


def test_many_clients_one_after_another(group, server, token_file):
    pids = []
    for index in range(5):
        gw = group.makegateway(socket_spec(server, token_file))
        assert gw.remote_exec("channel.send(channel.receive() * 2)").send(index) is None
        pids.append(gw._rinfo().pid)
        gw.exit()
    assert len(set(pids)) == 5
    assert server.wait_log("ended with exit code 0", count=5)


def test_many_clients_at_the_same_time(group, server, token_file):
    gateways = [group.makegateway(socket_spec(server, token_file)) for _ in range(8)]
    multi = group.remote_exec("import os; channel.send(os.getpid())")
    pids = multi.receive_each(withchannel=False)
    assert len(set(pids)) == 8
    assert {gw._rinfo().pid for gw in gateways} == set(pids)
    results: dict[int, object] = {}

    def ask(index: int, gw: execwire.Gateway) -> None:
        channel = gw.remote_exec(ECHO)
        channel.send(index)
        results[index] = channel.receive(timeout=20)
        channel.close()

    threads = [threading.Thread(target=ask, args=(index, gw)) for index, gw in enumerate(gateways)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {index: index for index in range(8)}


def test_ipv6_loopback_spec_and_function(group, tmp_path, token_file):
    if not loopback_v6_available():
        pytest.skip("no IPv6 loopback here")
    running = start_server(module_server_argv(token_file, "--host", "::1"), tmp_path / "log")
    try:
        assert running.spec_address == f"[::1]:{running.port}"
        gw = group.makegateway(f"socket=[::1]:{running.port}//token_file={token_file}")
        assert gw.remote_exec("channel.send('v6')").receive(timeout=20) == "v6"
        assert gw._stream.address == f"[::1]:{running.port}"
        gw.exit()
        gw = execwire.SocketGateway("::1", running.port, token_file=str(token_file))
        try:
            assert gw.remote_exec("channel.send('v6 again')").receive(timeout=20) == "v6 again"
        finally:
            gw.exit()
    finally:
        running.stop()


# -- errors ---------------------------------------------------------------------------------------------------
def test_nothing_listening_is_host_not_found_naming_host_and_port(group, token_file):
    port = refused_port()
    with pytest.raises(execwire.HostNotFound, match=f"nothing listens at 127.0.0.1:{port}"):
        group.makegateway(f"socket=127.0.0.1:{port}//token_file={token_file}")
    assert len(group) == 0
    gw = group._start_gateway(f"socket=127.0.0.1:{port}//token_file={token_file}")  # as the command: no wait
    with pytest.raises(execwire.HostNotFound):
        gw.wait_ready(20)
    assert gw.state == "failed"
    with pytest.raises(execwire.HostNotFound):
        gw.remote_exec("channel.send(1)")


def test_code_sent_before_a_failed_connect_raises_the_start_error(group, token_file):
    gw = group._start_gateway(f"socket=127.0.0.1:{refused_port()}//token_file={token_file}")  # without waiting
    with pytest.raises(execwire.HostNotFound):
        # queued while connecting (then receive raises), or refused at once if the failure came first
        channel = gw.remote_exec("channel.send(1)")
        channel.receive(timeout=20)


def test_a_wrong_token_is_an_authentication_error(group, server, token_file, tmp_path):
    (tmp_path / "other").mkdir()
    wrong = make_token_file(tmp_path / "other")
    with pytest.raises(execwire.AuthenticationError, match="token differs") as raised:
        group.makegateway(socket_spec(server, wrong))
    assert isinstance(raised.value, execwire.GatewayStartError)
    assert server.spec_address in str(raised.value)
    assert server.wait_log("refused: the client closed the connection without proving it knows the token")
    assert server.children() == []
    good = group.makegateway(socket_spec(server, token_file))
    assert good.remote_exec("channel.send('still serving')").receive(timeout=20) == "still serving"


def test_no_token_anywhere_fails_at_once(group, server, monkeypatch, tmp_path):
    monkeypatch.delenv("EXECWIRE_TOKEN", raising=False)
    with pytest.raises(execwire.GatewayStartError, match="EXECWIRE_TOKEN.*token_file"):
        group.makegateway(f"socket={server.spec_address}")
    with pytest.raises(execwire.GatewayStartError, match="cannot read token_file"):
        group.makegateway(f"socket={server.spec_address}//token_file={tmp_path / 'missing'}")


def test_the_python_key_is_refused_because_the_server_picks_the_interpreter(group, server, token_file):
    with pytest.raises(ValueError, match="key 'python' does not apply to a socket gateway"):
        group.makegateway(socket_spec(server, token_file, "//python=python3"))


def test_a_peer_that_is_not_an_execwire_server(group, token_file):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def banner() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")
                conn.settimeout(10)
                conn.recv(1024)

        thread = threading.Thread(target=banner, daemon=True)
        thread.start()
        with pytest.raises(execwire.GatewayStartError, match="is not an execwire socket server: it answered b'SSH"):
            group.makegateway(f"socket=127.0.0.1:{listener.getsockname()[1]}//token_file={token_file}")
        thread.join(10)


def test_a_server_that_never_answers_times_out_and_exit_does_not_wait_for_it(group, token_file):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # connections complete in the backlog; nobody ever answers
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(execwire.GatewayStartError, match="no complete handshake .* within 0.5 seconds"):
            group.makegateway(f"socket={address}//token_file={token_file}//timeout=0.5")
        patient = group._start_gateway(f"socket={address}//token_file={token_file}")  # still starting: no wait
        started = time.monotonic()
        patient.exit()
        assert time.monotonic() - started < 3.0
        assert patient.state == "closed"


# -- new_remote and installvia ---------------------------------------------------------------------------------
def test_new_remote_starts_a_server_inside_a_gateway(group):
    host = group.makegateway("popen//id=host//execmodel=main_thread_only")
    gw = execwire.SocketGateway.new_remote(host, ("127.0.0.1", 0))
    assert gw in group
    assert gw.spec.installvia == "host"
    channel = gw.remote_exec("import os; channel.send(os.getppid())")
    assert channel.receive(timeout=20) == host._rinfo().pid  # its far Python is a child of the host gateway
    address = gw._stream.address
    hostname, _, port = address.rpartition(":")
    assert hostname == "127.0.0.1" and int(port) > 0
    assert connectable((hostname, int(port)))
    assert host.remote_status().numexecuting == 0  # the server runs in threads of its own, not in an exec slot
    gw.exit()
    assert wait_until(lambda: not connectable((hostname, int(port))), 10)  # its server stopped with it
    assert host.remote_exec("channel.send('host still up')").receive(timeout=20) == "host still up"


def test_installvia_spec_and_the_server_ends_with_its_host(group):
    host = group.makegateway("popen//id=middle")
    gw = group.makegateway("socket//installvia=middle")
    assert gw.remote_exec(ECHO).send("x") is None
    info = gw._rinfo()
    hostname, _, port = gw._stream.address.rpartition(":")
    host.exit()
    assert wait_until(lambda: not connectable((hostname, int(port))), 10)  # the server lived in the host
    # a gateway already made through it is a connection of its own and keeps working
    assert gw.remote_exec("channel.send('alone')").receive(timeout=20) == "alone"
    gw.exit()
    assert wait_until(lambda: pid_gone(info.pid), 10)


def test_new_remote_on_ipv6_loopback(group):
    if not loopback_v6_available():
        pytest.skip("no IPv6 loopback here")
    host = group.makegateway("popen")
    gw = execwire.SocketGateway.new_remote(host, ("::1", 0))
    assert gw._rinfo().pid != host._rinfo().pid
    assert gw._stream.address.startswith("[::1]:")


def test_installvia_errors_name_the_problem(group):
    group.makegateway("popen//id=there")
    with pytest.raises(execwire.GatewayStartError, match=r"installvia=nowhere names no gateway.*'there'"):
        group.makegateway("socket//installvia=nowhere")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        taken = blocker.getsockname()[1]
        with pytest.raises(execwire.GatewayStartError,
                           match=f"cannot start a socket server on 127.0.0.1:{taken} inside gateway 'there'"):
            group.makegateway(f"socket=127.0.0.1:{taken}//installvia=there")
    finally:
        blocker.close()


# -- spec strings -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "message"), [
    ("socket", "needs an address"),
    ("socket=::1:8888", r"brackets, \[::1\]:8888"),
    ("socket=localhost", "needs a port"),
    ("socket=localhost:http", "port must be a number"),
    ("socket=[::1]8888", r"\[IPV6\]:PORT"),
    ("popen//installvia=gw0", "installvia' goes with socket"),
])
def test_bad_socket_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        execwire.XSpec(spec)


def test_good_socket_specs():
    spec = execwire.XSpec("socket=[::1]:8888//token_file=~/t")
    assert (spec.type, spec.socket, spec.token_file) == ("socket", "[::1]:8888", "~/t")
    assert execwire.XSpec("socket//installvia=gw0").installvia == "gw0"
