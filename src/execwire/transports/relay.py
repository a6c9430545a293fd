"""Relay: runs on a middle gateway and carries a command's stdin and stdout over a channel.

Shipped with ``remote_exec(module)`` for ``via=ID`` gateways, so it must run on
Python 3.6 with the standard library only; it imports nothing from execwire.

Near side to relay: first a dict {"argv": [...], "self_python": index or None,
"kept_wait": seconds (optional)} (the word at that index is replaced by this
interpreter's path); then bytes
for the command's stdin, ("eof",) to close its stdin, ("signal", number),
("inject", literals, keys): write literals[0], the bytes this gateway keeps
under keys[0], literals[1], ... (a whole frame, of which the near side did
not send the kept parts again).
Relay to near side: ("pid", pid) once started or ("error", text); bytes from
its stdout; ("stderr", bytes); and ("exit", code) once its stdout ended.
When the channel ends (the near side closed it or the middle gateway is
going away) the command's stdin is closed, and it is killed if it does not
end within a few seconds. The command runs in a session of its own; once it
has ended, what is left of its process group (what it started) is killed
before the end is reported, so ("exit", code) means nothing of it runs any more.

The same module, first sent {"keep": True}, opens this gateway's store of
what relays inject and sends back its channel, on which the near side sends
("keep", key, bytes) items, kept for the gateway's life
(transports/middle_cache.py says what goes in and why).
"""

import os
import signal
import subprocess
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # type comments, not annotations: this file runs on Python 3.6 without typing
    from typing import Any  # noqa: F401 - used in type comments

CHUNK = 256 * 1024
GRACE = 5.0  # seconds a command may take to end after its channel ended
KEPT_WAIT = 60.0  # seconds an injection waits for the kept bytes it names (sent just before it)


class Kept(object):
    """What this gateway keeps for injection: one store shared by its relays and its keeper."""

    def __init__(self):
        # type: () -> None
        self.items = {}  # type: Any
        self.arrived = threading.Condition()

    def put(self, key, data):
        # type: (bytes, bytes) -> None
        with self.arrived:
            self.items[key] = data
            self.arrived.notify_all()

    def get(self, key, timeout):
        # type: (bytes, float) -> Any
        with self.arrived:
            self.arrived.wait_for(lambda: key in self.items, timeout)
            return self.items.get(key)


def kept_of(gateway):
    # type: (Any) -> Any
    """The gateway's store (each remote_exec of this module has its own globals, so it lives on the gateway)."""
    return gateway.__dict__.setdefault("_execwire_kept", Kept())


def keep(channel):
    # type: (Any) -> None
    """Open the channel the near side sends what to keep on, and keep it in a thread of its own
    (this remote_exec ends: remote_status() counts the user's code only)."""
    gateway = channel.gateway
    store = gateway.newchannel()
    gateway.service_channels = getattr(gateway, "service_channels", 0) + 1
    _start(_keep_all, store, kept_of(gateway))
    channel.send(store)


def _keep_all(store, kept):
    # type: (Any, Kept) -> None
    """Keep what arrives until the channel ends (the near side sends each key once)."""
    for item in store:
        kept.put(item[1], item[2])


def serve(channel):
    # type: (Any) -> None
    """Start the command described by the first item and relay until both ends are done."""
    request = channel.receive()
    if request.get("keep"):
        keep(channel)
        return
    argv = list(request["argv"])
    index = request.get("self_python")
    if index is not None:
        argv[index] = sys.executable
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                bufsize=0, close_fds=True, start_new_session=True)
    except OSError as exc:
        channel.send(("error", "%s: %r" % (exc.strerror or exc, argv[0])))
        return
    channel.send(("pid", proc.pid))
    errors = _start(_pump, channel, proc.stderr.fileno(), "stderr")  # type: ignore[union-attr]
    output = _start(_pump_stdout, channel, proc, errors)
    _feed_stdin(channel, proc, request.get("kept_wait", KEPT_WAIT))
    output.join(GRACE)  # the command ends once its stdin is closed...
    if output.is_alive():
        _signal_group(proc, signal.SIGKILL)  # ...or is made to (output reaps it: it is not reaped yet)
        output.join(GRACE)  # (a process outside the group may still hold its stdout open: then give up)


def _start(target, *args):
    # type: (Any, Any) -> threading.Thread
    thread = threading.Thread(target=target, args=args, name="execwire-relay")
    thread.daemon = True
    thread.start()
    return thread


def _pump(channel, fd, tag):
    # type: (Any, int, Any) -> None
    """Send what arrives on ``fd`` until its end (bytes, or (tag, bytes) with a tag)."""
    while True:
        try:
            data = os.read(fd, CHUNK)
        except OSError:
            data = b""
        if not data:
            return
        try:
            channel.send(data if tag is None else (tag, data))
        except OSError:  # the channel or the gateway is gone (both errors are OSErrors)
            return


def _pump_stdout(channel, proc, errors):
    # type: (Any, Any, threading.Thread) -> None
    _pump(channel, proc.stdout.fileno(), None)
    code = _wait_and_end_group(proc)
    errors.join(2.0)  # its last words (a traceback, "command not found") go out first
    try:
        channel.send(("exit", code))
    except OSError:
        pass


def _feed_stdin(channel, proc, kept_wait):
    # type: (Any, Any, float) -> None
    fd = proc.stdin.fileno()
    writable = True
    while True:
        try:
            item = channel.receive()
        except Exception:  # EOFError: the near side closed; GatewayLostError: this gateway is ending
            break
        if isinstance(item, bytes):
            if writable:
                writable = _write_all(fd, item)
        elif item[0] == "eof":
            writable = False
            proc.stdin.close()
        elif item[0] == "signal":
            _signal_group(proc, item[1])
        elif item[0] == "inject" and writable:
            writable = _inject(channel, proc, fd, item[1], item[2], kept_wait)
    try:
        proc.stdin.close()
    except OSError:
        pass


def _inject(channel, proc, fd, literals, keys, kept_wait):
    # type: (Any, Any, int, Any, Any, float) -> bool
    """Write a frame made of literal bytes and bytes this gateway keeps; if some never come, the
    stream cannot go on: end the command, saying why."""
    kept = kept_of(channel.gateway)
    pieces = [literals[0]]
    for index, key in enumerate(keys):
        data = kept.get(key, kept_wait)
        if data is None:
            try:
                channel.send(("stderr", b"execwire relay: the kept bytes a frame needs did not arrive within "
                                        b"%g seconds; the gateway cannot go on\n" % kept_wait))
            except OSError:
                pass
            _signal_group(proc, signal.SIGKILL)
            return False
        pieces.append(data)
        pieces.append(literals[index + 1])
    return all(_write_all(fd, piece) for piece in pieces if piece)


def _signal_group(proc, number):
    # type: (Any, int) -> None
    """Signal the command's process group, unless the command was reaped (its id may be another's now).

    Not Popen.send_signal, which reaps a command that has just ended before its group is killed.
    """
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, number)
        except OSError:
            pass


def _wait_and_end_group(proc):
    # type: (Any) -> int
    """Wait for the command's end, kill what is left of its group, reap it; return its exit code."""
    waitid = getattr(os, "waitid", None)  # (PyPy has none: there the group is killed after reaping)
    if waitid is not None:
        while True:
            try:
                waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # ended, but its id still reserved
                break
            except InterruptedError:
                continue
            except ChildProcessError:  # reaped already
                break
    _signal_group(proc, signal.SIGKILL)
    code = proc.wait()
    if waitid is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # a group id stays taken while it has members
        except OSError:
            pass
    return code


def _write_all(fd, data):
    # type: (int, bytes) -> bool
    """Write every byte; False once the command stopped reading (it ended)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError:
            return False
        view = view[written:]
    return True


if __name__ == "__channelexec__":
    serve(channel)  # type: ignore[name-defined]  # noqa: F821 - shipped code finds its channel here
