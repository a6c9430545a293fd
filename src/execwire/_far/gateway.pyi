"""Types of gateway.py for type checkers (the far side itself stays Python 3.6 code without annotations).

Its public face (id, newchannel) and the private parts the near-side Gateway, which derives from
BaseGateway, builds on; the rest of the driver is left out on purpose.
"""

import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Final

from .channel import Channel
from .protocol import Protocol
from .streams import FrameWriter, ReadWaiter, Stream
from .sync import Flag
from .wire import Part

DEBT_DELAY: Final[float]

class Tracer:
    side: str
    fd: int | None
    enabled: bool
    def __init__(self, side: str, fd: int | None = None) -> None: ...
    def __call__(self, *parts: object) -> None: ...

class BaseGateway:
    id: str
    def __init__(self, stream: Stream, id: str, trace: Tracer, max_channels: int = ...) -> None: ...
    def newchannel(self) -> Channel: ...
    # -- what the near-side Gateway uses
    _stream: Stream
    _writer: FrameWriter
    _waiter: ReadWaiter
    _protocol: Protocol
    _trace: Tracer
    _connection_error: Exception | None  # a GatewayStartError too, on the near side
    _expect_end: bool
    _ended: Flag
    _reading_done: bool  # the async faces' driver builds on these too
    def _dispatch(self, events: list[tuple[Any, ...]]) -> None: ...
    _callback_thread: threading.Thread | None
    def _send(self, msgtype: int, channel_id: int, parts: Iterable[Part] = ()) -> None: ...
    def _send_frame(self, frame: bytes) -> None: ...
    def _receive_loop(self) -> None: ...
    def _special_event(self, event: tuple[Any, ...]) -> None: ...
    def _wait_flag(self, flag: Flag, timeout: float | None) -> bool: ...
    def _reading_failed(self, exc: BaseException | None) -> None: ...
    def _connection_ended(self, error: Exception | None) -> None: ...
    def _schedule_callback(self, channel: Channel | None, callback: Callable[[Any], object], item: Any,
                           cost: int) -> None: ...
    def _report_callback_error(self, channel: Channel, text: str) -> None: ...
    def _wait_callbacks(self, timeout: float | None) -> bool: ...


def format_exception(
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None],
    skip_frames: int = 0,
) -> str: ...
