"""Far-side start: take over the standard streams, apply the settings, serve.

Far-side module: stdlib only, Python >= 3.6.

The protocol keeps the pipes it was started on (moved to private descriptors);
file descriptor 0 becomes /dev/null, and 1 and 2 become pipes whose contents a
thread forwards to the controller as OUTPUT frames, so nothing the shipped code
or its subprocesses print can corrupt the protocol, and nothing of it is lost.
"""

import os
import sys
import threading

from . import frames, watchdog, wire
from .errors import Error
from .execution import FarGateway, rinfo
from .gateway import Tracer
from .streams import PipeStream, SocketStream
from .upstream import Upstream


def main():
    """Entry point for a far side started on stdin/stdout (popen, ssh, sudo, ...)."""
    watchdog.start(0)  # first, before any thread: it ends this process once the controller is gone
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.close(devnull)
    serve(PipeStream(proto_in, proto_out), redirect_output=True)


def serve_socket(sock):
    """Entry point for a far side reached through a connected socket."""
    serve(SocketStream(sock), redirect_output=False)


def serve(stream, redirect_output):
    """Read CONFIG, apply it, say HELLO and run until told to stop; then exit."""
    gateway = FarGateway(stream, None, Tracer("far"))
    try:
        config, events = gateway.read_config()
    except Error as exc:  # not a CONFIG frame first, or garbage: say so, if anyone listens
        _fail(gateway, str(exc))
    if config is None:
        os._exit(0)  # the controller left before saying anything
    gateway._trace = Tracer("far", os.dup(2) if config.get("debug") else None)
    try:
        gateway.configure(config)
        apply_settings(config)
    except ValueError as exc:
        _fail(gateway, str(exc))
    original_stderr = os.dup(2)  # for our own failures once fd 2 is forwarded
    forwarder = OutputForwarder(gateway) if redirect_output else None
    try:
        # the channel to the controller's services, named in the HELLO: the controller takes it before
        # any code runs (only a near face that serves them asks for it)
        link = Upstream(gateway, config) if config.get("services") else None
        hello = {"protocol": frames.PROTOCOL_VERSION, "rinfo": rinfo()}
        if link is not None:
            hello["upstream"] = link.channel.id
        try:
            gateway._send(frames.HELLO, 0, wire.encode(hello))
        except Error:
            pass  # the controller is gone already; what it sent before it went still runs
        if link is not None:
            link.install()
        gateway._trace("serving, config:", config)
        gateway.serve(events)
    except BaseException:
        _report_crash(original_stderr)
    finally:
        if forwarder is not None:
            forwarder.finish()
        try:
            gateway._writer.flush_owed()
        except Error:
            pass
        stream.close()
        os._exit(0)


def apply_settings(config):
    """Apply the gateway's settings; an error names the spec key that caused it."""
    if config.get("nice"):
        # before any other thread exists: threads inherit it, so the whole process is niced
        _setting("nice", config["nice"], os.nice, int(config["nice"]))
    for name, value in (config.get("env") or {}).items():
        os.environ[name] = value
    if config.get("dont_write_bytecode"):
        sys.dont_write_bytecode = True
    chdir = config.get("chdir")
    if chdir:
        _setting("chdir", chdir, _change_directory, os.path.expanduser(chdir))
    if "" not in sys.path:
        sys.path.insert(0, "")  # like an interactive interpreter: the cwd is importable


def _setting(key, value, function, argument):
    try:
        function(argument)
    except Exception as exc:
        raise ValueError("%s=%s failed: %s: %s" % (key, value, exc.__class__.__name__, exc))


def _change_directory(path):
    os.makedirs(path, exist_ok=True)  # gateways started side by side with the same chdir= make it at once
    os.chdir(path)


def _report_crash(fd):
    import traceback

    text = "execwire far side failed:\n" + traceback.format_exc()
    try:
        os.write(fd, text.encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def _fail(gateway, message):
    try:
        gateway._send(frames.HELLO, 0, wire.encode({"error": message}))
    finally:
        os._exit(1)


class OutputForwarder(object):
    """Sends what is written to file descriptors 1 and 2 to the controller."""

    def __init__(self, gateway):
        self.gateway = gateway
        self.read_fds = {}
        for stream_id, fd, stream_name in ((1, 1, "stdout"), (2, 2, "stderr")):
            read_fd, write_fd = os.pipe()
            os.dup2(write_fd, fd)
            os.close(write_fd)
            self.read_fds[read_fd] = stream_id
            old = getattr(sys, stream_name)
            encoding = getattr(old, "encoding", None) or "utf-8"
            errors = "backslashreplace" if fd == 2 else getattr(old, "errors", None) or "strict"
            setattr(sys, stream_name, open(fd, "w", buffering=1, encoding=encoding,
                                           errors=errors, closefd=False))
        self._wake_read, self._wake_write = os.pipe()  # finish() wakes the thread through it
        self.thread = threading.Thread(target=self._run, name="execwire-output")
        self.thread.daemon = True
        self.thread.start()

    def _run(self):
        import select

        fds = list(self.read_fds) + [self._wake_read]
        draining = False
        forwarding = True
        while fds:
            try:
                ready, _, _ = select.select(fds, [], [], 0 if draining else None)
            except InterruptedError:
                continue
            if not ready:
                return  # drained what was written before finish(); subprocesses may hold the pipes open
            for fd in ready:
                if fd == self._wake_read:
                    draining = True
                    fds.remove(fd)
                    continue
                data = os.read(fd, 65536)
                if not data:
                    fds.remove(fd)
                    continue
                if forwarding:
                    try:
                        self.gateway.send_output(self.read_fds[fd], data)
                    except Error:  # the controller is gone: keep reading, so writers never block
                        forwarding = False

    def finish(self, timeout=2.0):
        """Flush, send what is still in the pipes (bounded), stop the thread."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
        os.write(self._wake_write, b"x")
        self.thread.join(timeout)
