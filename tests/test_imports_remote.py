"""Import forwarding, calls and the Executor through every transport: ssh (a real sshd on loopback),
via, a socket server, and a command prefix. The far sides see the packages only by forwarding.
"""

from __future__ import annotations

import os
import pwd

import call_targets
import pytest
from forwarding import Packages, write_shop
from sshd import SshServer

import execwire

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ["sshd", "forwarding"]

USES_SHOP = "import shop, os; channel.send((shop.prices.price('abc'), os.getpid()))"


def check_forwarding(gw: execwire.Gateway) -> None:
    gw.forward_imports()
    price, pid = gw.remote_exec(USES_SHOP).receive(60)
    assert price == 300 and pid == gw._rinfo().pid
    assert gw.call(call_targets.add, 2, b=5) == 7
    with pytest.raises(execwire.RemoteError, match="ValueError: from afar"):
        gw.call(call_targets.fail, "from afar")
    service = gw._import_service  # type: ignore[attr-defined]
    assert service.requests == 2  # shop (its 4 modules sent ahead with it), then call_targets


def test_ssh(sshd: SshServer, group: execwire.Group, packages: Packages) -> None:
    write_shop(packages)
    check_forwarding(group.makegateway(sshd.spec()))


def test_popen_via_ssh_and_ssh_via_ssh(sshd: SshServer, group: execwire.Group, packages: Packages) -> None:
    write_shop(packages)
    group.makegateway(sshd.spec("id=hop"))
    check_forwarding(group.makegateway("popen//via=hop//python=python3"))
    check_forwarding(group.makegateway(sshd.spec("via=hop")))


def test_via_popen_chain(group: execwire.Group, packages: Packages) -> None:
    write_shop(packages)
    group.makegateway("popen//id=a")
    group.makegateway("popen//via=a//id=b")
    check_forwarding(group.makegateway("popen//via=b"))


def test_socket_server(group: execwire.Group, packages: Packages) -> None:
    write_shop(packages)
    group.makegateway("popen//id=base")
    check_forwarding(group.makegateway("socket//installvia=base"))


def test_command_prefix(group: execwire.Group, packages: Packages) -> None:
    write_shop(packages)
    check_forwarding(group.makegateway("exec=env -i python3"))


def test_sudo_prefix(group: execwire.Group, packages: Packages, unprivileged_user: pwd.struct_passwd) -> None:
    """As another user, who cannot read the controller's files: everything comes by forwarding."""
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("/usr/bin/python3 (that any user can run) is not installed")
    write_shop(packages)
    gw = group.makegateway(f"sudo={unprivileged_user.pw_name}//python=/usr/bin/python3//chdir=/tmp")
    assert gw.remote_exec("import os; channel.send(os.getuid())").receive(30) == unprivileged_user.pw_uid
    check_forwarding(gw)


def test_executor_over_ssh_and_via(sshd: SshServer, packages: Packages) -> None:
    specs = [sshd.spec("id=s1"), sshd.spec("id=s2"), "popen//via=s1//id=v1"]
    with execwire.Executor(specs, max_workers=6) as pool:
        assert list(pool.map(call_targets.square, range(60), chunksize=7)) == [n * n for n in range(60)]
        assert sorted(pool.map(call_targets.add, range(30), range(30))) == [2 * n for n in range(30)]
        assert {gw.id for gw in pool.gateways} == {"s1", "s2", "v1"}
