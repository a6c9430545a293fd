"""Items that cross each link once: a middle gateway keeps what its relays inject.

Gateways behind ``via=`` get their bytes from a relay on the middle gateway
(relay.py). When several of them are sent the same large thing (the far
program at start, long shipped code, a forwarded module's source, a data
file), it would cross the link to the middle once per gateway. Instead the
middle keeps it, once, under a digest (``("keep", key, bytes)`` on a store
channel the middle opens), and relays are told to write a frame made of literal
bytes and kept ones (``("inject", literals, keys)``). The inner gateway sees an
ordinary frame; credit and channel states are taken on this side as for any
send. Through several hops it works the same way: the keep item itself is sent
by reference to the middle's own middle.

A middle keeps at most LIMIT bytes; the rest is sent as before. A middle with
the main_thread_only exec model keeps nothing (its relays hold the main thread,
so it could not open its store).
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
OPEN_TIMEOUT = 60.0  # seconds the middle may take to open its store
WORTH_IT = 256  # bytes: smaller items are cheaper to send again than to refer to


@dataclass(frozen=True)
class Blob:
    """A value inside an item that may travel by reference: ``data`` is its wire encoding."""

    key: bytes
    data: bytes

    @classmethod
    def of(cls, value: Any) -> Blob:
        """The blob of a value: its wire encoding."""
        return cls.raw(b"".join(wire.encode(value)))

    @classmethod
    def raw(cls, data: bytes) -> Blob:
        """The blob of bytes to write as they are (stage 2 of the bootstrap)."""
        return cls(hashlib.blake2b(data, digest_size=16).digest(), data)


Piece = bytes | Blob  # an item's encoding: literal bytes and values that may go by reference


def encode_pieces(value: Any) -> list[Piece]:
    """The encoding of ``value`` (tuples, lists and dicts walked) with its Blob values left as they are."""
    if isinstance(value, Blob):
        return [value]
    if type(value) in (tuple, list, dict) and _holds_blob(value):
        pieces: list[Piece] = [wire.container_head(type(value), len(value))]
        children = [part for pair in value.items() for part in pair] if type(value) is dict else value
        for child in children:
            pieces.extend(encode_pieces(child))
        return pieces
    return [b"".join(wire.encode(value))]


def _holds_blob(value: Any) -> bool:
    children = value.values() if type(value) is dict else value
    return any(isinstance(child, Blob) or (type(child) in (tuple, list, dict) and _holds_blob(child))
               for child in children)


def by_reference(channel: Any) -> bool:
    """Whether items sent on ``channel`` can be sent by reference: a threaded channel whose gateway
    runs through a relay (anything else, an async face's channel too, sends by value)."""
    return isinstance(channel, Channel) and writes_by_reference(channel._writer)


def writes_by_reference(writer: FrameWriter) -> bool:
    """Whether frames this (threaded gateway's) writer writes can have parts by reference."""
    return _keeper_for(writer) is not None


def _keeper_for(writer: FrameWriter) -> Keeper | None:
    from .via import ChannelTransport

    stream = getattr(writer, "stream", None)
    return stream.keeper() if type(stream) is ChannelTransport else None


class PiecedFrame:
    """A frame made of pieces, its Blobs by reference where the middle keeps them (sent to it now if need be)."""

    def __init__(self, writer: FrameWriter, msgtype: int, channel_id: int, pieces: list[Piece]) -> None:
        keeper = _keeper_for(writer)
        self.msgtype = msgtype
        self.channel_id = channel_id
        runs: list[list[bytes]] = [[]]  # literal bytes between kept blobs
        self.keys: list[bytes] = []
        self.size = 0
        for piece in pieces:
            if isinstance(piece, Blob):
                if keeper is not None and len(piece.data) >= WORTH_IT and keeper.keep(piece):
                    self.size += len(piece.data)
                    self.keys.append(piece.key)
                    runs.append([])
                    continue
                piece = piece.data
            runs[-1].append(piece)
            self.size += len(piece)
        # the relay writes literals[0], kept[keys[0]], literals[1], ... literals[-1]
        self.literals = [b"".join(run) for run in runs]

    def write(self, writer: FrameWriter) -> None:
        """Write the frame (holding the writer's lock)."""
        if not self.keys:
            writer.write(self.msgtype, self.channel_id, [self.literals[0]], self.size)
            return
        head = frames.header(self.msgtype, self.channel_id, self.size)
        item = ("inject", [head + self.literals[0], *self.literals[1:]], self.keys)
        writer.write_through(lambda transport: transport.send_item(item))


def send_pieces(channel: Channel, pieces: list[Piece]) -> None:
    """Send on ``channel`` the item encoded by ``pieces``; behind a relay, its large Blobs cross each link once.

    Blocks for credit and raises as Channel.send does.
    """
    frame = PiecedFrame(channel._writer, frames.DATA, channel.id, pieces)
    channel._send_written_by(frame.size + MIN_COST, frame.write)


def write_pieces(writer: FrameWriter, msgtype: int, channel_id: int, pieces: list[Piece]) -> None:
    """Write a frame of another type (EXEC) made of ``pieces``, its large Blobs by reference if it can."""
    frame = PiecedFrame(writer, msgtype, channel_id, pieces)
    with writer.lock:
        frame.write(writer)


def _bytes_head(size: int) -> bytes:
    """The encoding of a bytes value of ``size`` bytes, up to its content."""
    return bytes((0x79, size)) if size < 256 else struct.pack(">BI", 0x59, size)


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
                    opening = self.middle.remote_exec(relay)
                    opening.send({"keep": True})
                    self._channel = opening.receive(OPEN_TIMEOUT)
                head = b"".join(wire.encode(("keep", blob.key, None)))[:-1] + _bytes_head(len(blob.data))
                send_pieces(self._channel, [head, blob])
            except (Error, EOFError):
                self._failed = True  # the middle is going away (or cannot keep): send as before
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
