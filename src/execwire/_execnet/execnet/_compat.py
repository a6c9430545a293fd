"""execnet's behaviour on top of execwire's channels and gateways, for both ends.

Stdlib only, Python >= 3.6: the near side imports it, and every gateway made by
the execnet package runs it on its far side too (see install_far), so that
shipped code finds there what execnet gave it: ``channel.gateway.execmodel``
with its locks and events, ``receive()`` refusing a channel that has a callback
(OSError), ``waitclose()`` returning only after the callbacks ran, and
``channel._getremoteerror()``.

The far process of such a gateway belongs to the execnet package, so changing
its channel class there touches nobody else.
"""

import sys
import threading

NO_ENDMARKER_WANTED = object()
_CALLBACKS_DONE = object()  # our own end marker: every callback before it has run
_in_callback = threading.local()


class ExecModel(str):
    """An exec model as execnet has them: its name (it is a str) plus the primitives to use.

    execwire runs only threads, so "thread" and "main_thread_only" hand out the
    same primitives; they differ in where the far side runs shipped code.
    """

    def __new__(cls, backend):
        return str.__new__(cls, backend)

    @property
    def backend(self):
        return str(self)

    def __repr__(self):
        return "<ExecModel %r>" % (str(self),)

    @property
    def queue(self):
        import queue

        return queue

    @property
    def subprocess(self):
        import subprocess

        return subprocess

    @property
    def socket(self):
        import socket

        return socket

    def start(self, func, args=()):
        thread = threading.Thread(target=func, args=tuple(args))
        thread.daemon = True
        thread.start()

    def get_ident(self):
        return threading.get_ident()

    def sleep(self, delay):
        import time

        time.sleep(delay)

    def fdopen(self, fd, mode, bufsize=1, closefd=True):
        import os

        return os.fdopen(fd, mode, bufsize, encoding="utf-8", closefd=closefd)

    def Lock(self):  # noqa: N802 - execnet's name
        return threading.RLock()  # as execnet's: re-entrant

    def RLock(self):  # noqa: N802
        return threading.RLock()

    def Event(self):  # noqa: N802
        return threading.Event()


class ThreadExecModel(ExecModel):
    def __new__(cls, backend="thread"):
        return ExecModel.__new__(cls, backend)


class MainThreadOnlyExecModel(ExecModel):
    def __new__(cls, backend="main_thread_only"):
        return ExecModel.__new__(cls, backend)


EXECMODELS = {"thread": ThreadExecModel, "main_thread_only": MainThreadOnlyExecModel}


def get_execmodel(backend):
    """The exec model named ``backend``; eventlet and gevent are not available with execwire."""
    if isinstance(backend, ExecModel):
        return backend
    model = EXECMODELS.get(backend)
    if model is None:
        if backend in ("eventlet", "gevent"):
            raise ValueError("execmodel %r is not available with execwire: it runs threads only "
                             "(thread or main_thread_only)" % (backend,))
        raise ValueError("unknown execmodel %r; use thread or main_thread_only" % (backend,))
    return model()


def _errors_of(channel_class):
    """The errors module that goes with ``channel_class`` (near and far side have one each)."""
    for klass in channel_class.__mro__:  # the execwire class, if this is a subclass of it
        errors = sys.modules.get(klass.__module__.rpartition(".")[0] + ".errors")
        if errors is not None and hasattr(errors, "GatewayLostError"):
            return errors
    raise TypeError("%r is not an execwire channel class" % (channel_class,))


def add_execnet_behaviour(channel_class):
    """Give ``channel_class`` execnet's receive, setcallback, waitclose and friends (changes the class)."""
    errors = _errors_of(channel_class)
    lost_error = errors.GatewayLostError
    base_receive = channel_class.receive
    base_setcallback = channel_class.setcallback
    base_waitclose = channel_class.waitclose
    base_send = channel_class.send
    base_close = channel_class.close
    dump_error = sys.modules[errors.__name__.rpartition(".")[0] + ".wire"].DumpError

    def send(self, item):
        """Send ``item``; what cannot be serialized raises DumpError("can't serialize ...")."""
        try:
            base_send(self, item)
        except dump_error as exc:
            raise dump_error(cant_serialize(exc)) from None

    def receive(self, timeout=None):
        """Return the next item; EOFError once the other side closed or the gateway is gone."""
        if getattr(self, "_execnet_callbacks_done", None) is not None:
            raise OSError("cannot receive(): channel %d has a receiver callback" % self.id)
        try:
            return base_receive(self, timeout)
        except lost_error as exc:
            raise _as_eof(exc) from exc

    def setcallback(self, callback, endmarker=NO_ENDMARKER_WANTED):
        """Call ``callback(item)`` for each item; ``callback(endmarker)`` at the end if given."""
        if getattr(self, "_execnet_callbacks_done", None) is not None:
            raise OSError("%r has a callback already registered" % (self,))
        done = threading.Event()

        def run(item):
            _in_callback.active = True
            try:
                if item is _CALLBACKS_DONE:
                    try:
                        if endmarker is not NO_ENDMARKER_WANTED:
                            callback(endmarker)
                    finally:
                        done.set()
                else:
                    callback(item)
            finally:
                _in_callback.active = False

        self._execnet_callbacks_done = done
        base_setcallback(self, run, _CALLBACKS_DONE)

    def waitclose(self, timeout=None):
        """Wait until the other side closed and every callback of this channel ran; raise its error."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            base_waitclose(self, timeout)
        except lost_error as exc:
            raise _as_eof(exc) from exc
        done = getattr(self, "_execnet_callbacks_done", None)
        if done is None or getattr(_in_callback, "active", False):
            return  # a callback that waits for its own end would wait forever
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not done.wait(remaining):
            raise errors.TimeoutError("the callbacks of channel %d did not finish within %r seconds"
                                      % (self.id, timeout))

    def close(self, error=None):
        """Close the channel; code shipped with it may not close it while it runs (execnet's rule)."""
        if getattr(self, "_executing", False):
            raise OSError("cannot explicitly close channel within remote_exec")
        base_close(self, error)

    def _getremoteerror(self):
        """The error that ended the channel (RemoteError, or EOFError for a lost gateway), else None."""
        error = getattr(self, "_error", None)  # set before the endmarker goes to the callback: its callback sees it
        if error is not None:
            return _as_eof(error) if isinstance(error, lost_error) else error
        try:
            base_waitclose(self, 0)
        except errors.TimeoutError:
            return None
        except lost_error as exc:
            return _as_eof(exc)
        except Exception as exc:
            return exc
        return None

    def reconfigure(self, py2str_as_py3str=True, py3str_as_py2str=False):
        """Accepted for execnet's sake: the far side is Python 3, so strings are always str."""
        self._strconfig = (py2str_as_py3str, py3str_as_py2str)

    channel_class.send = send
    channel_class.receive = receive
    channel_class.setcallback = setcallback
    channel_class.waitclose = waitclose
    channel_class.close = close
    channel_class._getremoteerror = _getremoteerror
    channel_class.reconfigure = reconfigure
    channel_class.next = channel_class.__next__ = _next
    return channel_class


def cant_serialize(exc):
    """execnet's wording for an object that cannot be sent, keeping execwire's type and place."""
    text = str(exc)
    if text.startswith("cannot serialize"):
        return "can't serialize" + text[len("cannot serialize"):]
    return "can't serialize: " + text


def _next(self):
    try:
        return self.receive()
    except EOFError:
        raise StopIteration


def _as_eof(exc):
    """execnet ends the channels of a lost gateway with EOFError: say so, keeping what execwire knew."""
    eof = EOFError(str(exc))
    eof.__cause__ = exc
    return eof


def install_far(channel):
    """Make this far interpreter behave as execnet's for shipped code (run once per gateway)."""
    gateway = channel.gateway
    gateway.execmodel = get_execmodel(str(gateway.execmodel))
    channel_class = type(channel)
    if not getattr(channel_class, "_execnet_behaviour", False):
        add_execnet_behaviour(channel_class)
        channel_class._execnet_behaviour = True
    if getattr(gateway, "_execnet_execute", None) is None:
        gateway._execnet_execute = execute = gateway._execute

        def mark_executing(channel, *job):
            """While shipped code runs, its channel refuses close() (see add_execnet_behaviour)."""
            channel._executing = True
            try:
                return execute(channel, *job)
            finally:
                channel._executing = False

        gateway._execute = mark_executing


if __name__ == "__channelexec__":
    install_far(channel)  # noqa: F821 - the channel of this remote_exec
