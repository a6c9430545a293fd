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
from .channel import Channel
from .gateway import AsyncGateway as Gateway
from .group import MultiChannel

__all__ = ["Channel", "ChannelClosedError", "Error", "Gateway", "GatewayLostError", "GatewayStartError",
           "MultiChannel", "RemoteError", "TimeoutError"]
