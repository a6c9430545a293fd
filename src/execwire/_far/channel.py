"""Channel: one two-way conversation between the ends of a gateway.

Far-side module: stdlib only, Python >= 3.6.

A channel has two halves. Its sending half closes when this side calls close()
or the other side closes it; its receiving half closes when the other side says
it will send no more (or this side closes). Items that arrived before the
receiving half closed are always handed out first, then EOFError (clean end) or
the error that ended the channel (RemoteError, GatewayLostError). The states and
credit live in the protocol core's ChannelState, which Channel extends with the
waiting: the item queue, callbacks and blocked senders.

Flow control: a sender may have at most WINDOW bytes of items that the other
side has not yet received (each item counts MIN_COST bytes more than its size);
beyond that send() waits until the receiver takes items and returns CREDIT, in
batches. So a slow receiver holds back a fast sender instead of buffering without
limit. An item larger than the window goes once less than a batch is outstanding.

Errors say who ended it: ChannelClosedError when a side closed the channel on
purpose, GatewayLostError when the connection died, RemoteError when the far
code raised.
"""

import threading
import time
from _thread import interrupt_main as _interrupt_main

from . import frames, interrupts
from .baton import TAKE
from .errors import ChannelClosedError, GatewayLostError, RemoteError, TimeoutError, _CallbackChannelError
from .protocol import CLOSE_RECEIVED, CLOSE_SENT, CREDIT_BATCH, MIN_COST, OPEN, WINDOW, ChannelState, wire_size
from .streams import SMALL_PAYLOAD
from .sync import Empty, Flag, ItemQueue
from .wire import DumpError
from .wire import encode as _encode

try:
    _clock = time.monotonic
except AttributeError:  # pragma: no cover
    _clock = time.time

ENDMARKER = object()
NO_ENDMARKER_WANTED = object()
_CREDIT_BATCH = CREDIT_BATCH
_pack_header = frames.HEADER.pack
_MAGIC = frames.MAGIC
_DATA = frames.DATA
_critical = interrupts.critical
_done = interrupts.done


class Channel(ChannelState):
    """Send and receive items to and from the other side."""

    RemoteError = RemoteError
    TimeoutError = TimeoutError

    def __init__(self, gateway, core, id):
        ChannelState.__init__(self, core, id)
        self.gateway = gateway
        self._writer = gateway._writer
        self._trace = gateway._trace
        self._items = ItemQueue()  # None once a callback takes the items
        self._callback = None
        self._endmarker = NO_ENDMARKER_WANTED
        self._lock = threading.Lock()
        self._receive_closed = Flag()  # receiving half
        self._error = None  # what receivers get after the items: RemoteError, GatewayLostError
        self._lost = None  # the GatewayLostError, once the connection died
        self._credit_waiters = None  # a Condition, made when a sender first has to wait
        self._held = None  # an item taken when Ctrl-C came: the next receive() returns it

    def __repr__(self):
        return "<Channel id=%d %s>" % (self.id, "closed" if self.isclosed() else "open")

    def __del__(self):
        # Garbage: nobody here can receive from it or send on it any more, so the other side is
        # told, as if close() had been called (execnet does the same). A channel with a callback
        # is kept alive by its gateway until its items are through.
        try:
            if self._local == CLOSE_SENT and self._remote == CLOSE_RECEIVED:
                return  # closed by both sides: already forgotten
            frame = self._protocol._dropped(self)
            if frame is not None and self._lost is None:
                self._writer.send_soon(frame)
        except KeyboardInterrupt:  # an exception in a finalizer is only printed: raise it again later
            _interrupt_main()
        except Exception:
            pass  # the connection is gone, or the interpreter is shutting down

    # -- sending ------------------------------------------------------------
    def send(self, item):
        """Send ``item`` (a value of a basic type, or a channel) to the other side.

        Returns once the item is written to the connection: it reaches the other
        side even if this process dies right after.
        """
        parts = _encode(item, Channel)
        if len(parts) == 1:
            payload = parts[0]
            size = len(payload)
        else:
            payload = None
            size = wire_size(parts)
        if size > frames.MAX_PAYLOAD:
            raise DumpError("cannot send an item of %d bytes on channel %d: the limit is %d bytes per "
                            "item; send it in pieces" % (size, self.id, frames.MAX_PAYLOAD))
        cost = size + MIN_COST
        writer = self._writer
        lock = writer.lock
        if self._trace.enabled:
            self._trace("send", "DATA", self.id, size, "bytes")
        while True:
            entered = _critical()
            try:
                # The state check, taking credit and the write all happen under the writer's lock:
                # a CLOSE written after a state change so can never overtake this item.
                lock.acquire()  # not `with`: this is the hot path
                try:
                    outstanding = self._spent - self._granted  # ChannelState._reserve(cost), inlined
                    if (self._local == OPEN and self._remote != CLOSE_RECEIVED and self._lost is None
                            and (outstanding + cost <= WINDOW or outstanding < _CREDIT_BATCH)):
                        self._spent = self._spent + cost
                        if payload is not None and size < SMALL_PAYLOAD:
                            writer.write_frame(_pack_header(_MAGIC, _DATA, self.id, size) + payload)
                        else:
                            writer.write(_DATA, self.id, parts, size)
                        return
                finally:
                    lock.release()
            finally:
                if entered and _done():
                    raise KeyboardInterrupt  # it came during the write: the item is sent, whole (or not at all)
            self._wait_for_credit(cost)

    def _send_written_by(self, cost, write):
        """Send an item of ``cost`` whose DATA frame ``write(writer)`` writes itself.

        For items sent by reference through relays (transports/middle_cache.py):
        the same state check and credit as send(), under the writer's lock.
        """
        lock = self._writer.lock
        while True:
            with lock:
                if self._lost is None and self._can_send() and self._reserve(cost):
                    write(self._writer)
                    return
            self._wait_for_credit(cost)

    def _wait_for_credit(self, cost):
        """Wait until ``cost`` bytes may be sent, or raise why the channel cannot send."""
        with self._lock:
            if self._credit_waiters is None:
                self._credit_waiters = threading.Condition(self._lock)
            while True:
                if self._lost is not None or not self._can_send():
                    raise self._send_error()
                if self._has_credit(cost):
                    return
                self._credit_waiters.wait(1.0)

    def _send_error(self):
        """Why nothing can be sent: the connection died, or a side closed the channel."""
        if self._lost is not None:
            return self._lost
        if self._remote == CLOSE_RECEIVED:
            return ChannelClosedError("cannot send on channel %d: the other side closed it" % self.id)
        return ChannelClosedError("cannot send on channel %d: it was closed by this side" % self.id)

    def _add_credit(self, amount):
        """The receiver took ``amount`` bytes of items (the thread handling events)."""
        self._granted += amount
        if self._credit_waiters is not None:  # set before a waiter looks at the credit
            with self._lock:
                self._credit_waiters.notify_all()

    def _took(self, cost):
        """We took an item of ``cost`` bytes: give credit back in batches."""
        with self._lock:
            frame = ChannelState._took(self, cost)
        if frame is not None:
            self._give_credit(frame)

    def _give_credit(self, frame):
        """Tell the sender it may send more (``frame`` is the CREDIT frame)."""
        try:
            self.gateway._send_frame(frame)
        except GatewayLostError:
            pass

    def close(self, error=None):
        """Close both halves, telling the other side why (``error``) if it failed.

        A receiver blocked on the other side wakes with EOFError, or with a
        RemoteError carrying ``error``. Closing twice does nothing.
        """
        text = None
        if error is not None:
            text = error.formatted if isinstance(error, RemoteError) else str(error)
        with self._lock:
            frame = self._close_frame(text) if self._lost is None else None
            if self._credit_waiters is not None:
                self._credit_waiters.notify_all()  # senders waiting for credit give up now
        if frame is not None:
            try:
                self.gateway._send_frame(frame)  # after an item being written: that send holds the writer's lock
            except GatewayLostError:
                pass  # nobody left to tell
        self._end_receiving(None)

    def isclosed(self):
        """True once the channel can send no more; it may still hold items to receive."""
        return not self._can_send() or self._lost is not None

    # -- receiving ----------------------------------------------------------
    def receive(self, timeout=None):
        """Return the next item; raise EOFError once the other side has closed.

        ``timeout`` (seconds) raises execwire.TimeoutError; the channel stays usable.
        """
        items = self._items
        if items is None:
            raise _CallbackChannelError("channel %d has a callback; receive() is not available" % self.id)
        entry = TAKE
        # In the main thread all of this is a stretch Ctrl-C cannot cut (interrupts.py): an interrupt
        # that comes after the item was taken is raised at the end, and the item is kept for the next
        # receive(). Waiting for it stays interruptible.
        entered = _critical()
        try:
            if self._held is not None:
                entry, self._held = self._held, None
            elif not items.empty():  # cheaper than catching Empty
                try:
                    entry = items.get(False)
                except Empty:  # another receiver took it
                    pass
            if entry is TAKE:
                try:
                    entry = self.gateway._wait_item(items, None if timeout is None else max(timeout, 0), True)
                except Empty:
                    raise TimeoutError("no item on channel %d within %r seconds" % (self.id, timeout))
            if entry is ENDMARKER:
                items.put(ENDMARKER)  # for the next receiver
                entry = TAKE
                raise self._end_error()
            item, cost = entry
            if cost:
                # _took(cost), inlined: this is the hot path
                lock = self._lock
                lock.acquire()
                received = self._received_cost + cost
                if received < _CREDIT_BATCH:
                    self._received_cost = received
                    lock.release()
                    entry = (item, 0)  # counted: kept by Ctrl-C, it must not count twice
                    return item
                frame = ChannelState._took(self, cost)
                lock.release()
                entry = (item, 0)
                if frame is not None:
                    self._give_credit(frame)
            return item
        finally:
            if entered and _done():
                if entry is not TAKE:
                    self._held = entry
                raise KeyboardInterrupt

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return self.receive()
        except EOFError:
            raise StopIteration

    next = __next__

    def waitclose(self, timeout=None):
        """Wait until the other side will send no more; raise its error if it failed.

        With a callback, also wait until the callback has had every item (and
        raise CallbackError if it failed).
        """
        deadline = None if timeout is None else _clock() + max(timeout, 0)
        # waits the way receive() does: reads the CLOSE frame itself if nobody else is reading
        if not self.gateway._wait_flag(self._receive_closed, None if timeout is None else max(timeout, 0)):
            raise TimeoutError("channel %d not closed within %r seconds" % (self.id, timeout))
        if self._items is None and not self.gateway._wait_callbacks(
                None if deadline is None else max(deadline - _clock(), 0)) and self._error is None:
            raise TimeoutError("the callback of channel %d did not get through its items within %r seconds"
                               % (self.id, timeout))
        if self._error is not None:
            raise self._error

    def setcallback(self, callback, endmarker=NO_ENDMARKER_WANTED):
        """Call ``callback(item)`` for every item, queued ones first, instead of receive().

        Callbacks run one at a time in a thread of their own, never in the thread
        that reads frames. When the channel closes, ``callback(endmarker)`` is
        called if an endmarker was given. A callback that raises closes the
        channel, with its traceback as the error, on both sides.
        """
        with self._lock:
            items = self._items
            if items is None:
                raise RuntimeError("channel %d already has a callback" % self.id)
            self._items = None
            self._callback = callback
            self._endmarker = endmarker
            if not self._receive_closed.is_set():
                self.gateway._kept[self.id] = self  # the callback needs it, referenced or not
            self._drain_to_callback(items)

    def _drain_to_callback(self, items):
        """Hand the entries of the old queue to the callback (holding self._lock)."""
        if self._held is not None:  # taken by a receive() that Ctrl-C interrupted: it comes first
            held, self._held = self._held, None
            if held is ENDMARKER:
                self._schedule_end()
                return
            self.gateway._schedule_callback(self, self._callback, held[0], held[1])
        while True:
            try:
                entry = items.get(False)
            except Empty:
                return
            if entry is TAKE:
                continue
            if entry is ENDMARKER:
                self._schedule_end()
                return
            self.gateway._schedule_callback(self, self._callback, entry[0], entry[1])

    def makefile(self, mode="w", proxyclose=False):
        """A file-like view: "w" sends what is written, "r" reads received str or bytes."""
        if mode == "w":
            return ChannelFileWrite(self, proxyclose)
        if mode == "r":
            return ChannelFileRead(self, proxyclose)
        raise ValueError("mode must be 'r' or 'w', not %r" % (mode,))

    # -- called by the gateway ----------------------------------------------
    def _deliver(self, item, cost):
        items = self._items
        if items is not None:
            items.put((item, cost))
            if self._items is not items:
                self._queue_taken_by_callback(items)
            return
        with self._lock:
            items = self._items
            if items is not None:
                items.put((item, cost))
                return
        self.gateway._schedule_callback(self, self._callback, item, cost)

    def _queue_taken_by_callback(self, items):
        """setcallback() took the queue while an item went in: the callback gets what is left."""
        with self._lock:
            self._drain_to_callback(items)

    def _remote_ended(self, error, sendonly):
        """The other side sent LAST (``sendonly``), CLOSE or CLOSE_ERROR (``error``, a RemoteError)."""
        frame = None
        with self._lock:
            if not sendonly:
                frame = self._close_frame()  # our answer, unless we closed already
            if self._credit_waiters is not None:
                self._credit_waiters.notify_all()
        if frame is not None:
            self.gateway._writer.owe(frame)  # goes out in front of the next frame written
        self._end_receiving(error)

    def _gateway_ended(self, error, lost):
        """The connection ended: ``error`` for receivers (None if it was asked for), ``lost`` for senders."""
        with self._lock:
            self._lost = lost
            if self._credit_waiters is not None:
                self._credit_waiters.notify_all()
        self._end_receiving(error)

    def _close_with_local_error(self, text):
        """Our callback raised: the channel ends with that error here, and the far side is told."""
        from .errors import CallbackError

        with self._lock:
            if self._error is None:
                self._error = CallbackError(text, self.gateway.id, self.id)
        self.close(error=text)

    def _end_receiving(self, error):
        with self._lock:
            if self._receive_closed.is_set():
                return
            if error is not None and self._error is None:
                self._error = error
            if self._items is not None:
                self._items.put(ENDMARKER)
            else:
                self._schedule_end()  # before the flag: waitclose() then waits for the endmarker's callback too
                self.gateway._kept.pop(self.id, None)  # the queued callbacks hold it now
            self._receive_closed.set()

    def _schedule_end(self):
        if self._endmarker is not NO_ENDMARKER_WANTED:
            self.gateway._schedule_callback(self, self._callback, self._endmarker, 0)

    def _end_error(self):
        if self._error is not None:
            return self._error
        return EOFError("channel %d was closed" % self.id)


class ChannelFile(object):
    def __init__(self, channel, proxyclose):
        self.channel = channel
        self._proxyclose = proxyclose

    def isatty(self):
        return False

    def close(self):
        if self._proxyclose:
            self.channel.close()

    def __repr__(self):
        return "<ChannelFile %d %s>" % (self.channel.id, "closed" if self.channel.isclosed() else "open")


class ChannelFileWrite(ChannelFile):
    def write(self, data):
        self.channel.send(data)

    def flush(self):
        pass


class ChannelFileRead(ChannelFile):
    def __init__(self, channel, proxyclose):
        ChannelFile.__init__(self, channel, proxyclose)
        self._buffer = None

    def _fill(self, predicate):
        try:
            while self._buffer is None or not predicate(self._buffer):
                chunk = self.channel.receive()
                self._buffer = chunk if self._buffer is None else self._buffer + chunk
        except EOFError:
            self.close()

    def _take(self, n):
        if self._buffer is None:
            return ""
        result, self._buffer = self._buffer[:n], self._buffer[n:]
        return result

    def read(self, n=-1):
        if n is None or n < 0:
            self._fill(lambda buf: False)
            return self._take(len(self._buffer) if self._buffer is not None else 0)
        self._fill(lambda buf: len(buf) >= n)
        return self._take(n)

    def readline(self):
        self._fill(lambda buf: (b"\n" if isinstance(buf, (bytes, bytearray)) else "\n") in buf)
        if self._buffer is None:
            return ""
        newline = b"\n" if isinstance(self._buffer, (bytes, bytearray)) else "\n"
        index = self._buffer.find(newline)
        return self._take(index + 1 if index >= 0 else len(self._buffer))
