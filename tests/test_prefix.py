"""Command prefixes: sudo, docker, podman, kubectl and exec=, as command lines and end to end.

The command lines are checked word for word. docker, podman and kubectl run
end to end through the stand-ins in tests/bin (no engine or cluster here);
sudo runs for real, to a user made for the session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import execwire
from execwire import bootstrap
from execwire.spec import XSpec
from execwire.transports.prefix import command_launch

pytestmark = pytest.mark.timeout(60)
pytest_plugins = ["sshd"]

STAGE1 = bootstrap.stage1()
STANDINS = Path(__file__).resolve().parent / "bin"
SYSTEM_PYTHON = "/usr/bin/python3"


def argv_of(spec: str) -> list[str]:
    return command_launch(XSpec(spec), "on this machine").argv


# -- command lines -----------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    ("docker=box", ["docker", "exec", "-i", "box", "python3", "-c", STAGE1]),
    ("podman=box", ["podman", "exec", "-i", "box", "python3", "-c", STAGE1]),
    ("kubectl=web-0", ["kubectl", "exec", "-i", "web-0", "--", "python3", "-c", STAGE1]),
    ("kubectl=-n prod -c app web-0", ["kubectl", "exec", "-i", "-n", "prod", "-c", "app", "web-0", "--",
                                      "python3", "-c", STAGE1]),
    ("docker=-u app box//python=/opt/py/bin/python3.12",
     ["docker", "exec", "-i", "-u", "app", "box", "/opt/py/bin/python3.12", "-c", STAGE1]),
    ("sudo=alice", ["sudo", "-n", "-u", "alice", sys.executable, "-c", STAGE1]),
    ("sudo=alice//python=python3 -X utf8", ["sudo", "-n", "-u", "alice", "python3", "-X", "utf8", "-c", STAGE1]),
    ("exec=docker exec -i box python3.11", ["docker", "exec", "-i", "box", "python3.11", "-c", STAGE1]),
    ("popen//dont_write_bytecode//docker=box", ["docker", "exec", "-i", "box", "python3", "-B", "-c", STAGE1]),
])
def test_prefix_command_lines(spec: str, expected: list[str]) -> None:
    assert argv_of(spec) == expected


def test_prefixes_compose_in_the_order_written() -> None:
    assert argv_of("sudo=root//docker=box") == [
        "sudo", "-n", "-u", "root", "docker", "exec", "-i", "box", "python3", "-c", STAGE1]
    assert argv_of("docker=box//sudo=alice") == [
        "docker", "exec", "-i", "box", "sudo", "-n", "-u", "alice", "python3", "-c", STAGE1]
    assert argv_of("sudo=alice//exec=podman exec -i box python3") == [
        "sudo", "-n", "-u", "alice", "podman", "exec", "-i", "box", "python3", "-c", STAGE1]


def test_a_spec_of_prefixes_alone_is_a_popen_spec() -> None:
    assert XSpec("docker=box").type == "popen"
    assert XSpec("sudo=alice//python=python3").type == "popen"
    with pytest.raises(ValueError, match="names no gateway type"):
        XSpec("python=python3")


def test_exec_and_python_together_are_refused() -> None:
    with pytest.raises(ValueError, match="names the far Python twice, with 'exec' and 'python'"):
        execwire.Group().makegateway("exec=docker exec -i box python3//python=python3")


# -- docker, podman, kubectl through stand-ins ---------------------------------------------------

@pytest.fixture
def standins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """tests/bin first on PATH: docker, podman and kubectl are the stand-ins."""
    for tool in ("docker", "podman", "kubectl"):
        assert os.access(STANDINS / tool, os.X_OK), f"{STANDINS / tool} lost its executable bit"
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_CONTAINERS", "box web-0")
    yield


FAR_FACTS = """
import os, sys
channel.send((os.environ.get("EXECWIRE_STANDIN"), sys.executable, os.getpid()))
"""


@pytest.mark.parametrize(("spec", "through"), [
    ("docker=box", "docker:box"),
    ("podman=box", "podman:box"),
    ("kubectl=web-0", "kubectl:web-0"),
    ("kubectl=-n prod web-0", "kubectl:web-0"),
    ("exec=docker exec -i box python3", "docker:box"),
])
def test_container_gateway_runs_through_the_tool(standins: None, group: execwire.Group, spec: str,
                                                 through: str) -> None:
    gateway = group.makegateway(spec)
    standin, executable, pid = gateway.remote_exec(FAR_FACTS).receive(30)
    assert standin == through
    assert os.path.basename(executable).startswith("python3")
    assert pid == gateway._rinfo().pid
    channel = gateway.remote_exec("channel.send(channel.receive() * 2)")
    channel.send(b"ab" * 500_000)
    assert channel.receive(30) == b"ab" * 1_000_000


@pytest.mark.parametrize(("tool", "noun"), [("docker", "container"), ("podman", "container"),
                                            ("kubectl", "pod")])
def test_unknown_container_is_named(standins: None, group: execwire.Group, tool: str, noun: str) -> None:
    with pytest.raises(execwire.GatewayStartError) as info:
        group.makegateway(f"{tool}=nosuchbox")
    message = str(info.value)
    assert f"there is no running {noun} 'nosuchbox' on this machine" in message
    assert "nosuchbox" in message and "said:" in message


@pytest.mark.parametrize("tool", ["docker", "podman", "kubectl"])
def test_missing_python_in_container_is_named(standins: None, group: execwire.Group, tool: str) -> None:
    with pytest.raises(execwire.GatewayStartError) as info:
        group.makegateway(f"{tool}=box//python=python9.9")
    message = str(info.value)
    noun = "pod" if tool == "kubectl" else "container"
    assert f"no Python 'python9.9' in {noun} 'box' on this machine" in message
    assert "//python=PATH" in message


def test_missing_tool_is_named(group: execwire.Group, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker anywhere on it
    with pytest.raises(execwire.GatewayStartError, match="cannot start 'docker': No such file or directory"):
        group.makegateway("docker=box")


# -- sudo -------------------------------------------------------------------------------------

def system_python_for(user: pwd.struct_passwd) -> str:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} (that any user can run) is not installed")
    return SYSTEM_PYTHON


WHO = """
import os, pwd
channel.send((os.getuid(), os.geteuid(), pwd.getpwuid(os.getuid()).pw_name))
"""


def test_sudo_runs_the_far_side_as_that_user(group: execwire.Group, unprivileged_user: pwd.struct_passwd) -> None:
    python = system_python_for(unprivileged_user)
    gateway = group.makegateway(f"sudo={unprivileged_user.pw_name}//python={python}//chdir=/tmp")
    uid, euid, name = gateway.remote_exec(WHO).receive(30)
    assert (uid, euid, name) == (unprivileged_user.pw_uid, unprivileged_user.pw_uid, unprivileged_user.pw_name)
    assert gateway._rinfo().executable == python
    # what it writes lands as that user's file
    path = gateway.remote_exec("import tempfile; f = tempfile.NamedTemporaryFile(delete=False); "
                               "channel.send(f.name)").receive(30)
    try:
        assert os.stat(path).st_uid == unprivileged_user.pw_uid
    finally:
        os.unlink(path)


def test_sudo_to_an_unknown_user_is_named(group: execwire.Group) -> None:
    if shutil.which("sudo") is None:
        pytest.skip("sudo is not installed (Debian package sudo)")
    with pytest.raises(execwire.GatewayStartError) as info:
        group.makegateway("sudo=no-such-user-x")
    assert "there is no user 'no-such-user-x' on this machine" in str(info.value)


def test_sudo_with_a_missing_python_names_it(group: execwire.Group, unprivileged_user: pwd.struct_passwd) -> None:
    with pytest.raises(execwire.GatewayStartError) as info:
        group.makegateway(f"sudo={unprivileged_user.pw_name}//python=/no/such/python3")
    assert "no Python '/no/such/python3' on this machine" in str(info.value)


def test_launcher_stderr_is_kept_during_start_up_and_passed_on_after(
        group: execwire.Group, capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    flag = tmp_path / "started"  # the late words wait for it: said after start-up however slow the start
    wrapper = (f"echo early-words >&2; (while [ ! -e {flag} ]; do sleep 0.02; done; echo late-words >&2) & "
               "exec \"$0\" \"$@\"")
    gateway = group.makegateway(f"exec=sh -c '{wrapper}' {sys.executable}")
    assert gateway.remote_exec("channel.send(1)").receive(30) == 1
    flag.touch()
    deadline = time.monotonic() + 10
    seen = ""
    while "late-words" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
        seen += capfd.readouterr().err
    assert "late-words" in seen  # said after start-up: passed on
    assert "early-words" not in seen  # said during a start that worked: kept for errors only
