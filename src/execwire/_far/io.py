"""Byte transports: a pair of file descriptors or a socket, read in frames.

Far-side module: stdlib only, Python >= 3.6.

Reading fills one reused buffer with readinto and parses every complete frame in
it before the next system call; a payload larger than the buffer is read straight
into a buffer of its own. Writing sends header and payload parts in one gathered
write, so large payloads are never copied.

Small frames sent in a burst (the third and later of frames each sent within
BURST_GAP seconds of the last, with nothing read in between) are coalesced: they
queue up while a flusher thread writes the previous batch, so a thousand small
sends cost a few system calls. A frame sent after a pause or in reply to one just
read is written at once, so round trips pay nothing for this. ``flush()`` writes
what is queued (call it before closing).
"""

import os
import sys
import threading
import time

from . import frames
from .errors import GatewayLostError, ProtocolError

SMALL_PAYLOAD = 65536  # smaller payloads are copied behind their header and may be coalesced
BUFFER_SIZE = 256 * 1024  # the read buffer grows to this when reads fill it...
FIRST_BUFFER_SIZE = 32 * 1024  # ...from this, which is all a quiet far side needs
LARGE_SPARE_MAX = 16 * 1024 * 1024
_pack_header = frames.HEADER.pack
_unpack_header = frames.HEADER.unpack_from
_HSIZE = frames.HEADER_SIZE
_MAGIC = frames.MAGIC
_KNOWN_TYPES = frames.NAMES
_MAX_PAYLOAD = frames.MAX_PAYLOAD
_writev = getattr(os, "writev", None)
SPIN = 0.00005  # seconds a reader polls for an answer before it sleeps
SPIN_WORTHWHILE = 2 * SPIN  # a wait longer than this pauses the polling...
SPIN_PAUSE = 64  # ...for this many waits
_sched_yield = getattr(os, "sched_yield", lambda: None)
BURST_GAP = 0.0002
MAX_BATCH = 256 * 1024  # a sender waits while this much is queued for the flusher
SELF_WRITE = 16 * 1024  # a sender writes the batch itself at this size, if the peer has read everything
try:
    _clock = time.perf_counter
except AttributeError:  # pragma: no cover
    _clock = time.time


def payload_size(parts):
    """Bytes in ``parts`` (bytes, bytearrays and memoryviews)."""
    size = 0
    for part in parts:
        size += part.nbytes if isinstance(part, memoryview) else len(part)
    return size


class Transport(object):
    """Frames over a byte stream: ``readinto`` and ``writev`` are supplied by subclasses."""

    def __init__(self):
        self._write_lock = threading.Lock()
        self.closed = False
        self._buf = bytearray(FIRST_BUFFER_SIZE)
        self._size = FIRST_BUFFER_SIZE
        self._view = memoryview(self._buf)
        self._rbuf_start = self._rbuf_end = 0
        self._large = None  # payload of a frame larger than the buffer, being read
        self._large_have = 0
        self._large_frame = None
        self._large_spare = None  # a large-frame buffer kept for the next one
        self.frames_read = 0  # grows as frames are parsed (not always by one per frame)
        self._last_write = 0.0
        self._frames_read_at_write = -1
        self._burst = 0  # writes in a row that came quickly with nothing read between
        self._batch = []  # coalesced small frames the flusher will write
        self._batch_bytes = 0
        self._flushing = False  # the flusher owns the write side
        self._flush_wakeup = None  # lock released to wake the flusher
        self._flush_done = threading.Condition(self._write_lock)
        self._flush_error = None
        self._flush_stop = False
        self._flusher_writing = False  # the flusher writes a batch (outside the write lock)
        self._self_write_at = SELF_WRITE  # batch size at which a sender looks whether to write it
        self._poller = None  # see wait_for_data()
        self._spin_pause = -1  # waits left without polling first; -1: not yet known if polling pays

    # -- reading ------------------------------------------------------------
    def next_frame(self):
        """The next complete frame already read, as (type, channel id, payload view), or None.

        Never does I/O. The payload view is valid until the next call. Only one
        thread at a time may read (the gateway passes a baton around).
        """
        start = self._rbuf_start
        if self._large is not None:
            if self._large_have < len(self._large):
                return None
            frame, self._large = self._large_frame, None
            self.frames_read += 1
            return frame
        end = self._rbuf_end
        if end - start < _HSIZE:
            return None
        magic, msgtype, channel_id, length = _unpack_header(self._buf, start)
        if magic != _MAGIC or msgtype not in _KNOWN_TYPES or length > _MAX_PAYLOAD:
            frames.parse_header(self._buf, start, end)  # raises the error that says what is wrong
        frame_end = start + _HSIZE + length
        if frame_end <= end:
            self._rbuf_start = frame_end
            self.frames_read += 1
            return msgtype, channel_id, self._view[start + _HSIZE:frame_end]
        if _HSIZE + length > self._size:  # larger than the buffer: read into one of its own
            payload = self._large_spare
            if payload is None or len(payload) < length:
                payload = bytearray(length)
                if length <= LARGE_SPARE_MAX:
                    self._large_spare = payload  # reused: fresh memory costs page faults every time
            payload = memoryview(payload)[:length]
            have = end - start - _HSIZE
            payload[:have] = self._view[start + _HSIZE:end]
            self._large = payload
            self._large_have = have
            self._large_frame = (msgtype, channel_id, payload)
            self._rbuf_start = self._rbuf_end = 0
            return self.next_frame()
        return None

    def unparsed(self):
        """(buffer, start, end): the bytes read but not parsed yet; buffer None during a large frame.

        With consumed(), the fast path for many small frames: the gateway parses
        and decodes them where they lie (see BaseGateway._dispatch_small_frames).
        """
        if self._large is not None:
            return None, 0, 0
        return self._buf, self._rbuf_start, self._rbuf_end

    def consumed(self, position):
        """The caller parsed the frames of unparsed() up to ``position``."""
        self._rbuf_start = position
        self.frames_read += 1  # it only has to change: see send_frame()

    def read_some(self):
        """One read from the peer into the buffer; False at a clean end of stream."""
        if self._large is not None:
            n = self.readinto(self._large[self._large_have:])
            if not n:
                raise GatewayLostError("connection closed after %d of %d payload bytes"
                                       % (self._large_have, len(self._large)))
            self._large_have += n
            return True
        start, end = self._rbuf_start, self._rbuf_end
        if start == end:
            start = end = 0
        elif self._size - start < self._size // 2 or self._size - end < _HSIZE:
            # move the partial frame to the front so the rest of it fits
            pending = end - start
            self._buf[0:pending] = self._buf[start:end]
            start, end = 0, pending
        self._rbuf_start = start
        n = self.readinto(self._view[end:])
        if not n:
            self._rbuf_end = end
            if start == end:
                return False
            rest = bytes(self._buf[start:end])
            if not _MAGIC.startswith(rest[:2]):
                raise frames.garbage_error(rest)
            raise GatewayLostError("connection closed in the middle of a frame")
        self._rbuf_end = end + n
        if end + n == self._size < BUFFER_SIZE:
            self._grow()
        return True

    def _grow(self):
        """A read filled the buffer: the peer sends a lot, so read more at a time."""
        start, end = self._rbuf_start, self._rbuf_end
        buf = bytearray(BUFFER_SIZE)
        buf[0:end - start] = self._view[start:end]
        self._buf, self._view, self._size = buf, memoryview(buf), BUFFER_SIZE
        self._rbuf_start, self._rbuf_end = 0, end - start

    def has_frame(self):
        """True if a complete frame waits in the buffer."""
        if self._large is not None:
            return self._large_have >= len(self._large)
        if self._rbuf_end - self._rbuf_start < _HSIZE:
            return False
        length = _unpack_header(self._buf, self._rbuf_start)[3]
        return self._rbuf_start + _HSIZE + length <= self._rbuf_end or _HSIZE + length > self._size

    def read_frame(self):
        """Block until the next frame; None at a clean end of stream."""
        while True:
            frame = self.next_frame()
            if frame is not None:
                return frame
            if not self.read_some():
                return None

    def wait_readable(self, timeout):
        """False if nothing arrives within ``timeout`` seconds (True when it cannot tell)."""
        fileno = self.read_fileno()
        if fileno is None:
            return True
        import select

        while True:
            try:
                ready, _, _ = select.select([fileno], [], [], timeout)
                return bool(ready)
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return True  # closed meanwhile: let the read say what happened

    def read_fileno(self):
        """The descriptor frames are read from, or None when it cannot be polled."""
        return None

    def wait_for_data(self, timeout):
        """Wait until the peer has sent something; False after ``timeout`` seconds (None: no limit).

        When the peer answers quickly, poll for up to SPIN seconds first (giving
        the CPU to anyone who wants it between polls): an answer that comes that
        fast is then read without the thread going to sleep and being woken
        again, which on many machines costs more than the answer itself. After
        a long wait the polling stops for the next SPIN_PAUSE waits, so a quiet
        connection costs next to nothing. With ``timeout`` None the caller's
        read does the sleeping.
        """
        poller = self._poller
        if poller is None:
            if self._spin_pause < 0:  # first call: can polling pay off here at all?
                fileno = self.read_fileno()
                poller = self._poller = None if fileno is None else _make_poller(fileno)
                self._spin_pause = 0
            if poller is None:
                return True if timeout is None else self.wait_readable(timeout)
        if self._spin_pause:
            self._spin_pause -= 1
            return True if timeout is None else self.wait_readable(timeout)
        start = _clock()
        end = start + SPIN
        while True:
            if poller.poll(0):
                return True
            if _clock() >= end:
                break
            _sched_yield()
        ready = self.wait_readable(None if timeout is None else max(timeout - (_clock() - start), 0))
        if _clock() - start >= SPIN_WORTHWHILE:
            self._spin_pause = SPIN_PAUSE
        return ready

    # -- writing ------------------------------------------------------------
    def send(self, msgtype, channel_id, parts=(), length=None):
        """Write one frame whose payload is the concatenation of ``parts`` (``length`` bytes)."""
        if length is None:
            length = payload_size(parts)
        if length > frames.MAX_PAYLOAD:
            raise ValueError("message of %d bytes exceeds the limit of %d bytes" % (length, frames.MAX_PAYLOAD))
        head = _pack_header(_MAGIC, msgtype, channel_id, length)
        if length < SMALL_PAYLOAD:  # small: one contiguous buffer, one system call
            self.send_frame(head + parts[0] if len(parts) == 1 else head + b"".join(parts))
            return
        with self._write_lock:
            while self._flushing and not self.closed:  # large parts are not copied: write them in order
                self._flush_done.wait(0.5)
            if self.closed:
                raise GatewayLostError("connection already closed")
            self.write_all([head] + list(parts))
            self._last_write = _clock()

    def send_frame(self, frame):
        """Write one complete frame (header included, payload under SMALL_PAYLOAD bytes) at once,
        or queue it for the flusher during a burst."""
        lock = self._write_lock
        lock.acquire()  # not `with`: this is the hot path
        try:
            if (self._flushing and self._batch_bytes < MAX_BATCH and self._flush_error is None
                    and not self.closed and not self._flush_stop):
                self._batch.append(frame)  # a burst under way: queue behind it
                self._batch_bytes += len(frame)
                if self._batch_bytes >= self._self_write_at:
                    self._self_write_at += SELF_WRITE
                    if not self._flusher_writing and self._peer_waits_with_room_for(self._batch_bytes):
                        # A sender in a loop gives up the interpreter lock only every few
                        # milliseconds, so the flusher may not get to run while the batch
                        # grows and the peer waits for it: write it ourselves, now that it
                        # cannot block (the lock we hold keeps the flusher from writing
                        # anything in between).
                        batch, self._batch, self._batch_bytes = self._batch, [], 0
                        self._self_write_at = SELF_WRITE
                        self.write_all([b"".join(batch)])
                return
            if self.closed:
                raise GatewayLostError("connection already closed")
            if self._flush_error is not None:
                raise self._flush_error
            now = _clock()
            if now - self._last_write < BURST_GAP and self.frames_read == self._frames_read_at_write:
                self._burst += 1  # another write soon after the last, nothing read in between
            else:
                self._burst = 0
            self._last_write = now
            if (self._flushing or self._burst >= 2) and not self._flush_stop:
                while self._batch_bytes >= MAX_BATCH and self._flushing:
                    self._flush_done.wait()  # the flusher is behind: wait as for a full pipe
                self._batch.append(frame)
                self._batch_bytes += len(frame)
                if not self._flushing:
                    self._start_flush()
                return
            self._frames_read_at_write = self.frames_read
            written = self.write(frame)
            if written != len(frame):
                self.write_all([memoryview(frame)[written:]])
        finally:
            lock.release()

    # -- coalescing ---------------------------------------------------------
    def _start_flush(self):
        """Hand the batch to the flusher thread (called holding the write lock)."""
        self._flushing = True
        if self._flush_wakeup is None:
            self._flush_wakeup = threading.Lock()
            self._flush_wakeup.acquire()
            thread = threading.Thread(target=self._flusher, name="execwire-flush")
            thread.daemon = True
            thread.start()
        self._flush_wakeup.release()

    def _flusher(self):
        wakeup = self._flush_wakeup
        while True:
            wakeup.acquire()
            while True:
                with self._write_lock:
                    batch = self._batch
                    self._batch = []
                    self._batch_bytes = 0
                    self._self_write_at = SELF_WRITE
                    self._flush_done.notify_all()
                    if not batch or self._flush_error is not None or self.closed:
                        self._flushing = False
                        self._last_write = _clock()  # a send that follows at once is still part of the burst
                        if self._flush_stop:
                            return
                        break
                    self._flusher_writing = True
                try:
                    self.write_all([b"".join(batch)])  # small frames: one copy, one system call
                except GatewayLostError as exc:
                    with self._write_lock:
                        self._flush_error = exc
                finally:
                    self._flusher_writing = False

    def flush(self, final=False):
        """Wait until every coalesced frame is written; ``final`` also ends the flusher."""
        with self._write_lock:
            while self._flushing:
                self._flush_done.wait()
            if final and not self._flush_stop:
                self._flush_stop = True
                if self._flush_wakeup is not None:
                    self._flush_wakeup.release()

    def write(self, data):
        """Write what the system takes of ``data`` in one call; return how much."""
        return self.writev([data])

    def _peer_waits_with_room_for(self, nbytes):
        """True only if the peer has read all we wrote and ``nbytes`` fit without waiting (False when unknown)."""
        return False

    def write_all(self, buffers):
        """Write every buffer (a short list), resuming after partial writes."""
        while buffers:
            written = self.writev(buffers)
            while buffers and written:
                first = buffers[0]
                size = len(first) if not isinstance(first, memoryview) else first.nbytes
                if written >= size:
                    written -= size
                    del buffers[0]
                else:
                    buffers[0] = memoryview(first).cast("B")[written:]
                    written = 0


def _pipe_probe():
    """A function giving (unread bytes, capacity) of a pipe from its write end; False where there is none.

    Linux answers FIONREAD for either end of a pipe, and F_GETPIPE_SZ.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import array
        import fcntl
        import termios
    except ImportError:
        return False
    get_size = getattr(fcntl, "F_GETPIPE_SZ", 1032)  # the constant appeared in Python 3.10

    def probe(fd):
        count = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, count, True)
        return count[0], fcntl.fcntl(fd, get_size)

    return probe


def _make_poller(fileno):
    """A poll object watching ``fileno``, or None where polling before a read cannot pay off."""
    import select

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if cpus < 2 or not hasattr(select, "poll"):
        return None  # on one CPU, polling only keeps the peer from answering
    poller = select.poll()
    try:
        poller.register(fileno, select.POLLIN)
    except (OSError, ValueError):  # closed meanwhile: the read will say so
        return None
    return poller


class PipeTransport(Transport):
    """Two file descriptors: one to read frames from, one to write them to."""

    def __init__(self, read_fd, write_fd):
        Transport.__init__(self)
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._probe = None  # asks a pipe for its unread bytes and capacity; False: no way here
        self._reader = os.fdopen(read_fd, "rb", buffering=0, closefd=False)

    def read_fileno(self):
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
        try:
            if _writev is None:  # PyPy has no os.writev: one buffer per call
                return os.write(self.write_fd, buffers[0])
            return _writev(self.write_fd, buffers[:512])
        except OSError as exc:
            raise GatewayLostError("writing to the peer failed: %s" % exc)

    def write(self, data):
        try:
            return os.write(self.write_fd, data)
        except OSError as exc:
            raise GatewayLostError("writing to the peer failed: %s" % exc)

    def _peer_waits_with_room_for(self, nbytes):
        if self._probe is None:
            self._probe = _pipe_probe()
        if self._probe is False:
            return False
        try:
            unread, capacity = self._probe(self.write_fd)
        except OSError:
            return False
        return unread == 0 and nbytes <= capacity

    def close_write(self):
        """Signal end of stream to the peer."""
        with self._write_lock:
            if not self.closed:
                self.closed = True
                _close_quietly(self.write_fd)

    def close(self):
        self.close_write()
        _close_quietly(self.read_fd)


class SocketTransport(Transport):
    """A connected stream socket."""

    def __init__(self, sock):
        import socket  # only socket gateways pay for this import

        Transport.__init__(self)
        self.sock = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # not TCP (a unix socket)

    def read_fileno(self):
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
        with self._write_lock:
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


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


__all__ = ["Transport", "PipeTransport", "SocketTransport", "ProtocolError"]
