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
from hypothesis import given, settings
from hypothesis import strategies as st
from pythons import matrix
from sshd import SshServer

import execwire
from execwire import bootstrap
from execwire._far import wire
from execwire.transports import middle_cache, relay

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ["sshd", "forwarding"]

SOURCE_SIZE = 400_000
DATA_SIZE = 300_000
PAYLOAD = SOURCE_SIZE + DATA_SIZE
USES_BIG = """
import hashlib, pkgutil, bigpkg
data = pkgutil.get_data("bigpkg", "data.txt")
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


def assert_imports_cost_each_middle_one_copy(middles: list[execwire.Gateway], inner: list[execwire.Gateway],
                                             expected: tuple[str, str]) -> None:
    """Each gateway of ``inner`` imports the package; each middle read less than one and a half copies."""
    for gateway in inner:
        gateway._rinfo()
    before = [bytes_read(middle) for middle in middles]
    import_on_each(inner, expected)
    for middle, read in zip(middles, before, strict=True):
        assert bytes_read(middle) - read < 1.5 * PAYLOAD, middle.id  # one copy per gateway without keeping


def test_three_gateways_via_one_middle_cost_its_link_one_copy(group: execwire.Group, packages: Packages) -> None:
    expected = write_big(packages)
    middle = group.makegateway("popen//id=middle")
    inner = [group.makegateway(f"popen//via=middle//id=inner{index}") for index in range(3)]
    assert_imports_cost_each_middle_one_copy([middle], inner, expected)


def test_through_two_hops_each_link_carries_it_once(group: execwire.Group, packages: Packages) -> None:
    expected = write_big(packages)
    first = group.makegateway("popen//id=first")
    second = group.makegateway("popen//via=first//id=second")
    inner = [group.makegateway(f"popen//via=second//id=inner{index}") for index in range(2)]
    assert_imports_cost_each_middle_one_copy([first, second], inner, expected)


def test_gateways_via_an_ssh_host_share_what_crossed_the_ssh_link(sshd: SshServer, group: execwire.Group,
                                                                  packages: Packages) -> None:
    expected = write_big(packages)
    host = group.makegateway(sshd.spec("id=host"))
    inner = [group.makegateway(f"popen//via=host//python=python3//id=worker{index}") for index in range(2)]
    assert_imports_cost_each_middle_one_copy([host], inner, expected)


OLD_AND_NEW = matrix()  # 3.6 to 3.13 and PyPy 3, those present


@pytest.mark.parametrize("python", OLD_AND_NEW, ids=[each.name for each in OLD_AND_NEW])
def test_a_middle_and_gateways_behind_it_on_every_far_python(group: execwire.Group, packages: Packages,
                                                            python) -> None:  # type: ignore[no-untyped-def]
    expected = write_big(packages)
    middle = group.makegateway(f"popen//python={python.command}//id=middle")
    inner = [group.makegateway(f"popen//via=middle//python={python.command}") for _ in range(2)]
    assert_imports_cost_each_middle_one_copy([middle], inner, expected)


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


def relay_running_cat(gateway: execwire.Gateway, kept_wait: float = 60.0) -> execwire.Channel:
    channel = gateway.remote_exec(relay)
    channel.send({"argv": ["cat"], "self_python": None, "kept_wait": kept_wait})
    assert channel.receive(30)[0] == "pid"
    return channel


def test_the_relay_writes_a_head_then_what_its_gateway_keeps(gw: execwire.Gateway) -> None:
    opening = gw.remote_exec(relay)
    opening.send({"keep": True})
    store = opening.receive(30)
    store.send(("keep", b"k1", b" world"))
    channel = relay_running_cat(gw)
    channel.send(("inject", [b"hello", b"!"], [b"k1"]))
    channel.send(b"?")
    channel.send(("eof",))
    received = b""
    while not received.endswith(b"?"):
        item = channel.receive(30)
        assert isinstance(item, bytes), item
        received += item
    assert received == b"hello world!?"
    assert channel.receive(30) == ("exit", 0)


def test_an_injection_whose_kept_bytes_never_come_ends_the_command_saying_why(gw: execwire.Gateway) -> None:
    channel = relay_running_cat(gw, kept_wait=0.2)
    channel.send(("inject", [b"head", b""], [b"never kept"]))
    said = b""
    while True:
        item = channel.receive(30)
        if item[0] == "exit":
            break
        said += item[1] if item[0] == "stderr" else b""
    assert item[1] != 0
    assert b"the kept bytes a frame needs did not arrive within 0.2 seconds" in said


leaves = st.one_of(st.none(), st.integers(), st.text(max_size=300), st.binary(max_size=300))
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.lists(inner, max_size=5).map(tuple),
    st.dictionaries(st.text(max_size=5), inner, max_size=5)), max_leaves=20)


@given(values, st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_an_item_in_pieces_is_the_encoding_of_the_item(value, rng) -> None:  # type: ignore[no-untyped-def]
    """Any part of an item may go by reference: the pieces, put together, are what Channel.send writes."""
    def with_blobs(node):  # type: ignore[no-untyped-def]
        if rng.random() < 0.3:
            return middle_cache.Blob.of(node)
        if type(node) in (list, tuple):
            return type(node)(with_blobs(child) for child in node)
        if type(node) is dict:
            return {key: with_blobs(child) for key, child in node.items()}
        return node

    pieces = middle_cache.encode_pieces(with_blobs(value))
    joined = b"".join(piece.data if isinstance(piece, middle_cache.Blob) else piece for piece in pieces)
    assert joined == b"".join(wire.encode(value))


def test_starting_gateways_behind_a_middle_and_shipping_them_long_code_sends_each_once(
        group: execwire.Group) -> None:
    """The far program (stage 2 of the bootstrap) and long shipped code cross the link to the middle once."""
    code = "DATA = %r\nchannel.send(len(DATA))\n" % ("z" * 60_000)
    middle = group.makegateway("popen//id=middle")
    first = group.makegateway("popen//via=middle")
    assert first.remote_exec(code).receive(30) == 60_000
    before = bytes_read(middle)
    more = [group.makegateway("popen//via=middle") for _ in range(3)]
    assert [gateway.remote_exec(code).receive(30) for gateway in more] == [60_000] * 3
    once = len(bootstrap.stage2()) + len(code)
    assert bytes_read(middle) - before < once  # each start and each code once: three times that
