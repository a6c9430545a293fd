"""The end of gateways: in dependency order, and at interpreter exit without starting a thread.

Groups with gateways are kept in a weak set (a terminated group can be freed),
and one handler for the whole process, registered when the first gateway is
made, ends what is left at interpreter exit. It runs through
``threading._register_atexit`` where the interpreter has it (CPython 3.9 and
newer): in the main thread, before the interpreter joins the non-daemon
threads, so a thread blocked in ``receive()`` wakes with EOFError and lets the
interpreter exit. Elsewhere it is a plain atexit handler, which runs after that join.

At that point no thread may be started (Python 3.12.0 and 3.12.1 refuse it),
so nothing here starts one: every far side is first told to stop by hanging up
its stream, which never waits (see ``hang_up``), all at once; then each gateway
is exited in turn within one shared deadline, its process escalated to SIGTERM
and SIGKILL as in ``Gateway.exit``.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ._far import frames

if TYPE_CHECKING:
    from .gateway import Gateway
    from .group import Group

EXIT_TIMEOUT = 1.0  # seconds far sides get at interpreter exit to end by themselves

_groups: weakref.WeakSet[Group] = weakref.WeakSet()
_lock = threading.Lock()
_handler_registered = False
_exiting = False
_owner = os.getpid()  # a forked child inherits the handler, but not the gateways' processes


def track(group: Group) -> None:
    """Remember ``group`` (weakly) so that interpreter exit ends its gateways."""
    global _handler_registered, _owner
    with _lock:
        _groups.add(group)
        if _handler_registered:
            return
        _handler_registered = True
        _owner = os.getpid()
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError("no threading._register_atexit here")
        register(end_everything)
    except RuntimeError:  # not in this interpreter, or threading has begun shutting down
        atexit.register(end_everything)


def exiting() -> bool:
    """True once the interpreter exits and end_everything() runs: no thread may be started."""
    return _exiting


def end_everything() -> None:
    """The handler: end every gateway of every live group (quietly, bounded, without threads)."""
    global _exiting
    if os.getpid() != _owner:  # a fork of the process that made them (its copies must not end them)
        return
    _exiting = True
    ranked = [(depth, gw) for group in list(_groups) for depth, gw in group._by_depth()]
    gateways = [gw for _, gw in sorted(ranked, key=lambda pair: -pair[0])]
    try:
        end_without_threads(gateways, EXIT_TIMEOUT)
    except Exception:  # at exit there is nobody to tell, and a traceback would be noise
        pass


def end_without_threads(gateways: Iterable[Gateway], timeout: float) -> None:
    """Exit ``gateways`` (those behind via= first) in this thread, within about ``timeout`` seconds.

    All of them are hung up first, so their far sides end side by side; then
    each exit() waits for its own in the time that is left.
    """
    gateways = list(gateways)
    for gateway in gateways:
        hang_up(gateway)
    deadline = time.monotonic() + timeout
    for gateway in gateways:
        gateway.exit(max(deadline - time.monotonic(), 0.0))


def run_bounded(target: Callable[[], None], name: str, timeout: float) -> bool:
    """Run ``target`` in a daemon thread and wait for it up to ``timeout`` seconds.

    False (and nothing done) when no thread may be started: at interpreter exit.
    """
    if _exiting:
        return False
    thread = threading.Thread(target=target, name=name, daemon=True)
    try:
        thread.start()
    except RuntimeError:  # "can't create new thread at interpreter shutdown"
        return False
    thread.join(timeout)
    return True


def hang_up(gateway: Gateway) -> None:
    """Tell the far side to stop, in ways that never wait: a terminate message if it can go without
    waiting, then the end of our half of its stream.

    The message goes only if no frame is being written (the writer's lock is
    free) and the pipe has room for it at once; without it, the far side reads
    the end of its input as its controller's departure (shipped code still
    running gets a second, and then its watchdog ends it). A pipe's write end
    is replaced by /dev/null rather than closed: a thread that is about to
    write to it writes into nothing instead of into a file that got the same
    number. A socket is shut down for writing. A relay channel (via=) cannot
    say it without a send that may wait: its gateway ends with its middle
    gateway, which is hung up too.
    """
    gateway._expect_end = True  # what follows is the end we asked for: receivers get EOFError
    stream = gateway._stream
    if getattr(stream, "closed", True):
        return
    write_fd = getattr(stream, "write_fd", None)
    sock = getattr(stream, "sock", None)
    try:
        if isinstance(write_fd, int):
            _terminate_without_waiting(gateway, write_fd)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, write_fd, inheritable=False)
            finally:
                os.close(devnull)
        elif sock is not None:
            sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _terminate_without_waiting(gateway: Gateway, write_fd: int) -> None:
    """Write a TERMINATE frame to ``write_fd`` if that cannot wait; else nothing."""
    writer = getattr(gateway, "_writer", None)
    lock = getattr(writer, "lock", None)
    if lock is None or not lock.acquire(False):
        return  # a frame is being written (perhaps to a far side that does not read): do not wait for it
    try:
        if getattr(writer, "broken", None) is not None:
            return
        os.set_blocking(write_fd, False)
        try:
            os.write(write_fd, frames.header(frames.TERMINATE, 0, 0))  # a few bytes: all or nothing
        except OSError:  # the pipe is full (or gone)
            pass
        finally:
            os.set_blocking(write_fd, True)
    finally:
        lock.release()
