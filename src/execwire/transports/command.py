"""Start a far interpreter as a local command whose stdin and stdout carry the protocol.

popen runs Python directly; ssh, sudo and container tools wrap that same command.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence

from .. import bootstrap, remote_logging
from .._far import frames
from .._far.errors import GatewayLostError, GatewayStartError
from .._far.streams import FrameWriter, PipeStream
from ..process import Explain, Process, StderrCollector
from ..spec import XSpec


def python_argv(spec: XSpec, marshalled: bool = False, default_python: str | None = None) -> list[str]:
    """The far interpreter's command: ``python=`` split like a shell would, plus stage 1.

    ``marshalled`` (only for this very interpreter) ships stage 2 precompiled.
    Without ``python=``, ``default_python`` is used (e.g. "python3" on an ssh
    host), or this interpreter.
    """
    python = python_command(spec) or [default_python or sys.executable]
    flags = ["-B"] if spec.dont_write_bytecode else []
    return [*python, *flags, "-c", bootstrap.stage1(marshalled)]


def python_command(spec: XSpec) -> list[str]:
    """``python=`` as a command: split like a shell would; a bare version such as 3.12 means python3.12."""
    if not spec.python:
        return []
    if re.fullmatch(r"\d+(\.\d+)?", spec.python):
        return [f"python{spec.python}"]
    words = shlex.split(spec.python)
    if not words:
        raise ValueError(f"key 'python' names no command in gateway spec {str(spec)!r}")
    return words


def is_this_interpreter(spec: XSpec) -> bool:
    """True when ``python=`` (or its absence) means the interpreter running this code."""
    if not spec.python:
        return True
    words = python_command(spec)
    found = shutil.which(words[0]) if words else None
    return found is not None and os.path.realpath(found) == os.path.realpath(sys.executable)


def far_config(spec: XSpec, gateway_id: str, debug: bool) -> dict[str, object]:
    """Settings the far side applies at start-up, sent as data.

    "services": both faces serve far log records and pdb sessions (upstream.py),
    so the far side opens its channel to them.
    """
    return {
        "id": gateway_id,
        "chdir": spec.chdir,
        "nice": int(spec.nice) if spec.nice is not None else None,
        "env": dict(spec.env),
        "dont_write_bytecode": bool(spec.dont_write_bytecode),
        "execmodel": spec.execmodel or "thread",
        "max_channels": int(spec.max_channels) if spec.max_channels else None,
        "debug": debug,
        "logging": remote_logging.far_settings(spec),
        "services": True,
    }


def _make_room(fd: int, size: int) -> None:
    """Grow the pipe so the boot payload fits and writing it does not wait for the far start-up.

    Otherwise a group would start its gateways one after another. Linux only; elsewhere
    the write just waits.
    """
    if size <= 60 * 1024 or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << max(size - 1, 1).bit_length())
    except OSError:
        pass  # over the user's pipe budget: the write waits instead


def start_command(argv: Sequence[str], config: dict[str, object], what: str,
                  marshalled: bool = False, env: dict[str, str] | None = None,
                  explain: Explain | None = None) -> tuple[PipeStream, Process]:
    """Run ``argv`` with pipes on stdin/stdout and write the boot payload to it.

    ``what`` names the gateway in errors (e.g. "gateway 'gw0' (popen//python=python9)").
    With ``explain`` (ssh, sudo, containers) the command's stderr is kept until
    the far side answers, so that a failed start can say why (see process.py).
    """
    to_far_read, to_far_write = os.pipe()
    from_far_read, from_far_write = os.pipe()
    err_read, err_write = os.pipe() if explain is not None else (None, None)
    try:
        popen = subprocess.Popen(
            list(argv), stdin=to_far_read, stdout=from_far_write, stderr=err_write,
            close_fds=True, start_new_session=True, env=env,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        for fd in (to_far_read, to_far_write, from_far_read, from_far_write, err_read, err_write):
            if fd is not None:
                os.close(fd)
        raise GatewayStartError(f"{what}: cannot start {argv[0]!r}: {exc.strerror}") from exc
    os.close(to_far_read)
    os.close(from_far_write)
    collector = None
    if err_read is not None and err_write is not None:
        os.close(err_write)
        collector = StderrCollector()
        collector.read_from(err_read)
    process = Process(popen, collector, explain)
    if collector is not None:
        transport: PipeStream = WatchedPipeStream(from_far_read, to_far_write, collector, process, what)
    else:
        transport = PipeStream(from_far_read, to_far_write)
    boot = bootstrap.boot_bytes(config, marshalled)
    _make_room(to_far_write, len(boot))
    try:
        FrameWriter(transport).send_raw(boot)
    except GatewayLostError:
        pass  # it died at once; the reader reports why
    return transport, process


class WatchedPipeStream(PipeStream):
    """The pipes of a launcher (ssh, sudo, ...) whose stderr is collected.

    The far side's first bytes start the forwarding of that stderr; at the end
    of the stream, a launcher that failed after start-up (ssh: "Timeout, server
    not responding") turns into a GatewayLostError that quotes it.
    """

    def __init__(self, read_fd: int, write_fd: int, stderr: StderrCollector,
                 process: Process, what: str) -> None:
        super().__init__(read_fd, write_fd)
        self._stderr = stderr
        self._process = process
        self._what = what
        self._started = False
        self._speaks_protocol = False

    def readinto(self, view: memoryview) -> int:
        count: int = super().readinto(view)
        if count and not self._started:
            self._started = True
            self._speaks_protocol = bytes(view[:min(count, 2)]) == frames.MAGIC[:min(count, 2)]
            self._stderr.start_forwarding()
        elif not count and self._speaks_protocol:
            reason = self._failure()
            if reason:
                raise GatewayLostError(reason)
        return count

    def _failure(self) -> str | None:
        """Why the launcher ended after start-up, if it failed (garbage and start-up failures are
        left to the frame reader and to Process.explain_start_failure)."""
        code = self._process.wait(1.0)  # (which also ends what is left of its process group)
        if not code:
            return None
        said = self._stderr.said_since_forwarding(0.5)
        args = self._process.popen.args
        command = args[0] if isinstance(args, list) else args
        return f"{self._what}: {command!r} ended with exit code {code}" + (f": {said}" if said else "")
