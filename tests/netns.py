"""pytest plugin: several hosts as network namespaces, each with its own sshd (``netns_hosts``).

Load it with ``pytest_plugins = ["netns"]``. Topology, with addresses that exist
only inside the namespaces made here (never on this machine's own interfaces):

    hub namespace --veth-- host namespace 0    hub side 10.213.0.1/30, host side 10.213.0.2/30
                  --veth-- host namespace 1    hub side 10.213.0.5/30, host side 10.213.0.6/30
                  ...

This machine reaches the hosts through a gateway that runs inside the hub
(``exec=ip netns exec HUB python``): ``ssh=10.213.0.2//ssh_config=...//via=hub``.
The ssh_config sends keepalives every second (ServerAliveInterval 1,
ServerAliveCountMax 3), so a cut link (``cut(i)``) is noticed within seconds.
The namespaces live for a module (fixture ``netns_network``); ``netns_hosts``
brings every cut link up again after each test. Teardown kills every process in
the namespaces and deletes them (and so the links). Skips, saying why, where
``ip netns add`` is not permitted.
(PYTEST_DONT_REWRITE: test modules import this before pytest loads it.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sshd import keygen, require_openssh, start_sshd, stop_sshd, write_sshd_config

HOSTS = 3
SUBNET = "10.213.0"  # only ever inside the namespaces below


@dataclass
class NetnsHost:
    namespace: str
    address: str  # the host's side of its link
    hub_link: str  # the link's name in the hub namespace


@dataclass
class Netns:
    hub: str
    hosts: list[NetnsHost]
    ssh_config: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cut_hosts: set[int] = field(default_factory=set)  # links taken down by cut(), brought up again by heal()

    def hub_spec(self, gateway_id: str = "hub") -> str:
        """A gateway that runs inside the hub namespace (this machine's Python, same files)."""
        return f"exec=ip netns exec {self.hub} {sys.executable}//id={gateway_id}"

    def host_spec(self, index: int, via: str = "hub", extra: str = "") -> str:
        host = self.hosts[index]
        spec = f"ssh={host.address}//ssh_config={self.ssh_config}//via={via}//python={sys.executable}"
        return spec + (f"//{extra}" if extra else "")

    def cut(self, index: int) -> None:
        """Take host ``index``'s link down on the hub side: its packets go nowhere from now on."""
        ip("-n", self.hub, "link", "set", self.hosts[index].hub_link, "down")
        self.cut_hosts.add(index)

    def heal(self) -> None:
        """Bring every cut link up again, so that the next test finds all hosts reachable."""
        for index in sorted(self.cut_hosts):
            ip("-n", self.hub, "link", "set", self.hosts[index].hub_link, "up")
        self.cut_hosts.clear()


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


def kill_namespace(name: str) -> None:
    """Kill what runs in namespace ``name`` and delete it."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def wait_for_file(path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not start in its namespace; log:\n{log.read_text()}")
        time.sleep(0.02)


@pytest.fixture
def netns_hosts(netns_network: Netns) -> Iterator[Netns]:
    """The namespaces of ``netns_network``, with every link up again after the test (whatever order tests run in)."""
    try:
        yield netns_network
    finally:
        netns_network.heal()


@pytest.fixture(scope="module")
def netns_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Netns]:
    """A hub and HOSTS host namespaces linked to it, each host running sshd on port 22."""
    require_openssh()
    if shutil.which("ip") is None:
        pytest.skip("the ip command is not installed (Debian package iproute2)")
    tag = f"ew{os.getpid()}"
    hub = f"{tag}hub"
    probe = subprocess.run(["ip", "netns", "add", hub], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot make network namespaces here (ip netns add: {probe.stderr.strip()})")
    folder = tmp_path_factory.mktemp("netns")
    made = [hub]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        ip("-n", hub, "link", "set", "lo", "up")
        host_key = keygen(folder / "host_key", "execwire-netns-host")
        user_key = keygen(folder / "id_user", "execwire-netns-user")
        authorized = folder / "authorized_keys"
        authorized.write_text((folder / "id_user.pub").read_text())
        host_public = (folder / "host_key.pub").read_text()
        hosts = []
        for index in range(HOSTS):
            namespace, link = f"{tag}h{index}", f"h{index}"
            hub_address, address = f"{SUBNET}.{4 * index + 1}", f"{SUBNET}.{4 * index + 2}"
            ip("netns", "add", namespace)
            made.append(namespace)
            ip("-n", hub, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            ip("-n", hub, "addr", "add", f"{hub_address}/30", "dev", link)
            ip("-n", hub, "link", "set", link, "up")
            ip("-n", namespace, "addr", "add", f"{address}/30", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
            config = write_sshd_config(folder, f"sshd{index}", [(address, 22)], host_key, authorized,
                                       extra="ClientAliveInterval 2\nClientAliveCountMax 2")
            log = folder / f"sshd{index}.log"
            process = start_sshd(config, log, prefix=["ip", "netns", "exec", namespace])
            processes.append(process)
            wait_for_file(folder / f"sshd{index}.pid", process, log)
            hosts.append(NetnsHost(namespace, address, link))
        known_hosts = folder / "known_hosts"
        known_hosts.write_text("".join(f"{host.address} {host_public}" for host in hosts))
        ssh_config = folder / "ssh_config"
        ssh_config.write_text(
            "Host *\n"
            "    User root\n"
            f"    IdentityFile {user_key}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known_hosts}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n"
            "    ServerAliveInterval 1\n"
            "    ServerAliveCountMax 3\n"
            "    ConnectTimeout 5\n"
            "    ControlMaster no\n")  # LogLevel stays INFO: ssh says "Timeout, server ... not responding"
        yield Netns(hub, hosts, ssh_config, processes)
    finally:
        for process in processes:
            stop_sshd(process)
        for namespace in made:
            kill_namespace(namespace)
