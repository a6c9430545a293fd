"""execwire for trio (the optional extra execwire[trio]): the asyncio face's very code, waiting the trio way.

Gateways read their far side from system tasks, so they need no nursery of
yours; cancel scopes (trio.move_on_after, fail_after) work on every await.
Errors are the classes of the threaded API (execwire.RemoteError, TimeoutError, ...).
"""

from __future__ import annotations

from .._async.channel import Channel
from .._async.gateway import AsyncGateway as Gateway
from .._async.gateway import makegateway as _makegateway
from .._async.group import AsyncGroup, MultiChannel
from .._far.errors import (
    ChannelClosedError,
    Error,
    GatewayLostError,
    GatewayStartError,
    RemoteError,
    TimeoutError,
)
from ..spec import XSpec
from ._backend import TrioBackend

__all__ = ["Channel", "ChannelClosedError", "Error", "Gateway", "GatewayLostError", "GatewayStartError", "Group",
           "MultiChannel", "RemoteError", "TimeoutError", "makegateway"]


async def makegateway(spec: str | XSpec | None = None) -> Gateway:
    """Start a gateway for ``spec`` (default "popen") and wait until it answered.

    Every transport of the threaded API: popen, ssh, socket, prefixes (sudo=,
    docker=, ...); via= and installvia= need a Group, which knows the middle gateway.
    """
    return await _makegateway(TrioBackend(), spec)


class Group(AsyncGroup):
    """Gateways started side by side, used and terminated together (``async with execwire.trio.Group(specs)``)."""

    _backend_class = TrioBackend
