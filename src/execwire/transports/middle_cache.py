"""Items that cross each link once: a middle gateway keeps what its relays inject.

Gateways behind ``via=`` get their bytes from a relay on the middle gateway
(relay.py). When several of them are sent the same large item (a module's
source for import forwarding, a data file), the bytes would cross the link to
the middle once per gateway. Instead the middle keeps them, once, under a
digest (``("keep", key, bytes)`` on a keeper channel of its own), and each
relay is told to write a frame's head and then the kept bytes
(``("inject", head, key)``). The inner gateway sees an ordinary DATA frame;
credit and channel states are taken on this side as for any send. Keeping
through several hops works the same way: the keep item itself is sent by
reference to the middle's own middle.

Only what a middle has room for is kept (LIMIT bytes per middle gateway); the
rest is sent as before. A middle with the main_thread_only exec model keeps
nothing (its keeper would take the main thread for good).
"""

from __future__ import annotations

import hashlib
import struct
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._far import frames, wire
from .._far.channel import Channel
from .._far.errors import Error
from .._far.protocol import MIN_COST
from . import relay

if TYPE_CHECKING:
    from .._far.streams import FrameWriter
    from ..gateway import Gateway

LIMIT = 256 * 1024 * 1024  # bytes a middle gateway keeps at most
WORTH_IT = 512  # smaller items are cheaper to send again than to refer to


@dataclass(frozen=True)
class Blob:
    """An encoded value that may be sent by reference: ``data`` is its wire encoding."""

    key: bytes
    data: bytes

    @classmethod
    def of(cls, value: Any) -> Blob:
        data = b"".join(wire.encode(value))
        return cls(hashlib.blake2b(data, digest_size=16).digest(), data)


def prefix(*values: Any) -> bytes:
    """The encoding of the tuple ``values + (blob's value,)`` up to where the blob's encoding starts."""
    encoded = b"".join(wire.encode((*values, None)))
    return encoded[:-1]  # None is the one byte b"N"


def _bytes_head(size: int) -> bytes:
    """The encoding of a bytes value of ``size`` bytes, up to its content."""
    return bytes((0x79, size)) if size < 256 else struct.pack(">BI", 0x59, size)


def by_reference(channel: Channel) -> bool:
    """Whether items sent on ``channel`` can be sent by reference (its gateway runs through a relay)."""
    from .via import ChannelTransport

    stream = getattr(getattr(channel, "_writer", None), "stream", None)
    return type(stream) is ChannelTransport and stream.keeper() is not None


def send_by_reference(channel: Channel, head: bytes, blob: Blob) -> None:
    """Send on ``channel`` the item encoded as ``head + blob.data``; through relays the blob crosses each link once.

    Blocks for credit and raises as Channel.send does.
    """
    from .via import ChannelTransport

    size = len(head) + len(blob.data)
    stream = channel._writer.stream
    keeper = stream.keeper() if type(stream) is ChannelTransport else None
    if keeper is not None and len(blob.data) >= WORTH_IT and keeper.keep(blob):
        transport: ChannelTransport = stream  # type: ignore[assignment]
        item = ("inject", frames.header(frames.DATA, channel.id, size) + head, blob.key)

        def inject(writer: FrameWriter) -> None:
            writer.write_through(lambda _stream: transport.send_item(item))

        channel._send_written_by(size + MIN_COST, inject)
        return

    def write(writer: FrameWriter) -> None:
        writer.write(frames.DATA, channel.id, [head, blob.data], size)

    channel._send_written_by(size + MIN_COST, write)


class Keeper:
    """What one middle gateway keeps for injection, as this side knows it.

    Concurrency: ``_lock`` is held while a new blob is sent, so two threads never send the same
    one; it is taken by writers of inner gateways before the middle's own writer, never after.
    """

    def __init__(self, middle: Gateway) -> None:
        self.middle = middle
        self.kept: set[bytes] = set()
        self.size = 0
        self._channel: Channel | None = None
        self._failed = False
        self._lock = threading.Lock()

    def keep(self, blob: Blob) -> bool:
        """True once the middle keeps ``blob`` (sent to it now if need be); False if it cannot."""
        with self._lock:
            if blob.key in self.kept:
                return True
            if self._failed or self.size + len(blob.data) > LIMIT:
                return False
            try:
                if self._channel is None:
                    self._channel = self.middle.remote_exec(relay)
                    self._channel.send({"keep": True})
                head = prefix("keep", blob.key) + _bytes_head(len(blob.data))
                send_by_reference(self._channel, head, blob)
            except Error:
                self._failed = True  # the middle is going away: the sends to gateways behind it fail too
                return False
            self.kept.add(blob.key)
            self.size += len(blob.data)
            return True


_keepers_lock = threading.Lock()


def keeper_of(middle: Gateway) -> Keeper | None:
    """The middle gateway's Keeper (made on first use), or None if it cannot keep anything."""
    if getattr(middle.spec, "execmodel", None) == "main_thread_only":
        return None
    keeper: Keeper | None = getattr(middle, "_keeper", None)
    if keeper is None:
        with _keepers_lock:
            keeper = getattr(middle, "_keeper", None)
            if keeper is None:
                keeper = Keeper(middle)
                middle._keeper = keeper  # type: ignore[attr-defined]
    return keeper
