"""The threaded driver both ends share: who reads, dispatch of events to waiters, callbacks.

Far-side module: stdlib only, Python >= 3.6.

BaseGateway feeds the bytes it reads to the protocol core (protocol.py), hands
the events that come out to the channels and writes what the core says to
write through a FrameWriter (streams.py). Items go straight into the channel's
queue. Whoever waits for an item reads the frames (see "receiving" below), and
callbacks run in a thread of their own so a slow callback never stalls reading.
The far end's running of shipped code is in execution.py.
"""

import os
import sys
import threading
import time

from . import frames, interrupts, protocol
from .baton import TAKE, Baton
from .channel import Channel
from .errors import GatewayLostError, ProtocolError, RemoteError
from .streams import FrameWriter, ReadWaiter
from .sync import Empty, Flag
from .sync import ItemQueue as _Queue
from .wire import LoadError

try:
    _clock = time.monotonic
except AttributeError:  # pragma: no cover
    _clock = time.time

DEBT_DELAY = 0.05  # seconds without anything to read before the reader writes owed CLOSE frames itself
_ITEM = protocol.ITEM
_ENDED = protocol.ENDED
_CREDIT = protocol.CREDIT
_EOF = protocol.EOF
_critical = interrupts.critical
_done = interrupts.done
_allow = interrupts.allow
_disallow = interrupts.disallow


class Tracer(object):
    """Writes one line per event to a file descriptor when debugging is on."""

    def __init__(self, side, fd=None):
        self.side = side
        self.fd = fd
        self.enabled = fd is not None

    def __call__(self, *parts):
        if self.enabled:
            line = "[execwire %s %d] %s\n" % (self.side, os.getpid(), " ".join(str(p) for p in parts))
            try:
                os.write(self.fd, line.encode("utf-8", "backslashreplace"))
            except OSError:
                pass


class BaseGateway(object):
    """Reading, dispatch and callbacks, common to the near and far ends.

    Concurrency: the protocol core takes no locks. Reading and parsing (feeding
    bytes to it and calling events()) happen only in the thread holding the
    baton; the channel table changes under _channels_lock (new channels) or in
    that reading thread (references decoded from items); each channel's own
    states change under that channel's lock; writing goes through the
    FrameWriter's lock, one whole frame at a time.
    """

    _side = protocol.NEAR

    def __init__(self, stream, id, trace, max_channels=protocol.MAX_CHANNELS):
        self.id = id
        self._stream = stream
        self._writer = FrameWriter(stream)
        self._waiter = ReadWaiter(stream)
        self._protocol = protocol.Protocol(self._side, self._make_channel, max_channels)
        self._kept = {}  # id -> channel that must live while it has a callback, even if nobody refers to it
        self._trace = trace
        self._channels_lock = threading.Lock()
        self._callback_queue = None
        self._callback_running = False
        self._callback_thread = None
        self._connection_error = None  # set when the reader stopped
        self._expect_end = False  # this side asked for the end
        self._baton = Baton()  # who reads frames (baton.py)
        self._reading_done = False
        self._ended = Flag()  # set once reading stopped and every channel was told

    # -- channels -----------------------------------------------------------
    def _make_channel(self, core, channel_id):
        return Channel(self, core, channel_id)

    def newchannel(self):
        """A new channel, to be sent to the other side inside a message."""
        with self._channels_lock:
            if self._connection_error is not None:
                raise self._connection_error
            return self._protocol.new_channel()

    # -- sending ------------------------------------------------------------
    def _send(self, msgtype, channel_id, parts=()):
        """Write one frame, whole, before returning (Ctrl-C cannot cut it in half)."""
        parts = list(parts)
        size = protocol.wire_size(parts)
        if size > frames.MAX_PAYLOAD:
            raise ValueError("message of %d bytes exceeds the limit of %d bytes" % (size, frames.MAX_PAYLOAD))
        if self._trace.enabled:
            self._trace("send", frames.NAMES[msgtype], channel_id, size, "bytes")
        entered = _critical()
        try:
            self._writer.send(msgtype, channel_id, parts or [b""], size)
        finally:
            if entered and _done():
                raise KeyboardInterrupt  # it came while the frame was written: it is written whole

    def _send_frame(self, frame):
        """Write a complete small frame (CREDIT, CLOSE) at once."""
        entered = _critical()
        try:
            self._writer.send_frame(frame)
        finally:
            if entered and _done():
                raise KeyboardInterrupt

    # -- receiving ----------------------------------------------------------
    # One thread at a time reads frames: whoever holds the baton (baton.py has its
    # rules). A thread blocked in receive() takes it and reads its own reply; the
    # reader thread reads what nobody else is reading. Reading and dispatching one
    # batch of bytes is a critical stretch for Ctrl-C (interrupts.py): a receive()
    # interrupted in the main thread leaves no frame half read.

    def _receive_loop(self):
        """The reader thread: read and dispatch until the stream ends."""
        baton = self._baton
        lock = baton.lock
        core = self._protocol
        waiter = self._waiter
        pollable = waiter.fileno is not None
        while not self._reading_done:
            if pollable:
                if baton.receiver_active():
                    continue
                if not lock.acquire(False):
                    baton.wait_for_holder()
                    continue
                try:
                    buffered = core.has_frame()  # the buffer is only looked at with the baton
                finally:
                    lock.release()
                if baton.hand_over_if_wanted():  # it was left free: a waiting receiver reads now
                    continue
                if not buffered:
                    if self._writer.owed and not waiter.readable(DEBT_DELAY):
                        self._pay_debts()  # a quiet moment: they would otherwise wait for the next write
                    waiter.readable(None)  # without the baton: receivers may read meanwhile
                    if baton.receiver_active() or not lock.acquire(False):
                        continue  # a receiver may be reading it
                    if not core.has_frame() and not waiter.readable(0):
                        lock.release()
                        continue  # a receiver took it
                elif not lock.acquire(False):
                    continue
            else:
                self._pay_debts()
                lock.acquire()  # receivers never read a stream that cannot be polled
            try:
                if self._reading_done:
                    return
                self._read_and_dispatch()
            except BaseException as exc:
                self._reading_failed(exc)  # before giving the baton back: nobody may block on a dead stream
                return
            finally:
                lock.release()
            baton.hand_over_if_wanted()

    def _pay_debts(self):
        """When the connection is quiet: write the CLOSE frames still owed to the peer.

        They wait for the next frame written (no system call of their own), but not
        for ever: then the peer could not forget those channels. The reader thread
        pays them after DEBT_DELAY seconds without anything to read, so a busy
        conversation (remote_exec after remote_exec) never pays a write for them. Never waits for a
        write under way: the reader must not stop reading because a writer is stuck.
        """
        if self._writer.owed:  # CLOSE answers, and CLOSEs of channels that became garbage
            try:
                self._writer.flush_owed(wait=False)
            except GatewayLostError:
                pass  # the reader will see the end

    def _read_and_dispatch(self, buffered=None):
        """One read if nothing is buffered, then dispatch every complete frame (holding the baton).

        ``buffered``: whether a complete frame is buffered, if the caller just looked.

        In the main thread it runs inside a stretch of receive(), waitclose() or
        _wait_flag() (interrupts.py), which covers reading and dispatching.
        """
        core = self._protocol
        if not (core.has_frame() if buffered is None else buffered):
            view = core.read_buffer()
            count = self._stream.readinto(view)
            del view  # the core may resize what it lent us
            core.bytes_read(count)
        self._dispatch(core.events())
        while core.has_frame() and not self._reading_done:
            # only an error the core found behind those events (it returns them first) is left:
            # raise it now, as no byte may come that would wake a reader to find it
            self._dispatch(core.events())

    def _dispatch(self, events):
        """Hand each event to whom it concerns (holding the baton)."""
        tracing = self._trace.enabled
        for event in events:
            kind = event[0]
            if kind == _ITEM:
                channel = event[1]
                if tracing:
                    self._trace("recv", "DATA", channel.id, event[3] - protocol.MIN_COST, "bytes")
                # channel._deliver(value, cost), inlined for the common case
                items = channel._items
                if items is None:
                    channel._deliver(event[2], event[3])
                else:
                    items.put((event[2], event[3]))
                    if channel._items is not items:
                        channel._queue_taken_by_callback(items)
            elif kind == _ENDED:
                channel = event[1]
                if tracing:
                    self._trace("recv", "LAST" if event[3] else "CLOSE", channel.id,
                                "error" if event[2] is not None else "")
                error = None if event[2] is None else RemoteError(event[2], self.id, channel.id)
                channel._remote_ended(error, event[3])
            elif kind == _CREDIT:
                event[1]._add_credit(event[2])
            elif kind == _EOF:
                self._reading_failed(None)
            else:
                if tracing:
                    subject = event[1] if len(event) > 1 else ""
                    self._trace("recv", protocol.EVENT_NAMES[kind], getattr(subject, "id", subject))
                self._special_event(event)

    def _special_event(self, event):
        raise ProtocolError("the %s side got an event it does not handle: %r" % (self._side, event[:1]))

    def _wait_item(self, items, timeout, receiver=False):
        """Take the next entry of ``items`` (a queue), reading frames ourselves if we can.

        A ``receiver`` (of a channel) that finds the baton taken asks to be woken
        to take it over. Waiters for exec jobs read only while no receiver wants
        to: they hand the baton over as soon as one asks.
        """
        deadline = None if timeout is None else _clock() + timeout
        baton = self._baton
        waiter = self._waiter
        while True:
            if self._reading_done or (waiter._fileno is None and waiter.fileno is None):
                pass  # nobody reads here: wait for what the reader thread delivers
            elif baton.lock.acquire(False):
                entry = self._read_for(items, deadline, not receiver)
                if entry is not _YIELDED:
                    return entry
            elif receiver:
                if not baton.ask(items):  # it was free after all, and is ours now
                    return self._read_for(items, deadline, False)
                try:
                    entry = _get(items, deadline)
                finally:
                    baton.withdraw(items)
                if entry is not TAKE:
                    return entry
                continue
            entry = _get(items, deadline)
            if entry is not TAKE:
                return entry

    def _wait_flag(self, flag, timeout):
        """Wait until ``flag`` (a Flag) is set, reading frames meanwhile like a receiver; False on timeout."""
        if flag.is_set():
            return True
        waiter = _Queue()
        if not flag.add_queue(waiter):
            return True
        entered = _critical()  # it may read frames: a stretch Ctrl-C cannot cut (interrupts.py)
        try:
            self._wait_item(waiter, timeout, True)
        except Empty:
            flag.remove_queue(waiter)
            return flag.is_set()
        finally:
            if entered and _done():
                raise KeyboardInterrupt  # what was read is delivered: nothing is lost
        return True

    def _read_for(self, items, deadline, yields):
        """Read and dispatch frames until ``items`` has an entry (holding the baton).

        ``yields``: return _YIELDED, handing the baton over, once a receiver asks for it.
        """
        baton = self._baton
        baton.taken_at = _clock()  # Baton.took(), inlined: this is the hot path
        core = self._protocol
        waiter = self._waiter
        entry = _NOTHING
        yielded = False
        try:
            while True:
                entry = _take(items)
                if entry is not _NOTHING or self._reading_done:
                    break
                if yields and baton.wanted:
                    yielded = True
                    break
                buffered = core.has_frame()
                if not buffered:
                    if self._writer.owed:
                        self._pay_debts()
                    allowed = _allow()  # Ctrl-C may end this wait at once: nothing is taken yet
                    try:
                        ready = waiter.wait(None if deadline is None else deadline - _clock())
                    finally:
                        _disallow(allowed)
                    if not ready:
                        raise Empty
                self._read_and_dispatch(buffered)
                if deadline is not None and _clock() >= deadline:
                    entry = _take(items)
                    if entry is _NOTHING:
                        raise Empty  # time is up, even while other channels keep it busy
                    break
        except (Empty, KeyboardInterrupt, SystemExit):
            raise  # Ctrl-C interrupts this receive, not the gateway; the reader thread reads on
        except BaseException as exc:
            self._reading_failed(exc)
        finally:
            baton.leave(entry is _NOTHING)
        if yielded:
            return _YIELDED
        while entry is _NOTHING or entry is TAKE:
            entry = _get(items, None)  # what the end put there (a channel's end marker, serve()'s None)
        return entry

    def _reading_failed(self, exc):
        """Reading stopped (``exc`` None: clean end of stream): end every channel, once."""
        with self._channels_lock:
            if self._reading_done:
                return
            self._reading_done = True
        if exc is None or isinstance(exc, GatewayLostError):
            error = exc
        elif isinstance(exc, (ProtocolError, LoadError)):
            error = GatewayLostError("gateway %s: %s" % (self.id, exc))
            error.__cause__ = exc
        else:  # a bug here must not leave waiters hanging
            error = GatewayLostError("gateway %s: reader failed: %r" % (self.id, exc))
            error.__cause__ = exc
        self._connection_ended(error)

    def _connection_ended(self, error):
        """The reader stopped: wake every waiter, with ``error`` unless the end was asked for."""
        if self._expect_end:
            error = None  # asked for: channels end cleanly, receivers see EOFError
        elif error is None:
            error = GatewayLostError("gateway %s: the other side went away" % (self.id,))
        self._trace("connection ended:", error or "as asked")
        lost = error if error is not None else GatewayLostError("gateway %s was closed" % (self.id,))
        with self._channels_lock:
            self._connection_error = lost
            channels = self._protocol.live_channels()
        for channel in channels:
            channel._gateway_ended(error, lost)
        if self._callback_queue is not None:
            self._callback_queue.put(None)
        self._ended.set()
        self._baton.wake()  # the reader thread stops lingering and sees the end

    # -- callbacks ----------------------------------------------------------
    def _schedule_callback(self, channel, callback, item, cost):
        """Run ``callback(item)`` on the callback thread, after those scheduled before."""
        with self._channels_lock:
            if self._callback_queue is None:
                self._callback_queue = _Queue()
            self._callback_queue.put((channel, callback, item, cost))
            if not self._callback_running:
                self._callback_running = True
                self._callback_thread = threading.Thread(target=self._callback_loop, name="execwire-callbacks")
                self._callback_thread.daemon = True
                self._callback_thread.start()

    def _wait_callbacks(self, timeout):
        """Wait until every callback scheduled so far has run; False after ``timeout`` (None: no limit).

        Callbacks run in order on one thread, so a marker scheduled now runs after
        them. From inside a callback there is nothing to wait for.
        """
        if threading.current_thread() is self._callback_thread:
            return True
        reached = threading.Event()
        self._schedule_callback(None, lambda _: reached.set(), None, 0)
        return reached.wait(timeout)

    def _callback_loop(self):
        """Run callbacks one after another; nothing a callback raises stops this loop."""
        queue = self._callback_queue
        while True:
            job = queue.get()
            if job is None:
                with self._channels_lock:
                    if self._connection_error is not None and queue.empty():
                        self._callback_running = False  # a later callback starts a new thread
                        return
                continue
            channel, callback, item, cost = job
            try:
                callback(item)
            except BaseException:  # SystemExit and KeyboardInterrupt too: this thread serves every channel
                self._callback_failed(channel, format_exception(sys.exc_info()))
            if cost:
                channel._took(cost)

    def _callback_failed(self, channel, text):
        """A callback raised: report it with its traceback, and close its channel with the error."""
        if channel is None:
            sys.stderr.write("execwire: a callback of gateway %s failed:\n%s" % (self.id, text))
            return
        self._trace("callback on channel", channel.id, "failed:", text)
        self._report_callback_error(channel, text)
        channel._close_with_local_error(text)

    def _report_callback_error(self, channel, text):
        sys.stderr.write("execwire: the callback of channel %d on gateway %s failed; the channel is closed:\n%s"
                         % (channel.id, self.id, text))


def format_exception(exc_info, skip_frames=0):
    """Traceback text of ``exc_info`` without the first ``skip_frames`` frames."""
    import traceback

    exc_type, exc, tb = exc_info
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    return "".join(traceback.format_exception(exc_type, exc, tb))


_get = interrupts.get  # block for the next entry of a queue; Empty once the deadline (None: none) passed


def _take(items):
    """The next entry of ``items``, skipping stale wake-ups; _NOTHING if there is none."""
    while not items.empty():
        try:
            entry = items.get(False)
        except Empty:  # another receiver took it
            break
        if entry is not TAKE:
            return entry
    return _NOTHING


_NOTHING = object()
_YIELDED = object()

