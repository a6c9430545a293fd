"""ssh: the far Python started by the system's OpenSSH client.

Using the ``ssh`` command (not a library) keeps ~/.ssh/config, agents, keys,
ProxyJump and ControlMaster working as the user set them up. ``ssh=`` holds
the destination, optionally after ssh options: ``ssh=-p 2222 user@host``;
``ssh_config=PATH`` becomes ``-F PATH``. The remote command is the far Python
(wrapped in any command prefixes); the boot payload goes out right after ssh
starts, so start-up costs one round trip once ssh has logged in.

ssh explains failures only on stderr, so it is kept until the far side
answers and classified: name not resolved or host unreachable (HostNotFound),
login or host key refused (AuthenticationError), no Python on the host.
"""

from __future__ import annotations

import base64
import math
import shlex

from .._far.errors import AuthenticationError, GatewayStartError, HostNotFound
from ..process import Explain
from ..spec import XSpec
from .prefix import Launch, command_launch

SSH = "ssh"


def ssh_words(spec: XSpec) -> tuple[list[str], str]:
    """The ssh options and the destination ([user@]host, the last word) of ``ssh=``."""
    words = shlex.split(spec.ssh or "")
    if not words or words[-1].startswith("-"):
        raise ValueError(f"key 'ssh' must end in the host to reach ([user@]host), after any ssh options, "
                         f"in gateway spec {str(spec)!r}")
    return words[:-1], words[-1]


def ssh_launch(spec: XSpec) -> Launch:
    """The ssh command line that starts the far Python (and its prefixes) on the host."""
    options, destination = ssh_words(spec)
    remote = command_launch(spec, f"on host {destination!r}", self_python_ok=False)
    argv = [SSH]
    if spec.ssh_config:
        argv += ["-F", spec.ssh_config]
    argv += options
    if not _has_option(options, "batchmode"):
        # never wait for a password or a host key question nobody can answer
        argv += ["-o", "BatchMode=yes"]
    if spec.timeout is not None and not _has_option(options, "connecttimeout"):
        argv += ["-o", f"ConnectTimeout={max(1, math.ceil(float(spec.timeout)))}"]
    argv += ["-T", destination, remote_command(remote.argv)]
    explain = SshFailure(destination, remote.explain)
    return Launch(argv, f"the ssh client {SSH!r} (for ssh={spec.ssh})", explain)


def remote_command(argv: list[str]) -> str:
    """The command line for the remote login shell, on one line of safe characters.

    The last word (stage 1: several lines with quotes) travels base64-encoded so
    that any shell (sh, bash, zsh, fish, csh) passes it through unchanged;
    binascii decodes it (the base64 module would import re: 4 ms more).
    """
    program = base64.b64encode(argv[-1].encode("utf-8")).decode("ascii")
    return shlex.join([*argv[:-1], f'import binascii;exec(binascii.a2b_base64("{program}"))'])


def _has_option(options: list[str], name: str) -> bool:
    """True if ``options`` set ssh option ``name`` with -o (any spelling and case)."""
    for index, word in enumerate(options):
        setting = None
        if word == "-o" and index + 1 < len(options):
            setting = options[index + 1]
        elif word.startswith("-o"):
            setting = word[2:]
        if setting is not None and setting.strip().lower().replace(" ", "=").startswith(name + "="):
            return True
    return False


class SshFailure:
    """Explains a failed ssh start: ssh's own errors first, then the remote command's."""

    def __init__(self, destination: str, remote: Explain | None) -> None:
        self.destination = destination
        self.remote = remote

    def __call__(self, prefix: str, code: int | None, text: str) -> GatewayStartError | None:
        lines = [line.strip() for line in text.splitlines()
                 if line.strip() and not line.startswith("Warning: Permanently added")]
        if code in (255, None):
            error = self._explain_ssh(prefix, lines)
            if error is not None:
                return error
        if self.remote is not None:
            return self.remote(prefix, code, text)
        return None

    def _explain_ssh(self, prefix: str, lines: list[str]) -> GatewayStartError | None:
        host = self.destination
        said = _find(lines, "could not resolve hostname", "name or service not known",
                     "temporary failure in name resolution", "nodename nor servname")
        if said:
            return HostNotFound(
                f"{prefix}: host {host!r} not found: its name does not resolve; check the spelling, the "
                f"HostName in your ssh config and DNS (ssh said: {said})")
        said = _find(lines, "connection refused")
        if said:
            return HostNotFound(
                f"{prefix}: cannot reach host {host!r}: the connection was refused (no ssh server on that "
                f"address and port); check the host and the port (-p or Port in your ssh config) "
                f"(ssh said: {said})")
        said = _find(lines, "no route to host", "network is unreachable", "host is unreachable")
        if said:
            return HostNotFound(
                f"{prefix}: cannot reach host {host!r}: there is no route to it from here; check its address "
                f"and the network (ssh said: {said})")
        said = _find(lines, "connection timed out", "operation timed out", "timeout, server")
        if said:
            return HostNotFound(
                f"{prefix}: cannot reach host {host!r}: no answer from it; check that it is up and that "
                f"its address is right and reachable from here (ssh said: {said})")
        said = _find(lines, "permission denied (", "too many authentication failures",
                     "no supported authentication methods", "authentication failed")
        if said:
            return AuthenticationError(
                f"{prefix}: ssh to {host!r} was refused: the login failed; check the user name and that "
                f"your key is offered (ssh-add, IdentityFile in your ssh config, or ssh=-i KEY {host}); "
                f"`ssh {host} true` shows the same error (ssh said: {said})")
        said = _find(lines, "host key verification failed", "remote host identification has changed",
                     "host key is known", "no matching host key")
        if said:
            return AuthenticationError(
                f"{prefix}: ssh did not trust the host key of {host!r} (unknown or changed), so it did not "
                f"connect; check the key and add it to known_hosts, e.g. by connecting once with "
                f"`ssh {host}` (ssh said: {said})")
        said = _find(lines, "kex_exchange_identification", "connection closed by", "connection reset by",
                     "ssh_exchange_identification")
        if said:
            return HostNotFound(
                f"{prefix}: cannot reach host {host!r}: the connection closed before the login; is it an "
                f"ssh server, and does it accept us? (ssh said: {said})")
        said = _find(lines, "bad configuration option", "unknown option", "usage: ssh", "can't open user config",
                     "bad owner or permissions", "illegal option", "terminating, ")
        if said:
            return GatewayStartError(
                f"{prefix}: ssh could not use its options or config; check ssh= and ssh_config= "
                f"(ssh said: {said})")
        return None


def _find(lines: list[str], *needles: str) -> str | None:
    """The last line that contains one of ``needles`` (case-insensitive)."""
    for line in reversed(lines):
        lower = line.lower()
        if any(needle in lower for needle in needles):
            return line
    return None
