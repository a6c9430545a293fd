"""Relay: runs on a middle gateway and carries a command's stdin and stdout over a channel.

Shipped with ``remote_exec(module)`` for ``via=ID`` gateways, so it must run on
Python 3.6 with the standard library only; it imports nothing from execwire.

Near side to relay: first a dict {"argv": [...], "self_python": index or None}
(the word at that index is replaced by this interpreter's path); then bytes
for the command's stdin, ("eof",) to close its stdin, ("signal", number).
Relay to near side: ("pid", pid) once started or ("error", text); bytes from
its stdout; ("stderr", bytes); and ("exit", code) once its stdout ended.
When the channel ends (the near side closed it or the middle gateway is
going away) the command's stdin is closed, and it is killed if it does not
end within a few seconds.
"""

import os
import subprocess
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # type comments, not annotations: this file runs on Python 3.6 without typing
    from typing import Any  # noqa: F401 - used in type comments

CHUNK = 256 * 1024
GRACE = 5.0  # seconds a command may take to end after its channel ended


def serve(channel):
    # type: (Any) -> None
    """Start the command described by the first item and relay until both ends are done."""
    request = channel.receive()
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
    _start(_pump_stdout, channel, proc, errors)
    _feed_stdin(channel, proc)


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
    code = proc.wait()
    errors.join(2.0)  # its last words (a traceback, "command not found") go out first
    try:
        channel.send(("exit", code))
    except OSError:
        pass


def _feed_stdin(channel, proc):
    # type: (Any, Any) -> None
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
        elif item[0] == "signal" and proc.poll() is None:
            try:
                proc.send_signal(item[1])
            except OSError:
                pass
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
