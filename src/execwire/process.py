"""A far interpreter's local process, and the bounded way to stop it.

Every local command of a gateway (the far Python itself, or ssh, sudo, docker,
a ``python=`` wrapper script) is started in a session of its own, so its process
group holds it and whatever it started. Once the command has ended, and before
it is reaped (while its process id is still reserved, so the group id cannot
name anybody else), the rest of the group gets SIGKILL: a wrapper's children, a
launcher's helpers and the far Python's subprocesses do not outlive the gateway.
Only processes that left the group on purpose (their own session: daemons,
ssh's ControlPersist master) are not followed.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from ._far.errors import GatewayStartError

# explain(prefix, exit code or None, stderr text) -> a precise start error, or None if it cannot tell
Explain = Callable[[str, int | None, str], GatewayStartError | None]


class StderrCollector:
    """A launcher's stderr (ssh, sudo, docker, ...): kept while the far side starts, passed on after.

    Those tools explain a failure only on stderr, so the text is kept (its last
    ``LIMIT`` bytes) to classify a failed start; once the far Python has answered,
    what they write goes to our stderr as before. What they said during a start
    that succeeded (ssh's "Permanently added ... to known hosts") is not shown.
    """

    LIMIT = 16 * 1024

    def __init__(self) -> None:
        self._kept = bytearray()
        self._since_forwarding = bytearray()
        self._forward = False
        self._lock = threading.Lock()
        self._done = threading.Event()

    def read_from(self, fd: int) -> None:
        """Collect from ``fd`` (closed at its end) in a daemon thread."""
        threading.Thread(target=self._read_loop, args=(fd,), name="execwire-stderr", daemon=True).start()

    def _read_loop(self, fd: int) -> None:
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except InterruptedError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self.feed(data)
        finally:
            os.close(fd)
            self.finish()

    def feed(self, data: bytes) -> None:
        with self._lock:
            self._kept += data
            del self._kept[:-self.LIMIT]
            forward = self._forward
            if forward:
                self._since_forwarding += data
                del self._since_forwarding[:-self.LIMIT]
        if forward:
            _write_stderr(data)

    def finish(self) -> None:
        """No more data will come."""
        self._done.set()

    def start_forwarding(self) -> None:
        """The far side answered: from now on pass what arrives to our stderr."""
        with self._lock:
            self._forward = True

    def said_since_forwarding(self, timeout: float = 0.5) -> str:
        """The last lines passed on since start-up (why a launcher ended), after waiting for the end."""
        self._done.wait(timeout)
        with self._lock:
            lines = self._since_forwarding.decode("utf-8", "replace").strip().splitlines()
        return " / ".join(line.strip() for line in lines[-3:] if line.strip())

    def text(self, timeout: float = 1.0) -> str:
        """What was collected, after waiting up to ``timeout`` for the stream's end."""
        self._done.wait(timeout)
        with self._lock:
            return self._kept.decode("utf-8", "replace")


def _write_stderr(data: bytes) -> None:
    try:
        buffer = getattr(sys.stderr, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            sys.stderr.write(data.decode("utf-8", "replace"))
            sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # our own stderr is gone; nothing better to do


class Process:
    """Wraps the local process of a gateway (python, ssh, sudo, docker, ...).

    ``stderr`` and ``explain``, when given, turn a failed start into an error
    that says what went wrong (see ``explain_start_failure``).
    """

    def __init__(self, popen: subprocess.Popen[bytes], stderr: StderrCollector | None = None,
                 explain: Explain | None = None) -> None:
        self.popen = popen
        self.stderr = stderr
        self.explain = explain

    def explain_start_failure(self, prefix: str) -> GatewayStartError | None:
        """Why the far side ended before it answered, from exit code and stderr; None if unknown.

        ``prefix`` starts the message (it names the gateway and its spec).
        """
        if self.stderr is None and self.explain is None:
            return None
        code = self.wait(2.0)
        text = self.stderr.text(1.0) if self.stderr is not None else ""
        if self.explain is not None:
            error = self.explain(prefix, code, text)
            if error is not None:
                return error
        said = text.strip()
        if not said:
            return None
        status = f" (exit code {code})" if code is not None else ""
        return GatewayStartError(f"{prefix}: the far side ended before it answered{status}; it said: {said[-2000:]}")

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if it is still running after ``timeout``.

        Once it has ended, what is left of its process group is killed, then it is reaped.
        """
        popen = self.popen
        if popen.returncode is not None:
            return popen.returncode
        ended = _ended_unreaped(popen.pid, timeout)
        if ended is False:
            return None
        if ended:
            _kill_group(popen.pid)  # still unreaped: the group id cannot have been taken by another process
        try:
            code = popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if ended is None:
            _kill_group(popen.pid)  # no way to look before reaping here: a group id lives while it has members
        return code

    def kill(self) -> None:
        """SIGKILL to its process group now, then reap."""
        self._signal_group(signal.SIGKILL)
        self.wait(5.0)

    def stop(self, timeout: float) -> int | None:
        """Wait ``timeout`` for a voluntary exit, then SIGTERM (to its group), wait 1 s, then SIGKILL."""
        code = self.wait(max(timeout, 0.0))
        if code is not None:
            return code
        self._signal_group(signal.SIGTERM)
        code = self.wait(1.0)
        if code is None:
            self.kill()
            code = self.popen.returncode
        return code

    def _signal_group(self, signum: int) -> None:
        """Signal the process and its group, unless it is reaped already (then its id may be another's).

        Not Popen.send_signal: it reaps a process that has just ended, before its group is killed.
        """
        if self.popen.returncode is None:
            try:
                os.killpg(self.popen.pid, signum)
            except OSError:  # not a group leader after all (it cannot happen with start_new_session)
                try:
                    os.kill(self.popen.pid, signum)
                except OSError:
                    pass


def _ended_unreaped(pid: int, timeout: float | None) -> bool | None:
    """Wait up to ``timeout`` (None: forever) for process ``pid`` to end, without reaping it.

    True once it has ended (a zombie, or already reaped), False if it still
    runs, None where this system cannot tell without reaping it. A pidfd wakes
    us the moment the process ends, where Popen.wait(timeout) polls with sleeps
    that double up to 50 ms, which made every exit() slower by a few milliseconds.
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            fd = pidfd_open(pid)
        except ProcessLookupError:  # reaped already
            return True
        except OSError:  # no pidfd support in this kernel
            pass
        else:
            try:
                ready, _, _ = select.select([fd], [], [], None if timeout is None else max(timeout, 0.0))
                return bool(ready)
            finally:
                os.close(fd)
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return None
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.0005
    while True:
        try:
            if waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # reaped already
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(pause if deadline is None else min(pause, max(deadline - time.monotonic(), 0.0)))
        pause = min(pause * 2, 0.05)


def _kill_group(pgid: int) -> None:
    """SIGKILL every process left in group ``pgid`` (those of other users answer EPERM: their
    own far-side watchdog ends them)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:  # nobody left, or not ours
        pass
