"""Behind via=, a forwarded module (or data file) crosses the link to the middle gateway once, however
many gateways behind it import it: the middle keeps it and its relays write it from there.

Measured the way a user would check it: the bytes the middle's process read (/proc/PID/io) while the
gateways behind it imported a package of about 700 KB.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest
from forwarding import Packages
from sshd import SshServer

import execwire

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ["sshd", "forwarding"]

SOURCE_SIZE = 400_000
DATA_SIZE = 300_000
PAYLOAD = SOURCE_SIZE + DATA_SIZE
USES_BIG = """
import hashlib, importlib.resources, bigpkg
data = importlib.resources.files("bigpkg").joinpath("data.txt").read_bytes()
channel.send((hashlib.sha256(bigpkg.VALUE.encode()).hexdigest(), hashlib.sha256(data).hexdigest()))
"""


def write_big(packages: Packages) -> tuple[str, str]:
    value = "".join(chr(ord("a") + (index * 7) % 26) for index in range(SOURCE_SIZE))
    data = bytes(index % 251 for index in range(DATA_SIZE))
    packages.write("bigpkg/__init__.py", "from .big import VALUE\n")
    packages.write("bigpkg/big.py", f"VALUE = {value!r}\n")
    (Path(packages.root) / "bigpkg" / "data.txt").write_bytes(data)
    return hashlib.sha256(value.encode()).hexdigest(), hashlib.sha256(data).hexdigest()


def bytes_read(gateway: execwire.Gateway) -> int:
    """What the gateway's far process has read so far (this machine's /proc; we are root)."""
    for line in Path(f"/proc/{gateway._rinfo().pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/PID/io")


def import_on_each(gateways: list[execwire.Gateway], expected: tuple[str, str]) -> None:
    for gateway in gateways:
        gateway.forward_imports()
    for gateway in gateways:
        assert gateway.remote_exec(USES_BIG).receive(60) == expected


def test_three_gateways_via_one_middle_cost_its_link_one_copy(group: execwire.Group, packages: Packages) -> None:
    expected = write_big(packages)
    middle = group.makegateway("popen//id=middle")
    inner = [group.makegateway(f"popen//via=middle//id=inner{index}") for index in range(3)]
    for gateway in inner:
        gateway._rinfo()
    before = bytes_read(middle)
    import_on_each(inner, expected)
    assert bytes_read(middle) - before < 1.5 * PAYLOAD  # three copies without the cache


def test_through_two_hops_each_link_carries_it_once(group: execwire.Group, packages: Packages) -> None:
    expected = write_big(packages)
    first = group.makegateway("popen//id=first")
    second = group.makegateway("popen//via=first//id=second")
    inner = [group.makegateway(f"popen//via=second//id=inner{index}") for index in range(2)]
    for gateway in inner:
        gateway._rinfo()
    before = bytes_read(first), bytes_read(second)
    import_on_each(inner, expected)
    assert bytes_read(first) - before[0] < 1.5 * PAYLOAD
    assert bytes_read(second) - before[1] < 1.5 * PAYLOAD


def test_gateways_via_an_ssh_host_share_what_crossed_the_ssh_link(sshd: SshServer, group: execwire.Group,
                                                                  packages: Packages) -> None:
    expected = write_big(packages)
    host = group.makegateway(sshd.spec("id=host"))
    inner = [group.makegateway(f"popen//via=host//python=python3//id=worker{index}") for index in range(2)]
    for gateway in inner:
        gateway._rinfo()
    before = bytes_read(host)
    import_on_each(inner, expected)
    assert bytes_read(host) - before < 1.5 * PAYLOAD


def test_each_gateway_keeps_its_own_policy_behind_a_middle_that_has_the_module(
        group: execwire.Group, packages: Packages) -> None:
    expected = write_big(packages)
    group.makegateway("popen//id=middle")
    allowed = group.makegateway("popen//via=middle")
    denied = group.makegateway("popen//via=middle//imports_deny=bigpkg")
    import_on_each([allowed], expected)
    denied.forward_imports()
    with pytest.raises(execwire.RemoteError, match="denies it"):
        denied.remote_exec(USES_BIG).receive(60)


def test_a_main_thread_only_middle_keeps_nothing_and_forwarding_still_works(
        group: execwire.Group, packages: Packages) -> None:
    expected = write_big(packages)
    middle = group.makegateway("popen//id=middle//execmodel=main_thread_only")
    inner = group.makegateway("popen//via=middle")
    import_on_each([inner], expected)
    assert getattr(middle, "_keeper", None) is None


def test_a_middle_killed_after_keeping_fails_the_next_import_behind_it(group: execwire.Group,
                                                                        packages: Packages) -> None:
    expected = write_big(packages)
    middle = group.makegateway("popen//id=middle")
    first, second = (group.makegateway("popen//via=middle") for _ in range(2))
    import_on_each([first], expected)
    second.forward_imports()
    os.kill(middle._rinfo().pid, signal.SIGKILL)
    with pytest.raises((execwire.GatewayLostError, execwire.RemoteError)):
        second.remote_exec(USES_BIG).receive(60)
