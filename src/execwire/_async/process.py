"""Stopping a gateway's local process from an event loop: the threaded escalation, without blocking.

The same steps as Process.stop (wait, SIGTERM, wait 1 s, SIGKILL), but each
wait is a wait for the process's pidfd to become readable, so the loop goes on
meanwhile. Process.wait(0) then reaps it (and ends the rest of its group).
"""

from __future__ import annotations

import os
import signal
import time

from ..process import Process
from .backend import Backend


async def wait_process(backend: Backend, process: Process, timeout: float) -> int | None:
    """The exit code once ``process`` ended within ``timeout``, else None."""
    code = process.wait(0)
    if code is not None:
        return code
    pidfd = None
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        pass
    if pidfd is not None:
        try:
            await backend.wait_readable(pidfd, timeout)
        finally:
            os.close(pidfd)
        return process.wait(0)
    deadline = time.monotonic() + timeout  # no pidfd here: look every few milliseconds
    while time.monotonic() < deadline:
        await backend.sleep(0.005)
        code = process.wait(0)
        if code is not None:
            return code
    return None


async def stop_process(backend: Backend, process: Process, timeout: float) -> int | None:
    """Wait ``timeout`` for ``process`` to exit on its own, then SIGTERM, wait 1 s, then SIGKILL."""
    for signum, wait in ((signal.SIGTERM, max(timeout, 0.0)), (signal.SIGKILL, 1.0), (None, 5.0)):
        code = await wait_process(backend, process, wait)
        if code is not None or signum is None:
            return code
        process._signal_group(signum)
    return None
