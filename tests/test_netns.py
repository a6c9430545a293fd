"""Several hosts: network namespaces with an sshd each, a Group over all of them, a link cut mid-transfer.

See tests/netns.py for the topology: this machine reaches the hosts through a
gateway inside the hub namespace; addresses exist only inside the namespaces.
"""

from __future__ import annotations

import os
import time

import pytest
from netns import Netns

import execwire

pytestmark = pytest.mark.timeout(90)
pytest_plugins = ["sshd", "netns"]

WHERE = """
import os
channel.send((os.readlink("/proc/self/ns/net"), os.environ["SSH_CONNECTION"].split()[2]))
"""

STREAM = """
chunk = b"x" * 65536
channel.send("streaming")
while True:
    channel.send(chunk)
"""


def namespace_id(name: str) -> str:
    return f"net:[{os.stat(f'/run/netns/{name}').st_ino}]"


def test_group_over_all_hosts(netns_hosts: Netns, group: execwire.Group) -> None:
    group.makegateway(netns_hosts.hub_spec())
    gateways = [group.makegateway(netns_hosts.host_spec(index, extra=f"id=host{index}"))
                for index in range(len(netns_hosts.hosts))]
    answers = {gw.id: gw.remote_exec(WHERE).receive(30) for gw in gateways}
    for index, host in enumerate(netns_hosts.hosts):
        assert answers[f"host{index}"] == (namespace_id(host.namespace), host.address)
    # one remote_exec over the whole group, answers from every host (and the hub)
    multi = group.remote_exec("import os; channel.send(os.readlink('/proc/self/ns/net'))")
    answer_queue = multi.make_receive_queue()
    seen = sorted(answer_queue.get(timeout=30)[1] for _ in range(len(group)))
    expected = sorted([namespace_id(netns_hosts.hub)] + [namespace_id(h.namespace) for h in netns_hosts.hosts])
    assert seen == expected


def test_link_cut_mid_transfer_wakes_the_waiter(netns_hosts: Netns, group: execwire.Group) -> None:
    group.makegateway(netns_hosts.hub_spec())
    survivor = group.makegateway(netns_hosts.host_spec(0, extra="id=survivor"))
    victim = group.makegateway(netns_hosts.host_spec(1, extra="id=victim//timeout=20"))
    channel = victim.remote_exec(STREAM)
    assert channel.receive(30) == "streaming"
    received = 0
    while received < 50:  # the stream is flowing
        assert channel.receive(30) == b"x" * 65536
        received += 1
    netns_hosts.cut(1)
    cut_at = time.monotonic()
    with pytest.raises(execwire.GatewayLostError) as info:
        while True:  # drain what was in flight, then the error must come
            channel.receive(victim.startup_timeout)
    waited = time.monotonic() - cut_at
    assert waited < victim.startup_timeout, f"the link loss took {waited:.1f} s to be noticed"
    message = str(info.value)
    assert "gateway 'victim'" in message and "not responding" in message  # ssh's keepalive gave up
    # the other hosts are untouched, and nothing hangs at the end
    assert survivor.remote_exec(WHERE).receive(30)[1] == netns_hosts.hosts[0].address
    started = time.monotonic()
    group.terminate(timeout=2.0)
    assert time.monotonic() - started < 6


def test_a_host_without_route_is_host_not_found(netns_hosts: Netns, group: execwire.Group) -> None:
    group.makegateway(netns_hosts.hub_spec())
    # no route from the hub to 10.213.9.0/24: ssh fails at once, no packet leaves the hub
    with pytest.raises(execwire.HostNotFound) as info:
        group.makegateway(f"ssh=10.213.9.9//ssh_config={netns_hosts.ssh_config}//via=hub")
    assert "cannot reach host '10.213.9.9': there is no route to it" in str(info.value)
    assert "Network is unreachable" in str(info.value)
