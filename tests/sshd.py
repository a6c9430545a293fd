"""pytest plugin: a real OpenSSH server on a loopback port, started once per test session.

Load it with ``pytest_plugins = ["sshd"]`` in a test module. The ``sshd`` fixture
yields an SshServer: its own host key, a user key in its own authorized_keys
file, a known_hosts file and an ssh_config whose Host alias reaches it, so
``ssh=ALIAS//ssh_config=PATH`` works without touching ~/.ssh. Tests are
skipped, saying why, where sshd or ssh is not installed (.ci/run installs them).

The helpers (keygen, write_sshd_config, start_sshd) also serve netns.py and
bench/ssh_startup.py. The ``unprivileged_user`` fixture makes a user for the
sudo tests. (PYTEST_DONT_REWRITE: test modules import this before pytest loads it.)
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself and wants an absolute path


@dataclass
class SshServer:
    """How to reach the test sshd."""

    host: str
    port: int
    user: str
    alias: str  # Host alias in ssh_config
    ssh_config: Path
    key: Path  # the user's private key
    known_hosts: Path
    folder: Path
    log: Path

    def spec(self, extra: str = "") -> str:
        """A gateway spec that reaches this server through its ssh_config."""
        return f"ssh={self.alias}//ssh_config={self.ssh_config}" + (f"//{extra}" if extra else "")

    def options(self) -> str:
        """ssh options (for ``ssh=OPTIONS user@host``) that reach it without the ssh_config."""
        return (f"-i {self.key} -o IdentitiesOnly=yes -o UserKnownHostsFile={self.known_hosts} "
                f"-o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR -p {self.port}")


def require_openssh() -> None:
    """Skip, naming the packages, where the OpenSSH server or client is missing."""
    missing = [name for name, path in (("sshd", SSHD), ("ssh", shutil.which("ssh")),
                                       ("ssh-keygen", shutil.which("ssh-keygen")))
               if not path or not os.access(path, os.X_OK)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian packages openssh-server, openssh-client)")


def keygen(path: Path, comment: str) -> Path:
    """A new ed25519 key pair without passphrase at ``path`` (and ``path``.pub)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path


def write_sshd_config(folder: Path, name: str, listen: list[tuple[str, int]], host_key: Path,
                      authorized_keys: Path, extra: str = "") -> Path:
    """An sshd_config that touches nothing outside ``folder`` (no PAM, no system keys)."""
    config = folder / f"{name}_config"
    lines = [f"ListenAddress {address}:{port}" for address, port in listen]
    lines += [
        f"HostKey {host_key}",
        f"PidFile {folder / (name + '.pid')}",
        f"AuthorizedKeysFile {authorized_keys}",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PrintMotd no",
        "PrintLastLog no",
        "MaxStartups 100",
        "LogLevel VERBOSE",
        extra,
    ]
    config.write_text("\n".join(lines) + "\n")
    return config


def start_sshd(config: Path, log: Path, prefix: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Run sshd in the foreground (optionally behind ``prefix``, e.g. ip netns exec NS)."""
    try:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    except OSError:
        pass  # not root: sshd runs without privilege separation and says so in its log if it cannot
    with open(log, "ab") as output:
        return subprocess.Popen([*(prefix or []), SSHD, "-D", "-e", "-f", str(config)],
                                stdin=subprocess.DEVNULL, stdout=output, stderr=output)


def stop_sshd(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_banner(host: str, port: int, process: subprocess.Popen[bytes], log: Path,
                    timeout: float = 10.0) -> bool:
    """True once the server answers with its SSH banner; False if it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"sshd on {host}:{port} did not answer within {timeout} s; log:\n{log.read_text()}")


def launch_sshd(folder: Path) -> tuple[SshServer, subprocess.Popen[bytes]]:
    """Start an sshd on 127.0.0.1 with keys and client files in ``folder`` (also used by bench/)."""
    host_key = keygen(folder / "host_key", "execwire-test-host")
    user_key = keygen(folder / "id_user", "execwire-test-user")
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "id_user.pub").read_text())
    user = getpass.getuser()
    log = folder / "sshd.log"
    for _attempt in range(5):  # a free port can be taken by someone else before sshd binds it
        port = free_port()
        config = write_sshd_config(folder, "sshd", [("127.0.0.1", port)], host_key, authorized)
        process = start_sshd(config, log)
        if wait_for_banner("127.0.0.1", port, process, log):
            break
    else:
        raise RuntimeError(f"sshd did not start; log:\n{log.read_text()}")
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {(folder / 'host_key.pub').read_text()}")
    alias = "execwire-test-sshd"
    ssh_config = folder / "ssh_config"
    ssh_config.write_text(
        f"Host {alias}\n"
        f"    HostName 127.0.0.1\n"
        f"    Port {port}\n"
        f"    User {user}\n"
        f"Host *\n"
        f"    IdentityFile {user_key}\n"
        f"    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        f"    GlobalKnownHostsFile /dev/null\n"
        f"    StrictHostKeyChecking yes\n"
        f"    PasswordAuthentication no\n"
        f"    KbdInteractiveAuthentication no\n"
        f"    ControlMaster no\n"
        f"    LogLevel ERROR\n")
    return SshServer("127.0.0.1", port, user, alias, ssh_config, user_key, known_hosts, folder, log), process


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A running sshd on 127.0.0.1 and the client files to reach it."""
    require_openssh()
    server, process = launch_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        stop_sshd(process)


@pytest.fixture(scope="session")
def unprivileged_user() -> Iterator[pwd.struct_passwd]:
    """A user without privileges, made for the test session (useradd) and removed after it."""
    if os.geteuid() != 0:
        pytest.skip("making a user for the sudo tests needs root")
    for tool in ("sudo", "useradd", "userdel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages sudo, passwd)")
    name = f"execwire-t{os.getpid()}"  # per run: a second run at the same time must not delete it under us
    created = False
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", name],
                       check=True, capture_output=True, timeout=30)
        created = True
    try:
        yield pwd.getpwnam(name)
    finally:
        if created:
            subprocess.run(["userdel", name], capture_output=True, timeout=30)
