"""via=ID: gateways whose bytes travel through other gateways, here all on this machine.

(ssh through ssh, and popen through ssh, are in test_ssh.py; through network
namespaces in test_netns.py.)
"""

from __future__ import annotations

import ast
import inspect
import os
import time

import pytest
from conftest import find_python, pid_gone, wait_until

import execwire
from execwire.transports import relay

pytestmark = pytest.mark.timeout(60)

PARENT = "import os; channel.send((os.getpid(), os.getppid()))"


def test_popen_via_popen_runs_under_the_middle(group: execwire.Group) -> None:
    middle = group.makegateway("popen//id=mid")
    inner = group.makegateway("popen//via=mid")
    middle_pid = middle.remote_exec(PARENT).receive(30)[0]
    inner_pid, inner_parent = inner.remote_exec(PARENT).receive(30)
    assert inner_parent == middle_pid  # the relay in the middle started it
    assert inner_pid == inner._rinfo().pid == inner._process.pid


def test_data_flows_both_ways_through_a_chain(group: execwire.Group) -> None:
    group.makegateway("popen//id=a")
    group.makegateway("popen//via=a//id=b")
    last = group.makegateway("popen//via=b//id=c")
    channel = last.remote_exec("""
for item in channel:
    channel.send(item[::-1])
""")
    big = bytes(range(256)) * 40_000  # 10 MB
    channel.send(big)
    assert channel.receive(30) == big[::-1]
    for number in range(200):  # many small items keep their order
        channel.send([number, "x" * number])
    assert [channel.receive(30) for _ in range(200)] == [["x" * n, n] for n in range(200)]
    channel.close()
    # the chain is real: c's parent is b, b's parent is a
    pids = {gw.id: gw.remote_exec(PARENT).receive(30) for gw in group}
    assert pids["c"][1] == pids["b"][0] and pids["b"][1] == pids["a"][0]


def test_without_python_the_middle_runs_its_own_interpreter(group: execwire.Group) -> None:
    other = find_python("3.1[0-9]*") or find_python("3.[6-9]*")
    if other is None:
        pytest.skip("no second Python interpreter (pyenv) on this machine")
    group.makegateway(f"popen//python={other}//id=mid")
    inner = group.makegateway("popen//via=mid")
    assert os.path.realpath(inner._rinfo().executable) == os.path.realpath(other)


def test_ending_the_middle_ends_the_gateways_behind_it(group: execwire.Group) -> None:
    middle = group.makegateway("popen//id=mid")
    one = group.makegateway("popen//via=mid//id=one")
    two = group.makegateway("popen//via=one//id=two")
    waiting = [gw.remote_exec("import time; channel.send('up'); time.sleep(60)") for gw in (one, two)]
    assert [channel.receive(30) for channel in waiting] == ["up", "up"]
    far_pids = [one._process.pid, two._process.pid]
    started = time.monotonic()
    middle.exit()
    for channel in waiting:
        with pytest.raises(execwire.GatewayLostError, match="which it runs through"):
            channel.receive(10)
    assert time.monotonic() - started < 5
    with pytest.raises(execwire.GatewayLostError):
        two.remote_exec("channel.send(1)")
    assert all(wait_until(lambda pid=pid: pid_gone(pid), 10) for pid in far_pids)


def test_ending_a_gateway_behind_keeps_the_middle(group: execwire.Group) -> None:
    middle = group.makegateway("popen//id=mid")
    inner = group.makegateway("popen//via=mid")
    inner_pid = inner._process.pid
    inner.remote_exec("channel.send(1)").receive(30)
    inner.exit()
    assert wait_until(lambda: pid_gone(inner_pid), 10)
    assert middle.remote_exec("channel.send(2)").receive(30) == 2
    assert wait_until(lambda: middle.remote_status().numexecuting == 0, 5)  # the relay finished too


def test_far_side_output_of_a_via_gateway_arrives(group: execwire.Group) -> None:
    group.makegateway("popen//id=mid")
    inner = group.makegateway("popen//via=mid")
    seen: list[tuple[int, bytes]] = []
    inner.output_handler = lambda gw, stream, data: seen.append((stream, data))
    inner.remote_exec("import sys; print('hello'); sys.stdout.flush(); channel.send(1)").receive(30)
    assert wait_until(lambda: (1, b"hello\n") in seen, 5)


def test_via_an_unknown_id_is_refused(group: execwire.Group) -> None:
    group.makegateway("popen//id=mid")
    with pytest.raises(ValueError, match=r"via='nope' .* names no gateway of this group; its gateways are \['mid'\]"):
        group.makegateway("popen//via=nope")


def test_missing_python_behind_a_middle_is_named(group: execwire.Group) -> None:
    group.makegateway("popen//id=mid")
    with pytest.raises(execwire.GatewayStartError) as info:
        group.makegateway("popen//via=mid//python=/no/such/python3")
    assert "cannot start python interpreter '/no/such/python3' on gateway 'mid'" in str(info.value)
    assert "No such file or directory" in str(info.value)


def test_a_far_python_that_ends_at_once_is_explained(group: execwire.Group) -> None:
    group.makegateway("popen//id=mid")
    with pytest.raises(execwire.GatewayStartError) as info:
        group.makegateway("popen//via=mid//exec=sh -c 'echo broken >&2; exit 3' sh")
    assert "(exit code 3)" in str(info.value) and "broken" in str(info.value)


def test_start_up_timeout_through_a_middle(group: execwire.Group) -> None:
    group.makegateway("popen//id=mid")
    started = time.monotonic()
    with pytest.raises(execwire.GatewayStartError, match="within 0.5 seconds; set //timeout=SECONDS"):
        group.makegateway("popen//via=mid//timeout=0.5//exec=sh -c 'sleep 30' sh")
    assert time.monotonic() - started < 5


def test_relay_runs_on_python_3_6() -> None:
    source = inspect.getsource(relay)
    ast.parse(source, feature_version=(3, 6))


def test_relay_on_the_oldest_python(group: execwire.Group) -> None:
    oldest = find_python("3.6*")
    if oldest is None:
        pytest.skip("no Python 3.6 (pyenv) on this machine")
    group.makegateway(f"popen//python={oldest}//id=old")
    inner = group.makegateway(f"popen//via=old//python={oldest}")
    channel = inner.remote_exec("import sys; channel.send((tuple(sys.version_info[:2]), channel.receive()))")
    channel.send(b"x" * 300_000)
    assert channel.receive(30) == ((3, 6), b"x" * 300_000)
