"""MultiChannel: several channels used as one."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from ._far.channel import NO_ENDMARKER_WANTED, Channel

ChannelType = TypeVar("ChannelType")


class _ChannelList(Generic[ChannelType]):
    """The list face of a MultiChannel, threaded or async: len, iteration, indexing, ``in``."""

    def __init__(self, channels: Iterable[ChannelType]) -> None:
        self._channels = list(channels)

    def __len__(self) -> int:
        return len(self._channels)

    def __iter__(self) -> Iterator[ChannelType]:
        return iter(self._channels)

    def __getitem__(self, index: int) -> ChannelType:
        return self._channels[index]

    def __contains__(self, channel: object) -> bool:
        return channel in self._channels


class MultiChannel(_ChannelList[Channel]):
    """Send to, receive from and wait for many channels together."""

    def send_each(self, item: Any) -> None:
        """Send ``item`` on every channel."""
        for channel in self._channels:
            channel.send(item)

    def receive_each(self, withchannel: bool = False) -> list[Any]:
        """One item from each channel, in channel order (as (channel, item) pairs if asked)."""
        if withchannel:
            return [(channel, channel.receive()) for channel in self._channels]
        return [channel.receive() for channel in self._channels]

    def make_receive_queue(self, endmarker: object = NO_ENDMARKER_WANTED) -> queue.Queue[tuple[Channel, Any]]:
        """A queue of (channel, item) pairs, filled as items arrive on any channel.

        With an ``endmarker``, each channel adds (channel, endmarker) when it closes.
        """
        received: queue.Queue[tuple[Channel, Any]] = queue.Queue()
        for channel in self._channels:
            def put(item: Any, channel: Channel = channel) -> None:
                received.put((channel, item))
            channel.setcallback(put, endmarker)
        return received

    def waitclose(self, timeout: float | None = None) -> None:
        """Wait for every channel to close; raise the first remote error after all are done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        first_error: BaseException | None = None
        for channel in self._channels:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                channel.waitclose(remaining)
            except Exception as exc:
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error
