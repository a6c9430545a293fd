"""A far interpreter's local process, and the bounded way to stop it."""

from __future__ import annotations

import signal
import subprocess


class Process:
    """Wraps the local process of a gateway (python, ssh, sudo, docker, ...)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if it is still running after ``timeout``."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL now, then reap."""
        if self.popen.poll() is None:
            try:
                self.popen.kill()
            except OSError:
                pass
        self.wait(5.0)

    def stop(self, timeout: float) -> int | None:
        """Wait ``timeout`` for a voluntary exit, then SIGTERM, wait 1 s, then SIGKILL."""
        code = self.wait(max(timeout, 0.0))
        if code is not None:
            return code
        try:
            self.popen.send_signal(signal.SIGTERM)
        except OSError:
            pass
        code = self.wait(1.0)
        if code is None:
            self.kill()
            code = self.popen.returncode
        return code
