"""Byte streams: what a gateway reads frames from and writes them to.

Far-side module: stdlib only, Python >= 3.6.

A stream has four operations: readinto(view) -> count (0 at the end),
writev(buffers) -> count, fileno() (the descriptor to poll for reading, or None
when it cannot be polled) and close() / close_write(). Errors of the system
become GatewayLostError. PipeStream and SocketStream are the real ones;
memory_pair() gives two connected in-memory streams for tests.

FrameWriter sits on top of any stream: it writes whole frames, one at a time,
before its send methods return (so an item whose send() returned survives its
sender's death), gathers header and payload parts in one system call without
copying large payloads, and puts answers owed to the peer (CLOSE frames) in
front of the next frame it writes.
"""

import os
import threading
from collections import deque

from . import frames
from .errors import GatewayLostError

_writev = getattr(os, "writev", None)
_pack_header = frames.HEADER.pack
_MAGIC = frames.MAGIC
SMALL_PAYLOAD = 65536  # smaller payloads are copied behind their header: one contiguous write


class Stream(object):
    """What every stream offers (the base of the real ones, and of those elsewhere, e.g. via.py)."""

    closed = False

    def fileno(self):
        """The descriptor to poll before reading, or None if it cannot be polled."""
        return None

    def readinto(self, view):
        """Read into ``view``; return how many bytes (0 at the end of the stream)."""
        raise NotImplementedError

    def writev(self, buffers):
        """Write from ``buffers`` (a list) as much as one system call takes; return how much."""
        raise NotImplementedError

    def write(self, data):
        return self.writev([data])

    def close_write(self):
        """Signal the end of the stream to the peer."""

    def close(self):
        """Close both directions; wakes a thread blocked in readinto()."""
        self.close_write()


class PipeStream(Stream):
    """Two file descriptors: one to read from, one to write to."""

    def __init__(self, read_fd, write_fd):
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.closed = False
        self._reader = os.fdopen(read_fd, "rb", buffering=0, closefd=False)

    def fileno(self):
        return self.read_fd

    def readinto(self, view):
        while True:
            try:
                return self._reader.readinto(view)
            except InterruptedError:
                continue
            except OSError as exc:
                raise GatewayLostError("reading from the peer failed: %s" % exc)

    def writev(self, buffers):
        if self.closed:  # its number may belong to another file by now
            raise GatewayLostError("writing to the peer failed: the connection is closed")
        try:
            if _writev is None:  # PyPy has no os.writev: one buffer per call
                return os.write(self.write_fd, buffers[0])
            return _writev(self.write_fd, buffers[:512])
        except OSError as exc:
            raise GatewayLostError("writing to the peer failed: %s" % exc)

    def write(self, data):
        if self.closed:
            raise GatewayLostError("writing to the peer failed: the connection is closed")
        try:
            return os.write(self.write_fd, data)
        except OSError as exc:
            raise GatewayLostError("writing to the peer failed: %s" % exc)

    def close_write(self):
        if not self.closed:
            self.closed = True
            _close_quietly(self.write_fd)

    def close(self):
        self.close_write()
        _close_quietly(self.read_fd)


class SocketStream(Stream):
    """A connected stream socket."""

    def __init__(self, sock):
        import socket  # only socket gateways pay for this import

        self.sock = sock
        self.closed = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # not TCP (a unix socket)

    def fileno(self):
        return self.sock.fileno() if self.sock is not None else None

    def readinto(self, view):
        try:
            return self.sock.recv_into(view)
        except OSError as exc:
            raise GatewayLostError("reading from the peer failed: %s" % exc)

    def writev(self, buffers):
        try:
            return self.sock.sendmsg(buffers[:512])
        except OSError as exc:
            raise GatewayLostError("writing to the peer failed: %s" % exc)

    def write(self, data):
        try:
            return self.sock.send(data)
        except OSError as exc:
            raise GatewayLostError("writing to the peer failed: %s" % exc)

    def close_write(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(1)  # SHUT_WR
            except OSError:
                pass

    def close(self):
        self.close_write()
        try:
            self.sock.shutdown(2)  # SHUT_RDWR: wakes a thread blocked reading it; close() alone does not
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class _MemoryPipe(object):
    """One direction of an in-memory stream pair: bytes written wait here until read."""

    def __init__(self):
        self.data = bytearray()
        self.ended = False
        self.cond = threading.Condition(threading.Lock())


class MemoryStream(Stream):
    """One end of memory_pair(): a stream with no descriptor (it cannot be polled)."""

    def __init__(self, incoming, outgoing):
        self._in = incoming
        self._out = outgoing
        self.closed = False

    def fileno(self):
        return None

    def readinto(self, view):
        pipe = self._in
        with pipe.cond:
            while not pipe.data and not pipe.ended:
                pipe.cond.wait()
            count = min(len(view), len(pipe.data))
            view[:count] = pipe.data[:count]
            del pipe.data[:count]
            return count

    def writev(self, buffers):
        pipe = self._out
        with pipe.cond:
            if pipe.ended:
                raise GatewayLostError("writing to the peer failed: the in-memory stream is closed")
            size = 0
            for buffer in buffers:
                pipe.data += buffer
                size += memoryview(buffer).nbytes
            pipe.cond.notify_all()
            return size

    def write(self, data):
        return self.writev([data])

    def close_write(self):
        self.closed = True
        with self._out.cond:
            self._out.ended = True
            self._out.cond.notify_all()

    def close(self):
        self.close_write()
        with self._in.cond:
            self._in.ended = True
            self._in.cond.notify_all()


def memory_pair():
    """Two connected in-memory streams: what one writes, the other reads."""
    one, two = _MemoryPipe(), _MemoryPipe()
    return MemoryStream(one, two), MemoryStream(two, one)


class FrameWriter(object):
    """Writes whole frames to a stream, one at a time, each before its send method returns.

    Concurrency: ``lock`` is held for the whole of a frame's writing, so frames
    never interleave. ``owed`` (small frames to put in front of the next write:
    answers to the peer's CLOSE, CLOSEs of channels that became garbage) is a
    deque: anyone may append, even a finalizer that runs while this thread holds
    the lock; only the holder of the lock takes from it. After a write failed, or a frame was cut short (an
    interrupt while a frame was half written), every later write raises the
    same GatewayLostError: the stream would no longer be a sequence of frames.
    """

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()
        self.owed = deque()  # complete small frames to put in front of the next write
        self.broken = None  # the GatewayLostError every write raises once the stream is unusable

    def send_frame(self, frame):
        """Write one complete small frame (header included)."""
        lock = self.lock
        lock.acquire()  # not `with`: this is the hot path
        try:
            self.write_frame(frame)
        finally:
            lock.release()

    def write_frame(self, frame):
        """send_frame() for a caller that holds ``lock`` (and checks a state under it first)."""
        if self.broken is not None:
            raise self.broken
        if self.owed:
            frame = self._take_owed() + frame
        try:
            written = self.stream.write(frame)
            if written != len(frame):
                self._write_rest([frame], written)
        except GatewayLostError as exc:
            self.broken = exc
            raise

    def send(self, msgtype, channel_id, parts, length):
        """Write one frame of ``length`` payload bytes given as ``parts`` (a list)."""
        with self.lock:
            self.write(msgtype, channel_id, parts, length)

    def write(self, msgtype, channel_id, parts, length):
        """send() for a caller that holds ``lock``."""
        head = _pack_header(_MAGIC, msgtype, channel_id, length)
        if length < SMALL_PAYLOAD:
            self.write_frame(head + parts[0] if len(parts) == 1 else head + b"".join(parts))
            return
        buffers = [head] + list(parts)
        if self.owed:
            buffers.insert(0, self._take_owed())
        self._write_rest(buffers, 0)

    def write_through(self, write):
        """For a caller holding ``lock``: write what is owed, then let ``write(stream)`` add whole frames."""
        if self.broken is not None:
            raise self.broken
        if self.owed:
            self._write_owed()
        try:
            write(self.stream)
        except GatewayLostError as exc:
            self.broken = exc
            raise

    def send_raw(self, data):
        """Write bytes that are already frames (or the boot payload)."""
        with self.lock:
            self._write_rest([data], 0)

    def owe(self, frame):
        """Put ``frame`` in front of the next write (written at once when many are owed)."""
        self.owed.append(frame)
        if len(self.owed) >= 64:
            with self.lock:
                if self.owed:
                    self._write_owed()

    def send_soon(self, frame):
        """From anywhere, a finalizer too: write ``frame`` now if no write is under way, else after it."""
        self.owed.append(frame)
        if self.lock.acquire(False):
            try:
                if self.owed and self.broken is None:
                    self._write_owed()
            finally:
                self.lock.release()

    def flush_owed(self, wait=True):
        """Write what is owed to the peer now; with ``wait`` False, only if no other write is under way."""
        if not self.lock.acquire(wait):
            return  # that write takes what is owed, or the next one does
        try:
            if self.owed:
                self._write_owed()
        finally:
            self.lock.release()

    def _write_owed(self):
        self._write_rest([self._take_owed()], 0)

    def _take_owed(self):
        """All that is owed, as one bytes object (holding the lock; appends meanwhile are kept)."""
        owed = self.owed
        parts = []
        while owed:
            parts.append(owed.popleft())
        return b"".join(parts)

    def _write_rest(self, buffers, skip):
        """Write every buffer after the first ``skip`` bytes (called holding the lock)."""
        if self.broken is not None:
            raise self.broken
        started = skip > 0
        try:
            _drop_front(buffers, skip)
            while buffers:
                written = self.stream.writev(buffers)
                if written:
                    started = True
                _drop_front(buffers, written)
        except GatewayLostError as exc:
            self.broken = exc
            raise
        except BaseException:
            if started:  # a frame is cut short: nothing may follow it on this stream
                self.broken = GatewayLostError("a frame was cut short (interrupted while it was being written); "
                                               "the connection cannot be used any more")
                self.stream.close_write()
            raise


def _drop_front(buffers, count):
    """Remove the first ``count`` bytes from ``buffers`` (a list), in place."""
    while buffers and count:
        first = buffers[0]
        size = memoryview(first).nbytes
        if count >= size:
            count -= size
            del buffers[0]
        else:
            buffers[0] = memoryview(first).cast("B")[count:]
            count = 0


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


SPIN = 0.00005  # seconds a reader polls for an answer before it sleeps
SPIN_WORTHWHILE = 2 * SPIN  # a wait longer than this pauses the polling...
SPIN_PAUSE = 64  # ...for this many waits
_sched_yield = getattr(os, "sched_yield", lambda: None)
try:
    from time import perf_counter as _clock
except ImportError:  # pragma: no cover
    from time import time as _clock


class ReadWaiter(object):
    """Waits until a stream has something to read, polling briefly first when answers come fast.

    When the peer answers quickly, poll for up to SPIN seconds first (giving the
    CPU to anyone who wants it between polls): an answer that comes that fast is
    then read without the thread going to sleep and being woken again, which on
    many machines costs more than the answer itself. After a long wait the polling
    stops for the next SPIN_PAUSE waits, so a quiet connection costs next to
    nothing. Never polls on a single CPU, where it would only keep the peer from
    answering. Only the thread holding the gateway's reading baton uses it.
    """

    def __init__(self, stream):
        self._stream = stream
        self._fileno = None
        self._poller = None
        self._spin_pause = -1  # waits left without polling first; -1: not yet known if polling pays

    @property
    def fileno(self):
        """The stream's descriptor, or None (a socket transport has one only once connected)."""
        fileno = self._fileno
        if fileno is None:
            fileno = self._fileno = self._stream.fileno()
        return fileno

    def readable(self, timeout):
        """False if nothing arrives within ``timeout`` seconds (None: no limit; True when it cannot tell)."""
        fileno = self._fileno
        if fileno is None:
            fileno = self.fileno
        if fileno is None:
            return True
        if timeout is not None and timeout < 0:
            timeout = 0  # a deadline just passed (receive(timeout=0)): select() refuses a negative one
        import select

        while True:
            try:
                ready, _, _ = select.select([fileno], [], [], timeout)
                return bool(ready)
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return True  # closed meanwhile: let the read say what happened

    def wait(self, timeout):
        """Wait for data; False after ``timeout`` seconds. With ``timeout`` None the read does the sleeping."""
        poller = self._poller
        if poller is None:
            if self._spin_pause < 0:  # first call: can polling pay off here at all?
                fileno = self.fileno
                poller = self._poller = None if fileno is None else _make_poller(fileno)
                self._spin_pause = 0
            if poller is None:
                return True if timeout is None else self.readable(timeout)
        if self._spin_pause:
            self._spin_pause -= 1
            return True if timeout is None else self.readable(timeout)
        start = _clock()
        end = start + SPIN
        while True:
            if poller.poll(0):
                return True
            if _clock() >= end:
                break
            _sched_yield()
        ready = self.readable(None if timeout is None else max(timeout - (_clock() - start), 0))
        if _clock() - start >= SPIN_WORTHWHILE:
            self._spin_pause = SPIN_PAUSE
        return ready


def _make_poller(fileno):
    """A poll object watching ``fileno``, or None where polling before a read cannot pay off."""
    import select

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if cpus < 2 or not hasattr(select, "poll"):
        return None
    poller = select.poll()
    try:
        poller.register(fileno, select.POLLIN)
    except (OSError, ValueError):  # closed meanwhile: the read will say so
        return None
    return poller
