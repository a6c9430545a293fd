"""Frame format: every message is an 11-byte header followed by its payload.

Far-side module: stdlib only, Python >= 3.6, no I/O.

Header: 2 magic bytes, 1 byte message type, 4 bytes channel id, 4 bytes payload
length (network order). The magic lets a reader tell garbage (a shell banner, a
stray print on the far stdout) from a frame and say so, instead of misreading it.
"""

import struct

from .errors import ProtocolError

PROTOCOL_VERSION = 1
MAGIC = b"\xe7W"
HEADER = struct.Struct("!2sBII")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 1 << 30  # bounds every length read from the wire

# message types
HELLO = 1  # far -> near once booted: {"version", "rinfo"} or {"error"}
CONFIG = 2  # near -> far first frame: settings as data
EXEC = 3  # near -> far: run code on a new channel
DATA = 4  # an item on a channel
CLOSE = 5  # the sender closed the channel
CLOSE_ERROR = 6  # closed because code raised; payload is the traceback text
LAST = 7  # the sender will send no more but may still receive
TERMINATE = 8  # near -> far: shut down
STATUS = 9  # near -> far: report status as one DATA item on this channel
OUTPUT = 10  # far -> near: raw bytes the far process wrote; channel 1 stdout, 2 stderr
CREDIT = 11  # the receiver took this many bytes of items (8-byte count): send more

NAMES = {
    HELLO: "HELLO", CONFIG: "CONFIG", EXEC: "EXEC", DATA: "DATA", CLOSE: "CLOSE",
    CLOSE_ERROR: "CLOSE_ERROR", LAST: "LAST", TERMINATE: "TERMINATE",
    STATUS: "STATUS", OUTPUT: "OUTPUT", CREDIT: "CREDIT",
}

# what a Python too old for the far side prints instead of a frame
TOO_OLD_MARKER = b"execwire-too-old:"


def header(msgtype, channel_id, length):
    """Pack the header for a payload of ``length`` bytes."""
    if length > MAX_PAYLOAD:
        raise ValueError("message of %d bytes exceeds the limit of %d bytes" % (length, MAX_PAYLOAD))
    return HEADER.pack(MAGIC, msgtype, channel_id, length)


def parse_header(buf, pos, end):
    """Return (type, channel id, payload length) of the header at ``buf[pos:end]``."""
    magic, msgtype, channel_id, length = HEADER.unpack_from(buf, pos)
    if magic != MAGIC or msgtype not in NAMES:
        raise garbage_error(bytes(buf[pos:min(end, pos + 256)]))
    if length > MAX_PAYLOAD:
        raise ProtocolError(
            "frame claims %d bytes of payload, more than the limit of %d; "
            "the peer is not a matching execwire or the stream is corrupt" % (length, MAX_PAYLOAD))
    return msgtype, channel_id, length


def garbage_error(received):
    """The error for bytes that are not a frame, quoting them and the usual cause."""
    if received.startswith(TOO_OLD_MARKER):
        line = received[len(TOO_OLD_MARKER):].split(b"\n")[0].decode("ascii", "replace").strip()
        return ProtocolError(line)
    return ProtocolError(
        "expected an execwire frame but received %r; usually something printed on the far "
        "side's stdout before the protocol started (a shell banner or a print in a startup "
        "file), or the peer is not execwire" % (received,))
