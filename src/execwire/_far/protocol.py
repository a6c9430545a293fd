"""The protocol core: frames, the channel table, each channel's states, credit and the handshake.

Far-side module: stdlib only, Python >= 3.6. No I/O, no threads, no clocks, in the
spirit of h11: bytes go in (read_buffer() / bytes_read()), events come out
(events()), and commands return the bytes to write. The threaded driver
(gateway.py) and the async faces drive this very object; they serialise their
calls into it, since it takes no locks.

Frames: an 11-byte header (2 magic bytes, type, channel id, payload length, see
frames.py) and the payload. This module holds the only parser of that header.

A channel lives from the moment one side makes it (newchannel, EXEC, STATUS, or
a reference to it decoded from an item) until both sides have sent their CLOSE:
each side sends CLOSE exactly once, either because it is done with the channel
or in answer to the other side's CLOSE. After that, no frame may name it again.
The states of one channel, as seen from one side:

    local:  OPEN --send LAST--> LAST_SENT --send CLOSE--> CLOSE_SENT
    remote: OPEN --recv LAST--> LAST_RECEIVED --recv CLOSE--> CLOSE_RECEIVED

A frame the state does not allow (an item after the peer's LAST or CLOSE, a
second CLOSE, CREDIT after CLOSE) raises ProtocolError naming the frame, the side
that sent it and the state; the driver then ends that gateway. Items that arrive
after this side closed were in flight and are dropped.

Limits: a frame's payload is bounded by frames.MAX_PAYLOAD, and a frame larger
than the read buffer is read into memory that grows with what has arrived (by at
most LARGE_CHUNK at a time), so a header that lies about its length costs
nothing; the channel table holds at most ``max_channels`` channels.

The table holds weak references: a channel that nobody here refers to any more
(garbage) is closed, as if its owner had called close(). The driver calls
_dropped() from the channel's finalizer and writes the CLOSE it returns.
"""

import struct
import weakref

from . import frames, wire
from .errors import Error, ProtocolError

NEAR = "near"
FAR = "far"

# channel states (local and remote halves)
OPEN = 0
LAST_SENT = LAST_RECEIVED = 1
CLOSE_SENT = CLOSE_RECEIVED = 2
_LOCAL_NAMES = ("open", "LAST sent", "CLOSE sent")
_REMOTE_NAMES = ("open", "LAST received", "CLOSE received")

# events: tuples whose first element says what happened
ITEM = 0  # (ITEM, channel, value, cost): an item for the channel
ENDED = 1  # (ENDED, channel, error text or None, sendonly): the peer sent LAST, CLOSE or CLOSE_ERROR;
#   after a CLOSE the driver answers with channel._close_frame() (None if it sent its CLOSE already)
CREDIT = 2  # (CREDIT, channel, bytes): the peer took items, we may send more
EXEC = 3  # (EXEC, channel, (source, filename, funcname, kwargs)): far side only
STATUS = 4  # (STATUS, channel): far side only
TERMINATE = 5  # (TERMINATE,): far side only
OUTPUT = 6  # (OUTPUT, stream, bytes): near side only; stream 1 is stdout, 2 stderr
OUTPUT_CREDIT = 7  # (OUTPUT_CREDIT, bytes): far side only; the near side handled output
HELLO = 8  # (HELLO, info dict): near side only, the first frame
CONFIG = 9  # (CONFIG, config dict): far side only, the first frame
EOF = 10  # (EOF,): the stream ended cleanly between frames
EVENT_NAMES = ("ITEM", "ENDED", "CREDIT", "EXEC", "STATUS", "TERMINATE", "OUTPUT", "OUTPUT_CREDIT", "HELLO",
               "CONFIG", "EOF")

WINDOW = 8 * 1024 * 1024  # bytes of items a sender may have outstanding on one channel
MIN_COST = 128  # what an item counts beyond its size
CREDIT_BATCH = WINDOW // 4  # the receiver gives credit back in batches of this
OUTPUT_WINDOW = 1024 * 1024  # bytes of far output not yet handled by the near side
MAX_CHANNELS = 100000  # default bound of the channel table
SMALL_FRAME = 4096  # payloads up to this size are decoded where they lie in the read buffer
FIRST_BUFFER_SIZE = 32 * 1024  # the read buffer starts at this (all a quiet far side needs)...
BUFFER_SIZE = 256 * 1024  # ...and grows to this when reads fill it
LARGE_CHUNK = 16 * 1024 * 1024  # a large frame's memory grows by at most this ahead of its bytes

_HEADER = frames.HEADER
_unpack_header = _HEADER.unpack_from
_pack_header = _HEADER.pack
_HSIZE = frames.HEADER_SIZE
_MAGIC = frames.MAGIC
_MAX_PAYLOAD = frames.MAX_PAYLOAD
_KNOWN = frames.NAMES
_DATA = frames.DATA
_credit = struct.Struct("!Q")
_NOT_FLAT = wire.NOT_FLAT
_decode_flat = wire.decode_flat

# which side may send which frame (the receiver checks)
_SENT_BY_NEAR = frozenset([frames.CONFIG, frames.EXEC, frames.DATA, frames.CLOSE, frames.CLOSE_ERROR,
                           frames.LAST, frames.TERMINATE, frames.STATUS, frames.CREDIT])
_SENT_BY_FAR = frozenset([frames.HELLO, frames.DATA, frames.CLOSE, frames.CLOSE_ERROR, frames.LAST,
                          frames.OUTPUT, frames.CREDIT])
_EMPTY_PAYLOAD = frozenset([frames.CLOSE, frames.LAST, frames.TERMINATE, frames.STATUS])


class ChannelState(object):
    """One channel's states and credit; the drivers' Channel classes derive from it.

    Every method here is called with the driver's lock for this channel held,
    except the credit counters: ``_spent`` is only written by the one sender at a
    time that the driver lets write (the threaded driver: the holder of the
    writer's lock), ``_granted`` only by whoever handles the incoming events. So a
    sender can check and take credit without the channel's lock, and no update is
    lost to the other thread.
    """

    def __init__(self, protocol, id):
        self.id = id
        self._protocol = protocol
        self._local = OPEN
        self._remote = OPEN
        self._spent = 0  # bytes of items sent (each counting MIN_COST more)...
        self._granted = 0  # ...and of those the peer said it took: WINDOW beyond this may be outstanding
        self._received_cost = 0  # bytes of items taken but not yet credited back

    def _state_name(self):
        return "local %s, remote %s" % (_LOCAL_NAMES[self._local], _REMOTE_NAMES[self._remote])

    # -- sending side ---------------------------------------------------------
    def _can_send(self):
        """True while items may be sent: neither side closed, we did not send LAST."""
        return self._local == OPEN and self._remote != CLOSE_RECEIVED

    def _reserve(self, cost):
        """Take ``cost`` bytes of credit if there is enough; False means wait for CREDIT.

        The receiver credits in batches, so less than a batch outstanding may all
        have been taken: then even an item larger than the window may go.
        """
        if self._has_credit(cost):
            self._spent += cost
            return True
        return False

    def _has_credit(self, cost):
        outstanding = self._spent - self._granted
        return outstanding + cost <= WINDOW or outstanding < CREDIT_BATCH

    def _add_credit(self, amount):
        """The peer took ``amount`` more bytes of our items (a CREDIT event)."""
        self._granted += amount

    def _close_frame(self, error_text=None):
        """The CLOSE or CLOSE_ERROR frame this side owes, or None if it sent one already."""
        if self._local == CLOSE_SENT:
            return None
        self._local = CLOSE_SENT
        if error_text is None or self._remote == CLOSE_RECEIVED:
            frame = _pack_header(_MAGIC, frames.CLOSE, self.id, 0)
        else:
            parts = wire.encode(error_text)
            frame = b"".join([_pack_header(_MAGIC, frames.CLOSE_ERROR, self.id, wire_size(parts))] + parts)
        if self._remote == CLOSE_RECEIVED:
            self._protocol._forget(self)
        return frame

    def _last_frame(self):
        """The LAST frame (no more items from us, but we still receive), or None if too late."""
        if self._local != OPEN:
            return None
        self._local = LAST_SENT
        return _pack_header(_MAGIC, frames.LAST, self.id, 0)

    # -- receiving side -------------------------------------------------------
    def _took(self, cost):
        """An item of ``cost`` bytes was taken by the receiver: the CREDIT frame to send, or None."""
        received = self._received_cost + cost
        if received < CREDIT_BATCH or self._remote == CLOSE_RECEIVED or self._local == CLOSE_SENT:
            self._received_cost = received
            return None
        self._received_cost = 0
        return _pack_header(_MAGIC, frames.CREDIT, self.id, 8) + _credit.pack(received)


def wire_size(parts):
    """Bytes in ``parts`` (bytes, bytearrays and memoryviews)."""
    size = 0
    for part in parts:
        size += part.nbytes if isinstance(part, memoryview) else len(part)
    return size


class Protocol(object):
    """One end of a connection: parse what arrives, check it against the states, say what to send.

    ``side`` is NEAR (the controller) or FAR. ``channel_factory(protocol, id)``
    makes the driver's channel object (a ChannelState) for a new id.
    """

    def __init__(self, side, channel_factory, max_channels=MAX_CHANNELS):
        if side not in (NEAR, FAR):
            raise ValueError("side must be %r or %r" % (NEAR, FAR))
        self.side = side
        self.peer = FAR if side == NEAR else NEAR
        self._factory = channel_factory
        self.max_channels = max_channels
        self.channels = {}  # id -> weak reference to the channel; the driver may read it, only the core changes it
        self._next_id = 1 if side == NEAR else 2  # near side odd ids, far side even ids: never collide
        self._parity = self._next_id & 1
        self._allowed = _SENT_BY_FAR if side == NEAR else _SENT_BY_NEAR
        self._handshake_done = False
        self.output_credit = OUTPUT_WINDOW  # far side: bytes of output it may still send
        self.output_taken = 0  # near side: output handled but not yet credited back
        # the read buffer: bytes [_start, _end) are read but not parsed
        self._buf = bytearray(FIRST_BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self._size = FIRST_BUFFER_SIZE
        self._start = self._end = 0
        self._large = None  # chunks (bytearrays) of a frame larger than the buffer, being read
        self._large_head = None  # (type, channel id, length) of that frame
        self._large_have = 0  # its payload bytes read so far
        self._large_spare = None  # a chunk kept for the next large frame: fresh memory costs page faults
        self._into_large = False  # the last read_buffer() was a large frame's memory
        self.eof = False
        self._eof_reported = False
        self._failed = None  # the error found after events that were returned first
        self._inbox = []  # bytes given to receive_data() that did not fit in the read buffer yet
        self._inbox_ended = False
        self.frames_read = 0  # grows as frames are parsed (the driver uses it to spot replies)

    # -- channels -------------------------------------------------------------
    def new_channel(self):
        """A channel with a fresh id of this side."""
        if len(self.channels) >= self.max_channels:
            raise Error("this side has %d channels open on this gateway, its limit (max_channels=); close some "
                        "first, or start the gateway with a higher max_channels=N" % self.max_channels)
        channel_id = self._next_id
        self._next_id += 2
        return self._add(channel_id)

    def get_channel(self, channel_id):
        """The live channel with this id, or None."""
        ref = self.channels.get(channel_id)
        return None if ref is None else ref()

    def live_channels(self):
        """Every channel in the table that is not garbage."""
        while True:
            try:
                refs = list(self.channels.values())
                break
            except RuntimeError:  # a finalizer in another thread changed the table meanwhile (PyPy)
                continue
        return [channel for channel in (ref() for ref in refs) if channel is not None]

    def channel_for(self, channel_id):
        """The channel a reference in an item names, made if this side does not know it yet."""
        channel = self.get_channel(channel_id)
        if channel is None:
            if not 0 < channel_id <= 0x7FFFFFFF:
                raise ProtocolError("the %s side sent a reference to channel %d, which is not a valid id"
                                    % (self.peer, channel_id))
            channel = self._add(channel_id)
        return channel

    def _add(self, channel_id):
        if len(self.channels) >= self.max_channels:
            raise ProtocolError(
                "the %s side has more than %d channels open on this gateway (the limit; a peer that sends "
                "that many channel references may be broken or hostile)" % (self.side, self.max_channels))
        channel = self._factory(self, channel_id)
        self.channels[channel_id] = weakref.ref(channel)
        return channel

    def _forget(self, channel):
        ref = self.channels.get(channel.id)
        if ref is not None and ref() is channel:
            self.channels.pop(channel.id, None)

    def _dropped(self, channel):
        """``channel`` is garbage (its finalizer runs): forget it; the CLOSE frame we owe, or None.

        Lock-free, as a finalizer may run in any thread at any moment: the table
        changes by single dict operations, and nobody else holds the channel.
        """
        ref = self.channels.get(channel.id)
        target = None if ref is None else ref()
        if ref is None or (target is not None and target is not channel):
            return None  # never in the table (made by hand), or forgotten: the peer expects nothing
        self.channels.pop(channel.id, None)  # target None: the cyclic collector cleared it first
        if channel._local == CLOSE_SENT:
            return None
        channel._local = CLOSE_SENT
        return _pack_header(_MAGIC, frames.CLOSE, channel.id, 0)

    def _unknown_channel(self, msgtype, channel_id):
        """A frame names a channel not in the table: fine if it is one we are done with, else an error.

        Items the peer sends on a channel of its own before it sent us a reference
        to it land here too, and are dropped: nobody here can receive them.
        """
        if channel_id & 1 != self._parity or 0 < channel_id < self._next_id:
            return None  # done with (the peer's, or ours): frames still on their way after both CLOSEs
        raise ProtocolError("the %s side sent %s for channel %d, which the %s side never made"
                            % (self.peer, frames.NAMES[msgtype], channel_id, self.side))

    # -- commands: each returns the bytes to write ----------------------------
    def output_sent(self, nbytes):
        """Far side: OUTPUT of ``nbytes`` goes out; it takes output credit (may go below zero once)."""
        self.output_credit -= nbytes

    def output_handled(self, nbytes):
        """Near side: ``nbytes`` of output were handled; the CREDIT frame to send back, or None."""
        self.output_taken += nbytes
        if self.output_taken < OUTPUT_WINDOW // 4:
            return None
        amount, self.output_taken = self.output_taken, 0
        return _pack_header(_MAGIC, frames.CREDIT, 0, 8) + _credit.pack(amount)

    # -- receiving ------------------------------------------------------------
    def read_buffer(self):
        """Where the driver should read the next bytes into (a memoryview); then call bytes_read().

        Call events() first: a complete frame must be parsed before more is read.
        """
        large = self._large
        if large is not None and self._large_have < self._large_head[2]:
            length = self._large_head[2]
            base = (len(large) - 1) * LARGE_CHUNK
            chunk = large[-1]
            cap = min(len(chunk), length - base)
            filled = self._large_have - base
            if filled >= cap:  # this chunk is full: the next one, no larger than what is left
                chunk = bytearray(min(LARGE_CHUNK, length - self._large_have))
                large.append(chunk)
                filled, cap = 0, len(chunk)
            self._into_large = True
            return memoryview(chunk)[filled:cap]
        self._into_large = False
        start, end = self._start, self._end
        if start == end:
            self._start = self._end = 0
        elif self._size - start < self._size // 2 or self._size - end < _HSIZE:
            # move the partial frame to the front so the rest of it fits
            pending = end - start
            self._buf[0:pending] = self._buf[start:end]
            self._start, self._end = 0, pending
        return self._view[self._end:]

    def bytes_read(self, count):
        """``count`` bytes were read into the last read_buffer(); 0 means the stream ended."""
        if not count:
            self.eof = True
            return
        if self._into_large:
            self._large_have += count
            return
        self._end += count
        if self._end == self._size < BUFFER_SIZE:
            self._grow()

    def receive_data(self, data):
        """Take ``data`` (bytes; b"" for the end of the stream), for drivers that get bytes, not buffers.

        Any amount: what does not fit in the read buffer yet waits until events()
        has parsed what is before it. Use either this or read_buffer()/bytes_read().
        """
        if not data:
            self._inbox_ended = True
        else:
            self._inbox.append(memoryview(bytes(data)))
        self._feed()

    def _feed(self):
        """Move waiting bytes of receive_data() into the read buffer; True if any moved."""
        moved = False
        inbox = self._inbox
        while inbox:
            target = self.read_buffer()
            if not len(target):
                break
            view = inbox[0]
            count = min(len(target), len(view))
            target[:count] = view[:count]
            del target
            self.bytes_read(count)
            moved = True
            if count == len(view):
                del inbox[0]
            else:
                inbox[0] = view[count:]
        if not inbox and self._inbox_ended and not self.eof:
            self.bytes_read(0)
            moved = True
        return moved

    def _grow(self):
        """A read filled the buffer: the peer sends a lot, so read more at a time."""
        start, end = self._start, self._end
        buf = bytearray(BUFFER_SIZE)
        buf[0:end - start] = self._view[start:end]
        self._buf, self._view, self._size = buf, memoryview(buf), BUFFER_SIZE
        self._start, self._end = 0, end - start

    def has_frame(self):
        """True if a complete frame (or the end of the stream) waits to be parsed."""
        if self._failed is not None:
            return True
        if self._large is not None:
            return self._large_have >= self._large_head[2]
        if self._end - self._start < _HSIZE:
            return self.eof
        length = _unpack_header(self._buf, self._start)[3]
        return self._start + _HSIZE + length <= self._end or _HSIZE + length > self._size

    def events(self):
        """Parse every complete frame read so far; return the events, in order (a list).

        A frame that breaks the protocol raises ProtocolError (or LoadError); the
        events of the frames before it are returned first, and the error is raised
        by the next call (has_frame() is True meanwhile).
        """
        if self._failed is not None:
            raise self._failed
        out = []
        try:
            self._parse(out)
        except (ProtocolError, wire.LoadError) as exc:
            if not out:
                raise
            self._failed = exc
        return out

    def _parse(self, out):
        append = out.append
        channels = self.channels
        if not self._handshake_done:
            if not self._handshake(out):
                return
        while True:
            if self._large is not None:  # it comes first; the buffer holds what follows it
                frame = self._next_frame()
                if frame is None:
                    if self._inbox and self._feed():
                        continue
                    return
                self._dispatch(frame, append)
                continue
            # the hot path: small DATA frames, decoded where they lie in the buffer
            buf = self._buf
            start, end = self._start, self._end
            last_id = channel = None  # items tend to come in runs on one channel
            try:
                while end - start >= _HSIZE:
                    magic, msgtype, channel_id, length = _unpack_header(buf, start)
                    if msgtype != _DATA or magic != _MAGIC or length > SMALL_FRAME:
                        break
                    body = start + _HSIZE
                    frame_end = body + length
                    if frame_end > end:
                        break
                    if channel_id != last_id:
                        channel = channels.get(channel_id)  # a weak reference
                        if channel is not None:
                            channel = channel()
                        last_id = channel_id
                    if channel is None or channel._remote != OPEN or channel._local == CLOSE_SENT:
                        break  # the general path below says what is wrong, or drops the item
                    value = _decode_flat(buf, body, frame_end)
                    if value is _NOT_FLAT:
                        value = wire.decode(bytes(buf[body:frame_end]), self.channel_for)
                    start = frame_end
                    append((ITEM, channel, value, length + MIN_COST))
            finally:
                if start != self._start:
                    self._start = start
                    self.frames_read += 1
            if start == end and not self._inbox and not self.eof:
                return  # all of it was items: nothing more to look at
            frame = self._next_frame()
            if frame is None and self._inbox and self._feed():
                continue
            if frame is None:
                if self.eof and not self._eof_reported:
                    self._eof_reported = True
                    append((EOF,))
                return
            self._dispatch(frame, append)

    def _next_frame(self):
        """The next complete frame as (type, channel id, payload), or None; checks the header."""
        if self._large is not None:
            msgtype, channel_id, length = self._large_head
            if self._large_have < length:
                if self.eof:
                    self._check_clean_end()
                return None
            chunks, self._large = self._large, None
            if len(chunks) == 1:
                payload = memoryview(chunks[0])[:length]
                if len(chunks[0]) <= LARGE_CHUNK:
                    self._large_spare = chunks[0]
            else:
                payload = memoryview(b"".join(chunks))
            self.frames_read += 1
            return msgtype, channel_id, payload
        start, end = self._start, self._end
        if end - start < _HSIZE:
            if self.eof:
                self._check_clean_end()
            return None
        magic, msgtype, channel_id, length = _unpack_header(self._buf, start)
        if magic != _MAGIC or msgtype not in _KNOWN:
            raise frames.garbage_error(bytes(self._buf[start:min(end, start + 256)]))
        if length > _MAX_PAYLOAD:
            raise ProtocolError(
                "frame claims %d bytes of payload, more than the limit of %d; the %s side is not a "
                "matching execwire or the stream is corrupt" % (length, _MAX_PAYLOAD, self.peer))
        if msgtype not in self._allowed:
            raise ProtocolError("the %s side sent a %s frame, which only the %s side may send"
                                % (self.peer, frames.NAMES[msgtype], self.side))
        frame_end = start + _HSIZE + length
        if frame_end <= end:
            self._start = frame_end
            self.frames_read += 1
            return msgtype, channel_id, self._view[start + _HSIZE:frame_end]
        if _HSIZE + length > self._size:  # larger than the buffer: read into memory of its own
            have = end - start - _HSIZE
            first = self._large_spare
            if first is None or len(first) < min(length, LARGE_CHUNK):
                first = bytearray(min(length, LARGE_CHUNK))
            else:
                self._large_spare = None
            first[0:have] = self._view[start + _HSIZE:end]
            self._large = [first]
            self._large_head = (msgtype, channel_id, length)
            self._large_have = have
            self._start = self._end = 0
            return self._next_frame()
        if self.eof:
            self._check_clean_end()
        return None

    def _check_clean_end(self):
        rest = bytes(self._buf[self._start:self._end])
        if self._large is not None:
            raise ProtocolError("the stream ended after %d of %d payload bytes of a frame"
                                % (self._large_have, self._large_head[2]))
        if rest and not _MAGIC.startswith(rest[:2]):
            raise frames.garbage_error(rest)
        if rest:
            raise ProtocolError("the stream ended in the middle of a frame (%d bytes of it arrived)" % len(rest))

    def _handshake(self, append_to):
        """The first frame: HELLO on the near side, CONFIG on the far side. True once done."""
        frame = self._next_frame()
        if frame is None:
            if self.eof:
                append_to.append((EOF,))
            return False
        msgtype, _channel_id, payload = frame
        expected = frames.HELLO if self.side == NEAR else frames.CONFIG
        if msgtype != expected:
            raise ProtocolError("the %s side sent %s before %s; expected %s first"
                                % (self.peer, frames.NAMES[msgtype], frames.NAMES[expected], frames.NAMES[expected]))
        info = _decode_control(payload, self.peer, msgtype)
        if not isinstance(info, dict):
            raise ProtocolError("the %s side sent a %s frame whose payload is %s, not a dict"
                                % (self.peer, frames.NAMES[msgtype], type(info).__name__))
        if msgtype == frames.HELLO:
            _check_hello(info)
        self._handshake_done = True
        self._allowed = self._allowed - frozenset([frames.HELLO, frames.CONFIG])
        append_to.append((HELLO if msgtype == frames.HELLO else CONFIG, info))
        return True

    def _dispatch(self, frame, append):
        """Check one frame against the states and turn it into events."""
        msgtype, channel_id, payload = frame
        if msgtype in _EMPTY_PAYLOAD and len(payload):
            raise ProtocolError("the %s side sent a %s frame with %d bytes of payload; it has none"
                                % (self.peer, frames.NAMES[msgtype], len(payload)))
        if msgtype == frames.OUTPUT:
            if channel_id not in (1, 2):
                raise ProtocolError("the far side sent OUTPUT for stream %d; only 1 (stdout) and 2 (stderr) exist"
                                    % channel_id)
            append((OUTPUT, channel_id, bytes(payload)))
            return
        if msgtype == frames.TERMINATE:
            append((TERMINATE,))
            return
        if msgtype == frames.CREDIT and channel_id == 0:
            if self.side != FAR:
                raise ProtocolError("the far side sent CREDIT for output; only the near side may")
            append((OUTPUT_CREDIT, _credit_amount(payload, self.peer)))
            return
        if msgtype in (frames.EXEC, frames.STATUS):
            if channel_id & 1 != 1 or channel_id in self.channels:
                raise ProtocolError("the near side sent %s for channel %d, which %s"
                                    % (frames.NAMES[msgtype], channel_id,
                                       "is in use" if channel_id in self.channels else "is not a near side id"))
            channel = self._add(channel_id)
            if msgtype == frames.STATUS:
                append((STATUS, channel))
                return
            request = _decode_control(payload, self.peer, msgtype, self.channel_for)
            if not (isinstance(request, tuple) and len(request) == 4 and isinstance(request[0], str)
                    and isinstance(request[1], str) and (request[2] is None or isinstance(request[2], str))
                    and isinstance(request[3], dict)):
                raise ProtocolError("the near side sent an EXEC frame whose payload is not "
                                    "(source, filename, function name or None, keyword arguments)")
            append((EXEC, channel, request))
            return
        if channel_id == 0:
            raise ProtocolError("the %s side sent %s for channel 0, which no channel has"
                                % (self.peer, frames.NAMES[msgtype]))
        channel = self.get_channel(channel_id)
        if channel is None:
            self._unknown_channel(msgtype, channel_id)
            return  # a channel we are done with: frames about it no longer matter
        remote = channel._remote
        if msgtype == _DATA:
            if remote != OPEN:
                raise self._illegal(msgtype, channel)
            if channel._local == CLOSE_SENT:
                return  # it was on its way when we closed: nobody will receive it
            append((ITEM, channel, wire.decode(payload, self.channel_for), len(payload) + MIN_COST))
        elif msgtype == frames.CREDIT:
            if remote == CLOSE_RECEIVED:
                raise self._illegal(msgtype, channel)
            amount = _credit_amount(payload, self.peer)
            if channel._local == OPEN:
                append((CREDIT, channel, amount))
        elif msgtype == frames.LAST:
            if remote != OPEN:
                raise self._illegal(msgtype, channel)
            channel._remote = LAST_RECEIVED
            append((ENDED, channel, None, True))
        else:  # CLOSE, CLOSE_ERROR
            if remote == CLOSE_RECEIVED:
                raise self._illegal(msgtype, channel)
            error = None
            if msgtype == frames.CLOSE_ERROR:
                error = _decode_control(payload, self.peer, msgtype)
                if not isinstance(error, str):
                    raise ProtocolError("the %s side sent CLOSE_ERROR for channel %d whose payload is %s, "
                                        "not the traceback text" % (self.peer, channel_id, type(error).__name__))
            # the reader alone changes _remote; _local changes under the driver's channel lock. Each
            # side writes its own field before it reads the other's, so one of them forgets it
            channel._remote = CLOSE_RECEIVED
            if channel._local == CLOSE_SENT:
                self._forget(channel)
            append((ENDED, channel, error, False))

    def _illegal(self, msgtype, channel):
        return ProtocolError("the %s side sent %s for channel %d in state (%s), which does not allow it"
                             % (self.peer, frames.NAMES[msgtype], channel.id, channel._state_name()))


def _decode_control(payload, peer, msgtype, factory=None):
    try:
        return wire.decode(payload, factory)
    except wire.LoadError as exc:
        raise ProtocolError("the %s side sent a %s frame whose payload does not decode: %s"
                            % (peer, frames.NAMES[msgtype], exc))


def _credit_amount(payload, peer):
    if len(payload) != 8:
        raise ProtocolError("the %s side sent a CREDIT frame of %d bytes; it has 8" % (peer, len(payload)))
    return _credit.unpack(payload)[0]


def _check_hello(info):
    if "error" in info:
        if not isinstance(info["error"], str):
            raise ProtocolError("the far side sent a HELLO whose error is not a text")
        return
    if info.get("protocol") != frames.PROTOCOL_VERSION:
        raise ProtocolError("the far side speaks protocol version %r, this side %d: the far side runs "
                            "another execwire" % (info.get("protocol"), frames.PROTOCOL_VERSION))
    if not isinstance(info.get("rinfo"), dict):
        raise ProtocolError("the far side sent a HELLO without its interpreter's facts (rinfo)")
