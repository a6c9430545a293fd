"""Command prefixes: start the far Python through sudo, docker, podman, kubectl or any command.

A prefix wraps the far Python's command line, so prefixes compose with each
other (the first one written in the spec is the outermost), with ssh (they run
on the ssh host: ssh there, then sudo) and with via (they run on the middle
gateway's machine):

    sudo=USER            sudo -n -u USER <python...>
    docker=[OPTS] NAME   docker exec -i [OPTS] NAME <python...>
    podman=[OPTS] NAME   podman exec -i [OPTS] NAME <python...>
    kubectl=[OPTS] POD   kubectl exec -i [OPTS] POD -- <python...>
    exec=COMMAND         COMMAND -c <stage 1>   (COMMAND ends in a Python, e.g. "docker exec -i box python3")

This module also explains a failed start from the command's exit code and
stderr: a missing Python, a missing tool, sudo asking for a password, an
unknown container.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .. import bootstrap
from .._far.errors import AuthenticationError, GatewayStartError
from ..process import Explain
from ..spec import XSpec
from .command import python_argv

# the far Python where it is not this machine's interpreter (ssh host, container)
REMOTE_PYTHON = "python3"
CONTAINER_TOOLS = {"docker": "docker", "podman": "podman", "kubectl": "kubectl"}


@dataclass
class Launch:
    """A command line that ends in the far Python, and how to explain its failure."""

    argv: list[str]
    what: str  # names argv[0] in "cannot start ..." errors
    explain: Explain | None = None
    # index in argv of this interpreter's path, which a via relay replaces by its own interpreter's
    self_python: int | None = None


def prefix_argv(key: str, value: str) -> list[str]:
    """The words one prefix puts in front of the command it wraps."""
    if key == "sudo":
        return ["sudo", "-n", "-u", value]
    words = shlex.split(value)
    if not words:
        raise ValueError(f"key {key!r} needs a name ({key}=NAME)")
    if key in ("docker", "podman"):
        return [key, "exec", "-i", *words]
    if key == "kubectl":
        return ["kubectl", "exec", "-i", *words, "--"]
    raise ValueError(f"{key!r} is not a command prefix")


def command_launch(spec: XSpec, where: str, self_python_ok: bool = True) -> Launch:
    """The far Python's command line wrapped in the spec's prefixes.

    ``where`` says where the command runs, for messages ("on this machine",
    "on host 'web1'"). ``self_python_ok``: without ``python=`` the far Python may
    be the interpreter running the command's launcher (popen, sudo); otherwise it
    is "python3" from the PATH.
    """
    layers = spec.prefixes()
    wrappers = [(key, value) for key, value in layers if key != "exec"]
    exec_command = spec.exec
    in_container = any(key in CONTAINER_TOOLS for key, _ in wrappers)
    if exec_command is not None:
        if spec.python:
            raise ValueError(f"gateway spec {str(spec)!r} names the far Python twice, with 'exec' and 'python'; "
                             "put the interpreter at the end of exec=COMMAND")
        command = shlex.split(exec_command)
        if not command:
            raise ValueError(f"key 'exec' names no command in gateway spec {str(spec)!r}")
        flags = ["-B"] if spec.dont_write_bytecode else []
        inner = [*command, *flags, "-c", bootstrap.stage1()]
        python = command
        self_python = None
    else:
        use_self = self_python_ok and not in_container and not spec.python
        inner = python_argv(spec, default_python=None if use_self else REMOTE_PYTHON)
        python = inner[:inner.index("-c")]
        if spec.dont_write_bytecode:
            python = python[:-1]
        self_python = 0 if use_self else None
    argv = inner
    for key, value in reversed(wrappers):
        words = prefix_argv(key, value)
        argv = [*words, *argv]
        if self_python is not None:
            self_python += len(words)
    if wrappers:
        key, value = wrappers[0]
        what = f"{argv[0]!r} (for {key}={value})"
    elif exec_command is not None:
        what = f"the command {argv[0]!r} (for exec={exec_command})"
    else:
        what = f"python interpreter {argv[0]!r}"
    explain = CommandFailure(where, layers, python, exec_command is not None)
    return Launch(argv, what, explain, self_python)


class CommandFailure:
    """Explains a failed start of a prefixed command from its exit code and stderr."""

    def __init__(self, where: str, layers: list[tuple[str, str]], python: list[str], via_exec: bool) -> None:
        self.where = where
        self.layers = layers
        self.python = python
        self.via_exec = via_exec

    def __call__(self, prefix: str, code: int | None, text: str) -> GatewayStartError | None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        for key, value in self.layers:
            error = self._explain_layer(prefix, key, value, lines)
            if error is not None:
                return error
        return self._explain_missing(prefix, code, lines)

    def _explain_layer(self, prefix: str, key: str, value: str, lines: list[str]) -> GatewayStartError | None:
        where = self.where
        if key == "sudo":
            said = _find(lines, "", "a password is required", "a terminal is required",
                         "is not in the sudoers", "is not allowed to", "not allowed to execute")
            if said:
                return AuthenticationError(
                    f"{prefix}: sudo will not start the far Python as user {value!r} {where} without a password "
                    f"or is not allowed to; add a NOPASSWD rule for it to sudoers, or log in as that user with "
                    f"ssh (sudo said: {said})")
            said = _find(lines, "sudo:", "unknown user", "unknown uid")
            if said:
                return GatewayStartError(f"{prefix}: there is no user {value!r} {where} (sudo said: {said})")
            return None
        if key not in CONTAINER_TOOLS:
            return None
        name = shlex.split(value)[-1]
        noun = "pod" if key == "kubectl" else "container"
        said = (_find(lines, "", "no such container", "no container with name or id", "is not running",
                      f'pods "{name.lower()}" not found', "notfound")
                if key != "kubectl" else _find(lines, "", "notfound", "not found"))
        if said and not self._mentions_python(said):
            return GatewayStartError(
                f"{prefix}: there is no running {noun} {name!r} {where}; check its name with "
                f"`{key} {'get pods' if key == 'kubectl' else 'ps'}` ({key} said: {said})")
        said = _find(lines, "", "cannot connect to the docker daemon", "unable to connect to the server",
                     "permission denied while trying to connect", "cannot connect to podman",
                     "the connection to the server")
        if said:
            return GatewayStartError(
                f"{prefix}: {key} {where} cannot reach its {'cluster' if key == 'kubectl' else 'engine'}; "
                f"check that `{key}` works there by hand ({key} said: {said})")
        return None

    def _explain_missing(self, prefix: str, code: int | None, lines: list[str]) -> GatewayStartError | None:
        """A missing (or not executable) Python or prefix tool."""
        missing = [line for line in lines
                   if any(words in line.lower() for words in (
                       "not found", "no such file or directory", "permission denied", "cannot execute",
                       "not executable", "unable to execute"))]
        python = shlex.join(self.python)
        for line in missing:
            if self._mentions_python(line):
                return self._no_python(prefix, python, line)
        tools = [key for key, _ in self.layers if key != "exec"]
        for line in missing:
            for tool in tools:
                if tool in line:
                    return GatewayStartError(
                        f"{prefix}: the command {tool!r} is missing or not runnable {self.where}; install it "
                        f"or put it on the PATH there (said: {line})")
        if code in (126, 127):
            return self._no_python(prefix, python, lines[-1] if lines else f"exit code {code}")
        return None

    def _mentions_python(self, line: str) -> bool:
        name = self.python[-1] if self.python else ""
        return bool(name) and (name in line or name.rsplit("/", 1)[-1] in line)

    def _no_python(self, prefix: str, python: str, said: str) -> GatewayStartError:
        inside = "".join(f" in {'pod' if key == 'kubectl' else 'container'} {shlex.split(value)[-1]!r}"
                         for key, value in self.layers if key in CONTAINER_TOOLS)
        fix = ("name the interpreter at the end of exec=COMMAND" if self.via_exec
               else "name it with //python=PATH")
        return GatewayStartError(
            f"{prefix}: no Python {python!r}{inside} {self.where}, or it cannot be run; install Python 3.6 or "
            f"newer there or {fix} (said: {said})")


def _find(lines: list[str], start: str, *needles: str) -> str | None:
    """The last line that starts with ``start`` and contains one of ``needles`` (case-insensitive)."""
    for line in reversed(lines):
        lower = line.lower()
        if lower.startswith(start) and any(needle in lower for needle in needles):
            return line
    return None
