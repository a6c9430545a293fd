"""What execwire.aio and execwire.trio both export: the shared classes, and the threaded API's errors."""

from __future__ import annotations

from .._far.errors import (
    ChannelClosedError,
    Error,
    GatewayLostError,
    GatewayStartError,
    RemoteError,
    TimeoutError,
)
from .._far.wire import DumpError
from ..calls import CallError
from .channel import Channel
from .gateway import AsyncGateway as Gateway
from .group import MultiChannel

__all__ = ["CallError", "Channel", "ChannelClosedError", "DumpError", "Error", "Gateway", "GatewayLostError",
           "GatewayStartError", "MultiChannel", "RemoteError", "TimeoutError"]
