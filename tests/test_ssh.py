"""ssh gateways against a real OpenSSH server on a loopback port (tests/sshd.py).

Direct, with ssh options in the spec, through an ssh_config alias, chained
(ssh via ssh, popen via ssh), with sudo on the host, and every start-up
failure a user meets: wrong key, unknown host key, closed port, a name that
does not resolve, no such python.
"""

from __future__ import annotations

import os
import pwd
import shlex
import time

import pytest
from conftest import find_python, pid_gone, wait_until
from sshd import SshServer

import execwire
from execwire.spec import XSpec
from execwire.transports.ssh import ssh_launch

pytestmark = pytest.mark.timeout(90)
pytest_plugins = ["sshd"]

FACTS = """
import os
channel.send((os.environ.get("SSH_CONNECTION"), os.getpid(), os.getppid()))
"""


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as file:
        return file.read().strip()


# -- the command line -----------------------------------------------------------------------

def test_ssh_command_line() -> None:
    launch = ssh_launch(XSpec("ssh=-p 2222 -i key user@host//ssh_config=/etc/cfg//python=python3.12"))
    ssh, remote = launch.argv[:-1], launch.argv[-1]
    assert ssh == ["ssh", "-F", "/etc/cfg", "-p", "2222", "-i", "key", "-o", "BatchMode=yes", "-T", "user@host"]
    words = shlex.split(remote)
    assert words[:2] == ["python3.12", "-c"]
    assert "\n" not in remote and "'" not in words[2]  # one line, safe in any login shell


def test_own_batchmode_and_timeout_become_ssh_options() -> None:
    argv = ssh_launch(XSpec("ssh=-o BatchMode=no host//timeout=7.5")).argv
    assert "BatchMode=yes" not in argv
    assert argv[argv.index("ConnectTimeout=8") - 1] == "-o"
    with pytest.raises(ValueError, match="key 'ssh' must end in the host"):
        ssh_launch(XSpec("ssh=host -p"))


def test_ssh_command_line_with_prefixes_runs_them_on_the_host() -> None:
    launch = ssh_launch(XSpec("ssh=host//sudo=alice"))
    words = shlex.split(launch.argv[-1])
    assert words[:5] == ["sudo", "-n", "-u", "alice", "python3"]


# -- gateways through the server ------------------------------------------------------------

def test_gateway_through_an_ssh_config_alias(sshd: SshServer, group: execwire.Group, tmp_path) -> None:
    gateway = group.makegateway(sshd.spec(f"chdir={tmp_path}//env:EXECWIRE_T=yes"))
    connection, pid, _parent = gateway.remote_exec(FACTS).receive(30)
    assert connection is not None and connection.split()[2:] == ["127.0.0.1", str(sshd.port)]
    info = gateway._rinfo()
    assert info.pid == pid and info.cwd == str(tmp_path)
    assert gateway.remote_exec("import os; channel.send(os.environ['EXECWIRE_T'])").receive(30) == "yes"
    channel = gateway.remote_exec("channel.send(channel.receive()[::-1])")
    big = os.urandom(4_000_000)
    channel.send(big)
    assert channel.receive(30) == big[::-1]


def test_gateway_with_ssh_options_in_the_spec(sshd: SshServer, group: execwire.Group) -> None:
    gateway = group.makegateway(f"ssh={sshd.options()} {sshd.user}@127.0.0.1")
    connection, _pid, _parent = gateway.remote_exec(FACTS).receive(30)
    assert connection.split()[3] == str(sshd.port)


def test_ssh_gateway_function(sshd: SshServer, clean_default_group: execwire.Group) -> None:
    gateway = execwire.SshGateway(sshd.alias, ssh_config=str(sshd.ssh_config))
    assert gateway in clean_default_group
    assert gateway.remote_exec("channel.send(6 * 7)").receive(30) == 42


def test_exit_leaves_no_process_on_either_side(sshd: SshServer, group: execwire.Group) -> None:
    gateway = group.makegateway(sshd.spec())
    _connection, far_pid, _parent = gateway.remote_exec(FACTS).receive(30)
    ssh_pid = gateway._process.pid
    started = time.monotonic()
    gateway.exit()
    assert time.monotonic() - started < 5
    assert wait_until(lambda: pid_gone(ssh_pid) and pid_gone(far_pid), 10)


def test_output_and_errors_of_shipped_code_come_back(sshd: SshServer, group: execwire.Group) -> None:
    gateway = group.makegateway(sshd.spec())
    seen: list[bytes] = []
    gateway.output_handler = lambda gw, stream, data: seen.append(data)
    gateway.remote_exec("print('from the host', flush=True)").waitclose(30)
    assert wait_until(lambda: b"from the host\n" in b"".join(seen), 5)
    with pytest.raises(execwire.RemoteError, match="ZeroDivisionError"):
        gateway.remote_exec("1 / 0").waitclose(30)


def test_ssh_via_ssh(sshd: SshServer, group: execwire.Group) -> None:
    first = group.makegateway(sshd.spec("id=hop1"))
    second = group.makegateway(sshd.spec("via=hop1//id=hop2"))
    first_pid = first.remote_exec(FACTS).receive(30)[1]
    connection, pid, parent = second.remote_exec(FACTS).receive(30)
    assert connection is not None and pid != first_pid
    assert comm(parent).startswith("sshd")  # started by sshd, for an ssh client that hop1 ran
    ssh_client = second._process.pid
    assert comm(ssh_client) == "ssh" and os.stat(f"/proc/{ssh_client}").st_uid == os.getuid()
    with open(f"/proc/{ssh_client}/stat") as stat:
        assert int(stat.read().rsplit(")", 1)[1].split()[1]) == first_pid  # ssh ran under hop1's Python


def test_popen_via_ssh(sshd: SshServer, group: execwire.Group) -> None:
    middle = group.makegateway(sshd.spec("id=host"))
    inner = group.makegateway("popen//via=host")
    middle_pid = middle.remote_exec(FACTS).receive(30)[1]
    connection, _pid, parent = inner.remote_exec(FACTS).receive(30)
    assert parent == middle_pid
    assert connection is not None  # it inherited the ssh session's environment on the host
    assert inner._rinfo().executable == middle._rinfo().executable


def test_ending_the_ssh_middle_ends_what_runs_through_it(sshd: SshServer, group: execwire.Group) -> None:
    middle = group.makegateway(sshd.spec("id=host"))
    inner = group.makegateway(sshd.spec("via=host"))
    channel = inner.remote_exec("import time; channel.send('up'); time.sleep(60)")
    assert channel.receive(30) == "up"
    middle.exit()
    with pytest.raises(execwire.GatewayLostError, match="gateway 'host', which it runs through"):
        channel.receive(10)


def test_sudo_on_the_ssh_host(sshd: SshServer, group: execwire.Group, unprivileged_user: pwd.struct_passwd) -> None:
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("/usr/bin/python3 (that any user can run) is not installed")
    gateway = group.makegateway(sshd.spec(f"sudo={unprivileged_user.pw_name}//python=/usr/bin/python3//chdir=/tmp"))
    name = gateway.remote_exec("import os, pwd; channel.send(pwd.getpwuid(os.getuid()).pw_name)").receive(30)
    assert name == unprivileged_user.pw_name


# -- failures, each named -------------------------------------------------------------------

def start_error(group: execwire.Group, spec: str) -> execwire.GatewayStartError:
    before = len(group)
    with pytest.raises(execwire.GatewayStartError) as info:
        group.makegateway(spec)
    assert len(group) == before  # it left the group
    return info.value


def test_wrong_key_is_an_authentication_error(sshd: SshServer, group: execwire.Group, tmp_path) -> None:
    from sshd import keygen

    other_key = keygen(tmp_path / "other", "not-authorized")
    options = sshd.options().replace(f"-i {sshd.key}", f"-i {other_key}")
    error = start_error(group, f"ssh={options} {sshd.user}@127.0.0.1")
    assert type(error) is execwire.AuthenticationError
    assert f"ssh to '{sshd.user}@127.0.0.1' was refused: the login failed" in str(error)
    assert "Permission denied (publickey)" in str(error)


def test_unknown_host_key_is_an_authentication_error(sshd: SshServer, group: execwire.Group, tmp_path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    options = sshd.options().replace(str(sshd.known_hosts), str(empty))
    error = start_error(group, f"ssh={options} -o StrictHostKeyChecking=yes {sshd.user}@127.0.0.1")
    assert type(error) is execwire.AuthenticationError
    assert "ssh did not trust the host key of" in str(error) and "known_hosts" in str(error)


def test_closed_port_is_host_not_found(sshd: SshServer, group: execwire.Group) -> None:
    import socket

    with socket.socket() as sock:  # a port that nothing listens on, for sure
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        options = sshd.options().replace(f"-p {sshd.port}", f"-p {port}")
        error = start_error(group, f"ssh={options} {sshd.user}@127.0.0.1")
    assert type(error) is execwire.HostNotFound
    assert f"cannot reach host '{sshd.user}@127.0.0.1': the connection was refused" in str(error)
    assert f"port {port}" in str(error)


def test_unresolvable_name_is_host_not_found(group: execwire.Group) -> None:
    error = start_error(group, "ssh=no-such-host.invalid")  # .invalid never resolves: no traffic leaves
    assert type(error) is execwire.HostNotFound
    assert "host 'no-such-host.invalid' not found: its name does not resolve" in str(error)


def test_missing_python_on_the_host_is_named(sshd: SshServer, group: execwire.Group) -> None:
    error = start_error(group, sshd.spec("python=/no/such/python3"))
    assert type(error) is execwire.GatewayStartError
    assert f"no Python '/no/such/python3' on host '{sshd.alias}'" in str(error)
    assert "name it with //python=PATH" in str(error)


def test_missing_python_through_a_middle_is_named(sshd: SshServer, group: execwire.Group) -> None:
    group.makegateway("popen//id=mid")
    error = start_error(group, sshd.spec("python=python9.9//via=mid"))
    assert f"no Python 'python9.9' on host '{sshd.alias}'" in str(error)


def test_too_old_python_on_the_host_is_named(sshd: SshServer, group: execwire.Group) -> None:
    old = find_python("2.7*")
    if old is None:
        pytest.skip("no Python 2.7 (pyenv) on this machine to play a host's too old Python")
    error = start_error(group, sshd.spec(f"python={old}"))
    assert "execwire needs Python 3.6 or newer on the far side" in str(error)
    assert old in str(error)
